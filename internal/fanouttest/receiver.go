package fanouttest

import (
	"bytes"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// Request is one request a Receiver got, and what it answered.
type Request struct {
	N        int // its number at the receiver, from 1
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	At       time.Time // when the receiver had read it
	Status   int       // what the receiver answered; 0 until it did, or when the client left first
}

// Answer is what a Receiver sends back to one request.
type Answer struct {
	Status int           // 0 means 200
	Header http.Header   // set before the status is written (Retry-After, Location, ...)
	Body   string        // written after the status
	Delay  time.Duration // waited before answering; the client going away ends the wait, unanswered
	// Hold, when not nil, is waited for (after Delay) until it is closed: a test releases
	// the requests it held at the moment it chooses. The client going away ends the wait,
	// unanswered, as a downstream that hangs until its client gives up.
	Hold <-chan struct{}
}

// AnswerFunc chooses the answer to a request; it runs on the request's goroutine, so that
// it may block (a test holding a delivery) and must be safe for concurrent use.
type AnswerFunc func(r Request) Answer

// Reply answers every request with a.
func Reply(a Answer) AnswerFunc { return func(Request) Answer { return a } }

// Statuses answers request n with statuses[n-1], and every later request with the last one.
func Statuses(statuses ...int) AnswerFunc {
	return func(r Request) Answer { return Answer{Status: statuses[min(r.N, len(statuses))-1]} }
}

// Receiver is a downstream webhook on 127.0.0.1, an httptest.Server, that records every
// request it gets and answers as its AnswerFunc says (200 "ok" without one). It is safe for
// concurrent use; the server is closed at the end of the test.
type Receiver struct {
	srv *httptest.Server

	mu          sync.Mutex
	answer      AnswerFunc
	requests    []Request
	inFlight    int // requests read and not yet answered
	maxInFlight int
	connections int // connections clients opened
}

// NewReceiver starts a Receiver that answers with answer (nil: 200 "ok").
func NewReceiver(t testing.TB, answer AnswerFunc) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ServeReceiver(t, ln, answer)
}

// ServeReceiver starts a Receiver on ln: a test that must know the address before the
// receiver runs (a config written first, a receiver that comes back on the same port)
// listens itself.
func ServeReceiver(t testing.TB, ln net.Listener, answer AnswerFunc) *Receiver {
	t.Helper()
	rc := &Receiver{answer: answer}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.srv.Listener.Close()
	rc.srv.Listener = ln
	rc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.mu.Lock()
			rc.connections++
			rc.mu.Unlock()
		}
	}
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	req := Request{N: len(rc.requests) + 1, Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: body, At: time.Now()}
	rc.requests = append(rc.requests, req)
	rc.inFlight++
	rc.maxInFlight = max(rc.maxInFlight, rc.inFlight)
	answer := rc.answer
	rc.mu.Unlock()

	status := rc.reply(w, r, req, answer)

	rc.mu.Lock()
	rc.inFlight--
	rc.requests[req.N-1].Status = status
	rc.mu.Unlock()
}

// reply writes the answer to req and returns its status (0 when the client left first).
func (rc *Receiver) reply(w http.ResponseWriter, r *http.Request, req Request, answer AnswerFunc) int {
	a := Answer{Body: "ok"}
	if answer != nil {
		a = answer(req)
	}
	if a.Delay > 0 && !waitOrLeave(r, time.After(a.Delay)) {
		return 0
	}
	if a.Hold != nil && !waitOrLeave(r, a.Hold) {
		return 0
	}
	if a.Status == 0 {
		a.Status = http.StatusOK
	}
	maps.Copy(w.Header(), a.Header)
	w.WriteHeader(a.Status)
	io.WriteString(w, a.Body)
	return a.Status
}

// waitOrLeave waits for ch, and reports false when the client of r went away first.
func waitOrLeave[T any](r *http.Request, ch <-chan T) bool {
	select {
	case <-ch:
		return true
	case <-r.Context().Done():
		return false
	}
}

// SetAnswer replaces the AnswerFunc for the requests that come next.
func (rc *Receiver) SetAnswer(answer AnswerFunc) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.answer = answer
}

// URL is the receiver's base URL, http://127.0.0.1:PORT.
func (rc *Receiver) URL() string { return rc.srv.URL }

// Requests returns a copy of the requests so far, in the order they came.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.requests)
}

// Count is the number of requests so far.
func (rc *Receiver) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.requests)
}

// InFlight is the number of requests the receiver has read and not yet answered (nor seen
// their client leave).
func (rc *Receiver) InFlight() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.inFlight
}

// MaxInFlight is the most requests the receiver had read and not yet answered at once.
func (rc *Receiver) MaxInFlight() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.maxInFlight
}

// Connections is the number of connections clients opened to the receiver.
func (rc *Receiver) Connections() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.connections
}

// Delivered counts, by the MsgKey of their body, the requests the receiver answered 2xx:
// the deliveries of callbacks made with C2CMessage and the like.
func (rc *Receiver) Delivered() map[string]int {
	got := map[string]int{}
	for _, r := range rc.Requests() {
		if r.Status >= 200 && r.Status <= 299 {
			got[MsgKey(r.Body)]++
		}
	}
	return got
}

// Keys counts every request by the MsgKey of its body, whatever the receiver answered.
func (rc *Receiver) Keys() map[string]int {
	got := map[string]int{}
	for _, r := range rc.Requests() {
		got[MsgKey(r.Body)]++
	}
	return got
}

// Missing lists, in order, the keys the receiver has not answered 2xx (see Delivered): at
// most 10 of them, so that a wait that fails says which without flooding the log. A
// condition for WaitForNone.
func (rc *Receiver) Missing(keys []string) []string {
	got := rc.Delivered()
	var out []string
	for _, k := range keys {
		if got[k] == 0 {
			out = append(out, k)
			if len(out) == 10 {
				break
			}
		}
	}
	return out
}

// ByKey returns the requests whose body has the MsgKey key.
func (rc *Receiver) ByKey(key string) []Request {
	return rc.filter(func(r Request) bool { return MsgKey(r.Body) == key })
}

// WithBody returns the requests whose body is exactly body.
func (rc *Receiver) WithBody(body []byte) []Request {
	return rc.filter(func(r Request) bool { return bytes.Equal(r.Body, body) })
}

func (rc *Receiver) filter(keep func(Request) bool) []Request {
	var out []Request
	for _, r := range rc.Requests() {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}
