// Command sink is a minimal downstream webhook receiver for the side-by-side
// benchmark (bench/peers/run.sh) and the backlog benchmark (bench/backlog.sh).
//
// It answers 200 to every POST (or 503 for an injected fraction of them),
// optionally after an added latency, and counts what it received.
//
//	GET  /count  -> {"received":N,"ok":N,"failed":N,"unique_ok":N,"dup_ok":N,"conns":N}
//	POST /reset  -> zeroes the counters
//
// unique_ok / dup_ok are computed from the "MsgKey" field of the JSON body
// (found by a byte scan, not a full JSON parse, to keep the sink cheap), so a
// relay that delivers the same callback twice shows up as dup_ok > 0.
// conns counts accepted TCP connections: a relay that reuses keep-alive
// connections opens about as many as it has requests in flight.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

type counters struct {
	received atomic.Int64
	ok       atomic.Int64
	failed   atomic.Int64
	noKey    atomic.Int64
	conns    atomic.Int64 // TCP connections accepted (keep-alive reuse check)

	mu   sync.Mutex
	seen map[string]struct{}
	dups int64
}

var msgKeyTag = []byte(`"MsgKey":"`)

func extractKey(body []byte) []byte {
	i := bytes.Index(body, msgKeyTag)
	if i < 0 {
		return nil
	}
	rest := body[i+len(msgKeyTag):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18091", "listen address (keep it on loopback)")
	failRatio := flag.Float64("fail-ratio", 0, "fraction of POSTs answered 503 (0..1)")
	latency := flag.Duration("latency", 0, "added latency before answering each POST")
	name := flag.String("name", "sink", "name used in logs")
	flag.Parse()

	c := &counters{seen: make(map[string]struct{}, 1<<20)}

	mux := http.NewServeMux()
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		uniq, dups := int64(len(c.seen)), c.dups
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{
			"received":  c.received.Load(),
			"ok":        c.ok.Load(),
			"failed":    c.failed.Load(),
			"unique_ok": uniq,
			"dup_ok":    dups,
			"no_key":    c.noKey.Load(),
			"conns":     c.conns.Load(),
		})
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.seen = make(map[string]struct{}, 1<<20)
		c.dups = 0
		c.received.Store(0)
		c.ok.Store(0)
		c.failed.Store(0)
		c.noKey.Store(0)
		c.conns.Store(0)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		c.received.Add(1)
		if *latency > 0 {
			time.Sleep(*latency)
		}
		if *failRatio > 0 && rand.Float64() < *failRatio {
			c.failed.Add(1)
			http.Error(w, "injected failure", http.StatusServiceUnavailable)
			return
		}
		c.ok.Add(1)
		if k := extractKey(body); k != nil {
			c.mu.Lock()
			if _, dup := c.seen[string(k)]; dup {
				c.dups++
			} else {
				c.seen[string(k)] = struct{}{}
			}
			c.mu.Unlock()
		} else {
			c.noKey.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	})

	srv := &http.Server{
		Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				c.conns.Add(1)
			}
		},
	}
	log.Printf("%s listening on %s (fail-ratio=%g latency=%s)", *name, *addr, *failRatio, *latency)
	log.Fatal(srv.ListenAndServe())
}
