package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Tests of respond rules (docs/rules.md, Tencent's before-callback answers): a real gateway on an embedded
// JetStream, the answering backend and the other destinations as httptest servers, and the
// test itself in Tencent's place. Helpers of this file and shaping_test.go start with rs.

// rsRespondTimeout is the timeout of the respond rules of rsRespondConfig.
const rsRespondTimeout = 500 * time.Millisecond

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

// TestRespondBeforeSendMsg: the backend's usable answers reach Tencent byte for byte; any
// other outcome (hang, 500, HTML, JSON without an integer ErrorCode, unreachable) gives the
// rule's on_failure decision; for a backend that hangs, while the backend still holds the
// request (the answer does not wait for it). Meanwhile the other
// destinations get their asynchronous copies (original bytes) and the backend no second
// copy, and fanout_respond_total counts every outcome.
func TestRespondBeforeSendMsg(t *testing.T) {
	const command = "C2C.CallbackBeforeSendMsg"
	original := fanouttest.Payload(t, command)
	backend, audit, archive := fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil)
	closed := "http://" + fanouttest.FreeAddr(t) + "/hook"
	g := startGateway(t, writeQueueConfig(t, fmt.Sprintf(rsRespondConfig, backend.URL(), audit.URL(), archive.URL(), closed)))

	answer := func(status int, contentType, text string) fanouttest.AnswerFunc {
		return fanouttest.Reply(fanouttest.Answer{Status: status, Header: http.Header{"Content-Type": {contentType}}, Body: text})
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
	// call sends a distinct callback and returns Tencent's answer and the callback sent.
	call := func(name, app string, wantStatus int) (answer, body []byte) {
		t.Helper()
		body = rsVariant(t, original, seq)
		seq++
		a := callback(t, g, fanouttest.CallbackQuery(app, command), body)
		if a.Status != wantStatus {
			t.Fatalf("%s: status %d %s, want %d", name, a.Status, a.Body, wantStatus)
		}
		sent = append(sent, result{name, app, body})
		return a.Body, body
	}

	t.Run("verbatim answers", func(t *testing.T) {
		for _, tc := range []struct{ name, text string }{
			{"ErrorCode 1", deny},
			{"ErrorCode 0 with MsgBody and CloudCustomData", modified},
		} {
			backend.SetAnswer(answer(http.StatusOK, "application/json", tc.text))
			got, _ := call(tc.name, apps[1].app, http.StatusOK)
			if string(got) != tc.text {
				t.Errorf("%s: Tencent got\n%s\nwant the backend's bytes\n%s", tc.name, got, tc.text)
			}
		}
	})

	t.Run("hanging backend", func(t *testing.T) {
		for _, a := range apps {
			for run := range 3 {
				// The backend holds the request until the test lets it go, even after the
				// gateway gave up on it: the answer must come while it is held.
				release := make(chan struct{})
				releaseOnce := sync.OnceFunc(func() { close(release) })
				t.Cleanup(releaseOnce) // a request still held would keep the receiver from closing
				backend.SetAnswer(func(fanouttest.Request) fanouttest.Answer {
					<-release
					return fanouttest.Answer{}
				})
				got, body := call("hang", a.app, http.StatusOK)
				if string(got) != rsDecision(a.decision) {
					t.Errorf("app %s run %d: answer %s, want %s", a.app, run, got, rsDecision(a.decision))
				}
				if held := backend.WithBody(body); len(held) != 1 || held[0].Status != 0 {
					t.Errorf("app %s run %d: the backend got %d requests with the callback, want 1 it had not answered yet", a.app, run, len(held))
				}
				releaseOnce()
			}
		}
	})

	t.Run("unusable answers", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			h    fanouttest.AnswerFunc
		}{
			{"500", answer(http.StatusInternalServerError, "application/json", `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`)},
			{"200 HTML", answer(http.StatusOK, "text/html", "<html><body>It works!</body></html>")},
			{"200 JSON without ErrorCode", answer(http.StatusOK, "application/json", `{"ActionStatus":"OK","ErrorInfo":""}`)},
			{"200 JSON with a string ErrorCode", answer(http.StatusOK, "application/json", `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":"1"}`)},
			{"200 JSON with a null ErrorCode", answer(http.StatusOK, "application/json", `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":null}`)},
			{"200 JSON array", answer(http.StatusOK, "application/json", `[{"ErrorCode":1}]`)},
		} {
			backend.SetAnswer(tc.h)
			// The decision comes from the backend's answer, not from the timeout:
			// fanout_respond_total counts these as error_status and bad_answer below.
			for _, a := range apps {
				got, _ := call(tc.name, a.app, http.StatusOK)
				if string(got) != rsDecision(a.decision) {
					t.Errorf("%s, app %s: answer %s, want the on_failure decision %s", tc.name, a.app, got, rsDecision(a.decision))
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
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "a copy of every callback at audit and archive", func() bool {
			for _, s := range sent {
				if len(audit.WithBody(s.body)) == 0 || len(archive.WithBody(s.body)) == 0 {
					return false
				}
			}
			return true
		})
		// The backend answered each one synchronously and got no queued copy. It has
		// concurrency 1, so it receives its queued deliveries in order: once a callback
		// sent now has arrived, a copy queued earlier would have too.
		backend.SetAnswer(nil)
		sentinel := []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"John","MsgKey":"sentinel"}`)
		a := callback(t, g, fanouttest.CallbackQuery(apps[0].app, "C2C.CallbackAfterSendMsg"), sentinel)
		if a.Status != http.StatusOK || string(a.Body) != rsDecision(0) {
			t.Fatalf("sentinel: %d %s", a.Status, a.Body)
		}
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the sentinel at the backend", func() bool { return len(backend.WithBody(sentinel)) == 1 })
		for _, s := range sent {
			// For app 1400000004 "closed" answers: the backend gets the queued copy instead.
			if n := len(backend.WithBody(s.body)); n != 1 {
				t.Errorf("%s (app %s): the backend got %d requests with the callback, want 1", s.name, s.app, n)
			}
		}
		for _, r := range backend.Requests() {
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
			if got := scrapeMetrics(t, g).Sum("fanout_respond_total", map[string]string{"destination": c.dest, "outcome": c.outcome}); got != c.want {
				t.Errorf("fanout_respond_total{destination=%q,outcome=%q} = %g, want %g", c.dest, c.outcome, got, c.want)
			}
		}
	})
}

// BenchmarkRespondOnFailure measures the round trips of callbacks whose respond rule's
// backend hangs: each is answered with the rule's on_failure decision once its timeout
// (rsRespondTimeout) has passed. Reported: the slowest answer, in ms past the timeout.
//
//	go test -run '^$' -bench RespondOnFailure ./gateway/
func BenchmarkRespondOnFailure(b *testing.B) {
	const command = "C2C.CallbackBeforeSendMsg"
	original := fanouttest.Payload(b, command)
	backend := fanouttest.NewReceiver(b, fanouttest.Reply(fanouttest.Answer{Delay: time.Hour})) // until the gateway gives up
	copies := fanouttest.NewReceiver(b, nil)
	closed := "http://" + fanouttest.FreeAddr(b) + "/hook"
	g := startGateway(b, writeQueueConfig(b, fmt.Sprintf(rsRespondConfig, backend.URL(), copies.URL(), copies.URL(), closed)))
	query := fanouttest.CallbackQuery("1400000002", command) // on_failure: deny
	var slowest time.Duration
	n := 0
	for b.Loop() {
		n++
		start := time.Now()
		a := callback(b, g, query, rsVariant(b, original, n))
		slowest = max(slowest, time.Since(start))
		if string(a.Body) != rsDecision(1) {
			b.Fatalf("answer %d %s, want %s", a.Status, a.Body, rsDecision(1))
		}
	}
	b.ReportMetric(float64((slowest-rsRespondTimeout).Microseconds())/1000, "max-ms-past-timeout")
}
