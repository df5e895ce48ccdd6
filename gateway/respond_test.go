package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Tests of respond rules (docs/rules.md, Tencent's before-callback answers): a real gateway on an embedded
// JetStream, the answering backend and the other destinations as httptest servers, and the
// test itself in Tencent's place. Helpers of this file and shaping_test.go start with rs.

const (
	// rsWait bounds the wait for a condition that should hold within a moment.
	rsWait = 30 * time.Second

	// rsRespondTimeout is the timeout of the respond rules under test; the answer must
	// leave within rsRespondTimeout + rsRespondSlack whatever the backend does.
	rsRespondTimeout = 500 * time.Millisecond
	rsRespondSlack   = 100 * time.Millisecond
)

// rsPayload reads one of Tencent's sample bodies, as bytes.
func rsPayload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fanouttest.PayloadDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rsVariant is body with its MsgRandom replaced by one that depends on i, so that each
// callback of a test is a distinct event (not a duplicate within dedup_window). i == 0
// returns body unchanged.
func rsVariant(t testing.TB, body []byte, i int) []byte {
	t.Helper()
	if i == 0 {
		return body
	}
	const old = `"MsgRandom": 2837546`
	if !bytes.Contains(body, []byte(old)) {
		t.Fatalf("payload has no %s", old)
	}
	return bytes.Replace(body, []byte(old), []byte(`"MsgRandom": `+strconv.Itoa(2837546+i)), 1)
}

// rsConfig writes a config file in a fresh directory; QUEUE_DIR in text becomes a queue
// directory beside it.
func rsConfig(t testing.TB, text string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "fanout.yaml")
	text = strings.ReplaceAll(text, "QUEUE_DIR", strconv.Quote(filepath.Join(dir, "data")))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rsRequest is one request a receiver got.
type rsRequest struct {
	At       time.Time
	RawQuery string
	Header   http.Header
	Body     []byte
	Status   int // what the receiver answered
}

// rsReceiver is a downstream on 127.0.0.1 that records every request; handle (nil: 200
// "ok") writes the answer and returns its status.
type rsReceiver struct {
	srv    *httptest.Server
	handle atomic.Pointer[func(w http.ResponseWriter, r *http.Request, body []byte) int]

	mu   sync.Mutex
	reqs []rsRequest
}

func rsNewReceiver(t testing.TB) *rsReceiver {
	t.Helper()
	rc := &rsReceiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

// rsServeOn starts a receiver on ln (for a port that was closed until then).
func rsServeOn(t testing.TB, ln net.Listener) *rsReceiver {
	t.Helper()
	rc := &rsReceiver{}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.srv.Listener.Close()
	rc.srv.Listener = ln
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	return rc
}

// set makes h answer from now on (nil: 200 "ok").
func (rc *rsReceiver) set(h func(w http.ResponseWriter, r *http.Request, body []byte) int) {
	if h == nil {
		rc.handle.Store(nil)
		return
	}
	rc.handle.Store(&h)
}

func (rc *rsReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, rsRequest{At: time.Now(), RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
	n := len(rc.reqs)
	rc.mu.Unlock()
	status := http.StatusOK
	if h := rc.handle.Load(); h != nil {
		status = (*h)(w, r, body)
	} else {
		io.WriteString(w, "ok")
	}
	rc.mu.Lock()
	rc.reqs[n-1].Status = status
	rc.mu.Unlock()
}

func (rc *rsReceiver) URL() string { return rc.srv.URL }

func (rc *rsReceiver) requests() []rsRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs)
}

// withBody counts the requests whose body is exactly body.
func (rc *rsReceiver) withBody(body []byte) int {
	n := 0
	for _, r := range rc.requests() {
		if bytes.Equal(r.Body, body) {
			n++
		}
	}
	return n
}

// rsWaitFor polls cond every 10 ms until it holds, failing the test after timeout.
func rsWaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rsClient is Tencent's side: keep-alive connections, as Tencent uses.
var rsClient = &http.Client{Timeout: rsWait}

// rsPost POSTs body to g's callback path and returns the status, the answer's bytes and
// the round trip as the client measured it.
func rsPost(t testing.TB, g *Gateway, query string, body []byte) (int, []byte, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := rsClient.Post("http://"+g.CallbackAddr()+"/callback?"+query, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST callback: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("POST callback: reading the answer: %v", err)
	}
	return resp.StatusCode, b, took
}

// rsQuery is the query Tencent adds for app and command (no Sign).
func rsQuery(app, command string) string {
	return "SdkAppid=" + app + "&CallbackCommand=" + command + "&contenttype=json&ClientIP=203.0.113.9&OptPlatform=iOS"
}

// rsMetric scrapes g's /metrics and sums the samples of name whose labels include labels.
func rsMetric(t testing.TB, g *Gateway, name string, labels map[string]string) float64 {
	t.Helper()
	resp, err := rsClient.Get("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	text, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	sum := 0.0
	for line := range strings.Lines(string(text)) {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, name)
		if !ok || strings.HasPrefix(line, "#") || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		set := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndexByte(rest, '}')
			set, rest = ","+rest[1:end]+",", rest[end+1:]
		}
		match := true
		for k, v := range labels {
			match = match && strings.Contains(set, ","+k+"="+strconv.Quote(v)+",")
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// rsDecision is the on_failure answer with ErrorCode code.
func rsDecision(code int) string {
	return `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":` + strconv.Itoa(code) + `}`
}

// rsRespondConfig: three apps whose respond rules differ only in on_failure, a fourth whose
// rule answers from a closed port; every callback goes to backend, audit and archive.
const rsRespondConfig = `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: 1400000001}, {sdkappid: 1400000002}, {sdkappid: 1400000003}, {sdkappid: 1400000004}]
queue: {dir: QUEUE_DIR}
defaults:
  timeout: 2s
  retry: {max_attempts: 5, backoff: {initial: 50ms, max: 200ms, multiplier: 2, jitter: 0}}
destinations:
  backend: {url: %q, concurrency: 1}
  audit: {url: %q}
  archive: {url: %q}
  closed: {url: %q}
routes:
  - name: all
    to: [backend, audit, archive]
respond:
  - {apps: [1400000001], commands: [C2C.CallbackBeforeSendMsg], from: backend, timeout: 500ms, on_failure: allow}
  - {apps: [1400000002], commands: [C2C.CallbackBeforeSendMsg], from: backend, timeout: 500ms, on_failure: deny}
  - {apps: [1400000003], commands: [C2C.CallbackBeforeSendMsg], from: backend, timeout: 500ms, on_failure: drop}
  - {apps: [1400000004], commands: [C2C.CallbackBeforeSendMsg], from: closed, timeout: 500ms, on_failure: deny}
`

// rsClosedURL is a URL on 127.0.0.1 where nothing listens.
func rsClosedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/hook"
}

// TestRespondBeforeSendMsg: the backend's usable answers reach Tencent byte for byte; any
// other outcome (hang, 500, HTML, JSON without an integer ErrorCode, unreachable) gives the
// rule's on_failure decision, within the rule's timeout + 100 ms. Meanwhile the other
// destinations get their asynchronous copies (original bytes) and the backend no second
// copy, and fanout_respond_total counts every outcome.
func TestRespondBeforeSendMsg(t *testing.T) {
	const command = "C2C.CallbackBeforeSendMsg"
	original := rsPayload(t, command+".json")
	backend, audit, archive := rsNewReceiver(t), rsNewReceiver(t), rsNewReceiver(t)
	release := make(chan struct{}) // ends hanging answers at the end of the test
	t.Cleanup(func() { close(release) })
	g := startGateway(t, rsConfig(t, fmt.Sprintf(rsRespondConfig, backend.URL(), audit.URL(), archive.URL(), rsClosedURL(t))))

	answer := func(status int, contentType, text string) func(http.ResponseWriter, *http.Request, []byte) int {
		return func(w http.ResponseWriter, _ *http.Request, _ []byte) int {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			io.WriteString(w, text)
			return status
		}
	}
	hang := func(w http.ResponseWriter, r *http.Request, _ []byte) int {
		select {
		case <-r.Context().Done(): // the gateway gave up
		case <-release:
		}
		return 0
	}
	// Answers of the backend that Tencent must get byte for byte: written with unusual
	// spacing and key order, so that any re-encoding shows.
	deny := `{"ErrorCode": 1, "ActionStatus":"OK",  "ErrorInfo":"forbidden by moderation"}`
	modified := "{\n  \"ActionStatus\": \"OK\",\n  \"ErrorInfo\": \"\",\n  \"ErrorCode\": 0,\n" +
		"  \"MsgBody\": [{\"MsgType\": \"TIMTextElem\", \"MsgContent\": {\"Text\": \"red ***\"}}],\n" +
		"  \"CloudCustomData\": \"moderated by backend \\u00e9\"\n}"

	apps := []struct {
		app      string
		decision int
	}{{"1400000001", 0}, {"1400000002", 1}, {"1400000003", 2}}

	type result struct {
		name string
		app  string
		body []byte // the callback sent
	}
	var sent []result
	seq := 0
	call := func(name, app string, wantStatus int) ([]byte, time.Duration) {
		t.Helper()
		body := rsVariant(t, original, seq)
		seq++
		status, got, took := rsPost(t, g, rsQuery(app, command), body)
		if status != wantStatus {
			t.Fatalf("%s: status %d %s, want %d", name, status, got, wantStatus)
		}
		sent = append(sent, result{name, app, body})
		return got, took
	}

	t.Run("verbatim answers", func(t *testing.T) {
		for _, tc := range []struct{ name, text string }{
			{"ErrorCode 1", deny},
			{"ErrorCode 0 with MsgBody and CloudCustomData", modified},
		} {
			backend.set(answer(http.StatusOK, "application/json", tc.text))
			got, _ := call(tc.name, apps[1].app, http.StatusOK)
			if string(got) != tc.text {
				t.Errorf("%s: Tencent got\n%s\nwant the backend's bytes\n%s", tc.name, got, tc.text)
			}
		}
	})

	var slowest time.Duration
	var latencies []string
	t.Run("hanging backend", func(t *testing.T) {
		backend.set(hang)
		for _, a := range apps {
			for run := range 3 {
				got, took := call("hang", a.app, http.StatusOK)
				latencies = append(latencies, took.Round(time.Millisecond).String())
				slowest = max(slowest, took)
				if string(got) != rsDecision(a.decision) {
					t.Errorf("app %s run %d: answer %s, want %s", a.app, run, got, rsDecision(a.decision))
				}
				if took >= rsRespondTimeout+rsRespondSlack {
					t.Errorf("app %s run %d: answered after %s, want under %s", a.app, run, took, rsRespondTimeout+rsRespondSlack)
				}
			}
		}
		t.Logf("respond timeout %s: round trips of the on_failure answers %v, max %s", rsRespondTimeout, latencies, slowest)
	})

	t.Run("unusable answers", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			h    func(http.ResponseWriter, *http.Request, []byte) int
		}{
			{"500", answer(http.StatusInternalServerError, "application/json", `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`)},
			{"200 HTML", answer(http.StatusOK, "text/html", "<html><body>It works!</body></html>")},
			{"200 JSON without ErrorCode", answer(http.StatusOK, "application/json", `{"ActionStatus":"OK","ErrorInfo":""}`)},
			{"200 JSON with a string ErrorCode", answer(http.StatusOK, "application/json", `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":"1"}`)},
			{"200 JSON with a null ErrorCode", answer(http.StatusOK, "application/json", `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":null}`)},
			{"200 JSON array", answer(http.StatusOK, "application/json", `[{"ErrorCode":1}]`)},
		} {
			backend.set(tc.h)
			for _, a := range apps {
				got, took := call(tc.name, a.app, http.StatusOK)
				if string(got) != rsDecision(a.decision) {
					t.Errorf("%s, app %s: answer %s, want the on_failure decision %s", tc.name, a.app, got, rsDecision(a.decision))
				}
				if took >= rsRespondTimeout+rsRespondSlack {
					t.Errorf("%s, app %s: answered after %s", tc.name, a.app, took)
				}
			}
		}
	})

	t.Run("unreachable backend", func(t *testing.T) {
		got, _ := call("unreachable", "1400000004", http.StatusOK)
		if string(got) != rsDecision(1) {
			t.Errorf("answer %s, want %s", got, rsDecision(1))
		}
	})

	t.Run("asynchronous copies", func(t *testing.T) {
		// Every callback reaches audit and archive with its original bytes.
		rsWaitFor(t, rsWait, "a copy of every callback at audit and archive", func() bool {
			for _, s := range sent {
				if audit.withBody(s.body) == 0 || archive.withBody(s.body) == 0 {
					return false
				}
			}
			return true
		})
		// The backend answered each one synchronously and got no queued copy. It has
		// concurrency 1, so it receives its queued deliveries in order: once a callback
		// sent now has arrived, a copy queued earlier would have too.
		backend.set(nil)
		sentinel := []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"John","MsgKey":"sentinel"}`)
		status, got, _ := rsPost(t, g, rsQuery(apps[0].app, "C2C.CallbackAfterSendMsg"), sentinel)
		if status != http.StatusOK || string(got) != rsDecision(0) {
			t.Fatalf("sentinel: %d %s", status, got)
		}
		rsWaitFor(t, rsWait, "the sentinel at the backend", func() bool { return backend.withBody(sentinel) == 1 })
		for _, s := range sent {
			// For app 1400000004 "closed" answers: the backend gets the queued copy instead.
			if n := backend.withBody(s.body); n != 1 {
				t.Errorf("%s (app %s): the backend got %d requests with the callback, want 1", s.name, s.app, n)
			}
		}
		for _, r := range backend.requests() {
			if bytes.Equal(r.Body, sentinel) {
				continue
			}
			if !slices.ContainsFunc(sent, func(s result) bool { return bytes.Equal(s.body, r.Body) }) {
				t.Errorf("the backend got a body that was never sent: %.80s", r.Body)
			}
		}
	})

	t.Run("fanout_respond_total", func(t *testing.T) {
		for _, c := range []struct {
			dest, outcome string
			want          float64
		}{
			{"backend", "answered", 2},
			{"backend", "timeout", 9},
			{"backend", "error_status", 3},
			{"backend", "bad_answer", 15},
			{"closed", "unreachable", 1},
		} {
			if got := rsMetric(t, g, "fanout_respond_total", map[string]string{"destination": c.dest, "outcome": c.outcome}); got != c.want {
				t.Errorf("fanout_respond_total{destination=%q,outcome=%q} = %g, want %g", c.dest, c.outcome, got, c.want)
			}
		}
	})
}
