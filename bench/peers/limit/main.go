// Command limit is a minimal relay: the "physical limit" row of the side-by-side
// benchmark, the least work a Go net/http relay can do for the workload, with no
// config, no rule engine and no durability. Fanout's figures are read against it.
//
//	-mode=sync   parse the callback, evaluate the two routes with plain Go,
//	             POST the body to every matching sink (both in parallel) with a
//	             shared keep-alive http.Client, then answer OK (502 if a
//	             delivery still fails after the retries).
//	-mode=async  parse + evaluate, put the job on a bounded channel, answer OK
//	             at once; a worker pool delivers (503 if the queue stays full
//	             for -enqueue-timeout). Jobs in the queue are lost on exit.
//
// GET /stats returns the relay's own counters as JSON. It is a benchmark
// program, run by bench/peers/run.sh; no test starts it.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

var okBody = []byte(`{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`)
var failBody = []byte(`{"ActionStatus":"FAIL","ErrorInfo":"relay failed","ErrorCode":1}`)

// callback holds only the fields the two routes look at.
type callback struct {
	CallbackCommand string `json:"CallbackCommand"`
	ToAccount       string `json:"To_Account"`
	SendMsgResult   int64  `json:"SendMsgResult"`
}

// Route A: SendMsgResult != 0 || To_Account in ["Jonh","alice"]
func routeA(c *callback) bool {
	return c.SendMsgResult != 0 || c.ToAccount == "Jonh" || c.ToAccount == "alice"
}

// Route B: CallbackCommand == "C2C.CallbackAfterSendMsg"
func routeB(c *callback) bool { return c.CallbackCommand == "C2C.CallbackAfterSendMsg" }

type relay struct {
	client     *http.Client
	sinkA      string
	sinkB      string
	retries    int
	backoff    time.Duration
	maxBackoff time.Duration

	accepted    atomic.Int64
	rejected    atomic.Int64
	deliveredOK atomic.Int64
	deliverFail atomic.Int64
	attempts    atomic.Int64
}

// post delivers body to url, retrying non-2xx answers and transport errors
// up to r.retries times with exponential backoff.
func (r *relay) post(url string, body []byte) bool {
	wait := r.backoff
	for try := 0; ; try++ {
		r.attempts.Add(1)
		resp, err := r.client.Post(url, "application/json", bytes.NewReader(body))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				r.deliveredOK.Add(1)
				return true
			}
		}
		if try >= r.retries {
			r.deliverFail.Add(1)
			return false
		}
		time.Sleep(wait)
		if wait *= 2; wait > r.maxBackoff {
			wait = r.maxBackoff
		}
	}
}

// deliver sends body to every matching route; both in parallel when both match.
func (r *relay) deliver(body []byte, a, b bool) bool {
	switch {
	case a && b:
		var okA bool
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); okA = r.post(r.sinkA, body) }()
		okB := r.post(r.sinkB, body)
		wg.Wait()
		return okA && okB
	case a:
		return r.post(r.sinkA, body)
	case b:
		return r.post(r.sinkB, body)
	}
	return true // no route matched: nothing to relay
}

type job struct {
	body []byte
	a, b bool
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address (keep it on loopback)")
	mode := flag.String("mode", "sync", "sync | async")
	sinkA := flag.String("sink-a", "http://127.0.0.1:18091/a", "route A sink URL")
	sinkB := flag.String("sink-b", "http://127.0.0.1:18092/b", "route B sink URL")
	retries := flag.Int("retries", 3, "retries per delivery after the first attempt")
	backoff := flag.Duration("backoff", 50*time.Millisecond, "first retry backoff (doubles)")
	maxBackoff := flag.Duration("max-backoff", time.Second, "retry backoff cap")
	timeout := flag.Duration("timeout", 5*time.Second, "per-attempt HTTP timeout")
	queue := flag.Int("queue", 1024, "async: bounded queue length")
	workers := flag.Int("workers", 64, "async: delivery workers")
	enqTimeout := flag.Duration("enqueue-timeout", time.Second, "async: how long a request may wait for queue space before 503")
	flag.Parse()

	r := &relay{
		client: &http.Client{
			Timeout: *timeout,
			Transport: &http.Transport{
				MaxIdleConns:        1024,
				MaxIdleConnsPerHost: 512,
				IdleConnTimeout:     90 * time.Second,
				DisableCompression:  true,
			},
		},
		sinkA: *sinkA, sinkB: *sinkB,
		retries: *retries, backoff: *backoff, maxBackoff: *maxBackoff,
	}

	var jobs chan job
	if *mode == "async" {
		jobs = make(chan job, *queue)
		for i := 0; i < *workers; i++ {
			go func() {
				for j := range jobs {
					r.deliver(j.body, j.a, j.b)
				}
			}()
		}
	} else if *mode != "sync" {
		log.Fatalf("unknown -mode %q", *mode)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		q := 0
		if jobs != nil {
			q = len(jobs)
		}
		_ = json.NewEncoder(w).Encode(map[string]int64{
			"accepted": r.accepted.Load(), "rejected": r.rejected.Load(),
			"delivered_ok": r.deliveredOK.Load(), "deliver_failed": r.deliverFail.Load(),
			"attempts": r.attempts.Load(), "queued": int64(q),
		})
	})
	mux.HandleFunc("/callback", func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		var cb callback
		if err := json.Unmarshal(body, &cb); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		a, b := routeA(&cb), routeB(&cb)
		w.Header().Set("Content-Type", "application/json")

		if jobs == nil { // sync
			if !r.deliver(body, a, b) {
				r.rejected.Add(1)
				w.WriteHeader(http.StatusBadGateway)
				_, _ = w.Write(failBody)
				return
			}
			r.accepted.Add(1)
			_, _ = w.Write(okBody)
			return
		}

		j := job{body: body, a: a, b: b}
		select {
		case jobs <- j:
		default:
			t := time.NewTimer(*enqTimeout)
			select {
			case jobs <- j:
				t.Stop()
			case <-t.C:
				r.rejected.Add(1)
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write(failBody)
				return
			}
		}
		r.accepted.Add(1)
		_, _ = w.Write(okBody)
	})

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("limit mode=%s listening on %s -> A=%s B=%s", *mode, *addr, *sinkA, *sinkB)
	log.Fatal(srv.ListenAndServe())
}
