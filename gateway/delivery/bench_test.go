package delivery

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkSend is one delivery's client side, as a busy destination makes it: a 2xx at
// the first attempt from a receiver on 127.0.0.1 over kept-alive connections, from 64
// concurrent senders. The receiver is a bare handler, so that its own cost stays small and
// the same between runs; compare allocs/op, steadier than ns/op on a shared machine.
//
//	go test -run '^$' -bench Send -benchmem -count 5 ./gateway/delivery
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	d, err := NewDestination(Destination{Name: "audit", URL: srv.URL + "/hook", Timeout: 5 * time.Second, Policy: quickPolicy})
	if err != nil {
		b.Fatal(err)
	}
	s := NewSender(SenderOptions{Version: "bench"})
	b.Cleanup(s.CloseIdleConnections)
	job := testJob()
	job.Body = make([]byte, 600)
	ctx := context.Background()
	b.SetParallelism(32) // 64 senders on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := s.Send(ctx, d, job, Round{}); res.Outcome != Delivered {
				b.Errorf("Send: %v %v", res.Outcome, res.Err)
				return
			}
		}
	})
}
