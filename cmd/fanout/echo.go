package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// runEcho is a receiver for trying a config locally: it prints every request and answers
// 200, or fails on purpose to rehearse retries and dead letters.
func runEcho(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("echo", "[--listen ADDR] [--fail-ratio R] [--status CODE] [--delay D]",
		"A receiver for trying a config: prints every request it gets and answers 200, or fails on\npurpose to rehearse retries and dead letters.")
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on")
	failRatio := fs.Float64("fail-ratio", 0, "answer --status to this fraction of requests (0 to 1)")
	status := fs.Int("status", 503, "the status of failed answers")
	delay := fs.Duration("delay", 0, "wait this long before answering")
	if err := noArguments(fs, args, stdout); err != nil {
		return err
	}
	if *failRatio < 0 || *failRatio > 1 {
		return usagef("--fail-ratio %v: want 0 to 1", *failRatio)
	}
	if *status < 100 || *status > 599 {
		return usagef("--status %d: want an HTTP status", *status)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	n := 0
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if *delay > 0 {
			select {
			case <-time.After(*delay):
			case <-r.Context().Done():
				return
			}
		}
		code := http.StatusOK
		if *failRatio > 0 && rand.Float64() < *failRatio {
			code = *status
		}
		mu.Lock()
		n++
		printRequest(stdout, n, r, body, code)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code == http.StatusOK {
			_, _ = w.Write([]byte(`{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`))
		} else {
			fmt.Fprintf(w, `{"error":"fanout echo answered %d on purpose"}`, code)
		}
	})}
	fmt.Fprintf(stderr, "fanout echo: listening on http://%s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func printRequest(w io.Writer, n int, r *http.Request, body []byte, answered int) {
	fmt.Fprintf(w, "--- #%d %s  %s %s  -> %d\n", n, time.Now().Format(time.RFC3339), r.Method, r.URL.RequestURI(), answered)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range r.Header[k] {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, body, "", "  ") == nil {
		fmt.Fprintf(w, "\n%s\n\n", pretty.Bytes())
	} else {
		fmt.Fprintf(w, "\n%s\n\n", body)
	}
}
