// Command load sends a bounded number of Tencent IM callbacks to a Fanout, each with its
// own MsgKey, and reports how many were answered OK and how fast. It is the load of the
// benchmarks in bench/ that the peers harness does not cover (a backlog for a dead
// destination, for one).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/callback?SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json", "callback URL")
	n := flag.Int("n", 10000, "callbacks to send")
	conc := flag.Int("c", 32, "concurrent senders")
	maxTime := flag.Duration("max-time", 30*time.Minute, "stop after this long, whatever is left")
	flag.Parse()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	var next, ok, failed atomic.Int64
	deadline := time.Now().Add(*maxTime)
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := next.Add(1)
				if i > int64(*n) {
					return
				}
				body := fmt.Sprintf(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh","MsgSeq":%d,"MsgRandom":2837546,"MsgTime":1557481126,"MsgKey":"%010d_2837546_1557481126","OnlineOnlyFlag":1,"SendMsgResult":0,"ErrorInfo":"send msg succeed","UnreadMsgNum":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}}],"CloudCustomData":"your cloud custom data"}`, i, i)
				resp, err := client.Post(*url, "application/json", bytes.NewBufferString(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	fmt.Printf("sent=%d ok=%d failed=%d seconds=%.1f rate=%.0f/s\n", ok.Load()+failed.Load(), ok.Load(), failed.Load(), took.Seconds(), float64(ok.Load())/took.Seconds())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}
