package delivery

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
)

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 20 * time.Second

// recorded is one request as a receiver saw it.
type recorded struct {
	at       time.Time
	header   http.Header
	rawQuery string
	body     []byte
}

// receiver is a downstream webhook on 127.0.0.1 that records every request and lets answer
// (called with the 1-based number of the request) write the response.
type receiver struct {
	*httptest.Server
	answer func(n int, w http.ResponseWriter, r *http.Request)

	mu    sync.Mutex
	reqs  []recorded
	conns int // connections opened by clients
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.mu.Lock()
			rc.conns++
			rc.mu.Unlock()
		}
	}
	rc.Start()
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, recorded{at: time.Now(), header: r.Header.Clone(), rawQuery: r.URL.RawQuery, body: body})
	n := len(rc.reqs)
	rc.mu.Unlock()
	if rc.answer != nil {
		rc.answer(n, w, r)
	}
}

func (rc *receiver) requests() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

func (rc *receiver) connections() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.conns
}

// status answers every request with code and body.
func status(code int, body string) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// sequence answers request n with codes[n-1], and the last code after that.
func sequence(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(codes[min(n, len(codes))-1])
	}
}

// quickPolicy retries in-process at once, a few times.
var quickPolicy = Policy{MaxAttempts: 5, Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2}

// testDestination builds a destination to url with quickPolicy, changed by edit.
func testDestination(t *testing.T, url string, edit func(d *Destination)) *Destination {
	t.Helper()
	d := Destination{Name: "audit", URL: url, Timeout: 5 * time.Second, Policy: quickPolicy}
	if edit != nil {
		edit(&d)
	}
	built, err := NewDestination(d)
	if err != nil {
		t.Fatalf("NewDestination: %v", err)
	}
	return built
}

const testQuery = "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json" +
	"&ClientIP=10.0.0.1&OptPlatform=iOS&Sign=0123abcd&RequestTime=1669872112"

func testJob() queue.Job {
	return queue.Job{
		EventID:     "ev1",
		Destination: "audit",
		Routes:      []string{"vip", "all-to-app"},
		Query:       testQuery,
		Body:        []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"alice"}`),
		ReceivedAt:  time.Now(),
		RequestID:   "req-1",
	}
}

// attempts records what the Sender reports to its observer.
type attempts struct {
	mu     sync.Mutex
	labels []string
}

func (a *attempts) observe(destination, result string, took time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.labels = append(a.labels, destination+":"+result)
}

func (a *attempts) get() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.labels, " ")
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
