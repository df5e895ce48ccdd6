package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/internal/fanouttest"
	"github.com/fanout-gw/fanout/rules"
)

// recordingQueue is the real queue, remembering the events whose jobs it acknowledged.
type recordingQueue struct {
	q *queue.Queue

	mu     sync.Mutex
	stored map[string]bool // by event id
}

func (r *recordingQueue) Enqueue(ctx context.Context, jobs []queue.Job) error {
	if err := r.q.Enqueue(ctx, jobs); err != nil {
		return err
	}
	r.mu.Lock()
	for _, j := range jobs {
		r.stored[j.EventID] = true
	}
	r.mu.Unlock()
	return nil
}

// has reports whether a job of the callback with rawQuery and body was stored: now, or by
// an earlier copy (a duplicate is answered OK on the strength of that one).
func (r *recordingQueue) has(rawQuery string, body []byte) bool {
	q, err := tencentim.ParseQuery(rawQuery)
	if err != nil {
		return false
	}
	command := q.CallbackCommand
	if command == "" { // the event takes the body's, as rules.NewEvent does
		fields, _ := rules.ParseBody(body)
		command, _ = fields["CallbackCommand"].(string)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stored[tencentim.EventID(q.SdkAppID, command, body)]
}

// FuzzCallback runs the whole callback handler (httpapi's receiver, the intake, the real
// embedded queue) on any query, headers and body, seeded with Tencent's real payloads. Of
// every answer it checks: no panic; an OK only for a callback whose job the queue stored;
// anything else the FAIL JSON.
//
//	go test -run '^$' -fuzz FuzzCallback -fuzztime 60s ./gateway/intake/
func FuzzCallback(f *testing.F) {
	for _, path := range fanouttest.PayloadFiles(f) {
		command := strings.TrimSuffix(filepath.Base(path), ".json")
		body := fanouttest.Payload(f, filepath.Base(path))
		f.Add(query(app, command), "", body)
		f.Add(query(app, command), "X-Forwarded-For: 203.0.113.9\nX-Forwarded-For: 127.0.0.1", body)
		f.Add(query(app, command)+"&SdkAppid="+signed, "Content-Type: application/json", body)
		f.Add(query(signed, command)+"&Sign=00&RequestTime=1", "", body)
	}
	f.Add("", "", []byte(`{}`))
	f.Add(query(app, afterMsg), "Content-Length: 1048576", []byte(`[1,2]`))
	f.Add("SdkAppid=%zz", "", []byte(`{"a":`))

	q, err := queue.Open(context.Background(), queue.Options{Dir: f.TempDir(), DeadLetterMaxAge: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { q.Close() })
	store := &recordingQueue{q: q, stored: map[string]bool{}}
	v, err := tencentim.NewVerifier(tencentim.Options{Apps: []tencentim.App{{SdkAppID: app}, {SdkAppID: signed, Token: token}},
		AllowIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		f.Fatal(err)
	}
	set, errs := rules.Compile([]rules.RouteSpec{
		{Name: "all", To: []string{"app-backend"}},
		{Name: "failed", Filter: rules.Filter{Commands: []string{afterMsg}, When: "SendMsgResult != 0"}, To: []string{"audit"}},
	}, nil)
	if len(errs) > 0 {
		f.Fatal(errs)
	}
	live := &Config{Path: "/callback", MaxBodyBytes: 64 << 10, Verifier: v, Rules: set,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	in := New(Options{Live: func() *Config { return live }, Store: store, DedupWindow: time.Minute, Logger: slog.New(slog.DiscardHandler),
		Metrics: Metrics{
			Callbacks:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"app", "command", "outcome"}),
			CallbackDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d"}),
			RouteMatches:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "m"}, []string{"route"}),
			RuleErrors:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e"}, []string{"route"}),
			Respond:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"destination", "outcome"}),
		}})
	handler := httpapi.NewReceiver(in, slog.New(slog.DiscardHandler)).Handler()

	f.Fuzz(func(t *testing.T, rawQuery, headers string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/callback", bytes.NewReader(body))
		req.URL.RawQuery = rawQuery
		req.RemoteAddr = "127.0.0.1:40000"
		for line := range strings.Lines(headers) {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && k != "" {
				req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)

		answer := w.Body.Bytes()
		if w.Code == http.StatusOK {
			if !bytes.Equal(answer, tencentim.OK) {
				t.Fatalf("200 with %s, want the OK JSON", answer)
			}
			if !store.has(rawQuery, body) {
				t.Fatalf("answered OK, but no job of this callback was stored (query %q)", rawQuery)
			}
			return
		}
		var fail struct {
			ActionStatus string
			ErrorCode    int
			ErrorInfo    *string
		}
		if err := json.Unmarshal(answer, &fail); err != nil || fail.ActionStatus != "FAIL" || fail.ErrorCode != 1 || fail.ErrorInfo == nil {
			t.Fatalf("%d with %q, want the FAIL JSON", w.Code, answer)
		}
	})
}
