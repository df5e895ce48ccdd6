package delivery

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestClassify sends one attempt per case to a real receiver (or to none) with a policy whose
// first wait is long, so that a retryable answer ends Send with Retry and the attempt's own
// reason instead of a quick retry.
func TestClassify(t *testing.T) {
	closed := fanouttest.FreeAddr(t) // nothing listens there
	closedURL := "http://" + closed + "/hook"

	// hang answers after the client has given up.
	hang := fanouttest.Reply(fanouttest.Answer{Delay: time.Hour})

	tests := []struct {
		name    string
		answer  fanouttest.AnswerFunc // nil: nobody listens
		timeout time.Duration
		outcome Outcome
		reason  string
		status  int
		gone    bool
		errText string // substring of Result.Err; "" = Err must be nil
	}{
		{name: "200", answer: status(200, "ok"), outcome: Delivered, reason: "2xx", status: 200},
		{name: "204", answer: status(204, ""), outcome: Delivered, reason: "2xx", status: 204},
		{name: "299", answer: status(299, ""), outcome: Delivered, reason: "2xx", status: 299},
		{name: "301", answer: redirect(301), outcome: Dead, reason: "3xx", status: 301, errText: `destination "audit": POST: status 301`},
		{name: "302", answer: redirect(302), outcome: Dead, reason: "3xx", status: 302, errText: "status 302"},
		{name: "304", answer: status(304, ""), outcome: Dead, reason: "3xx", status: 304, errText: "status 304"},
		{name: "400", answer: status(400, "nope"), outcome: Dead, reason: "4xx", status: 400, errText: "status 400"},
		{name: "401", answer: status(401, "nope"), outcome: Dead, reason: "4xx", status: 401, errText: "status 401"},
		{name: "404", answer: status(404, "nope"), outcome: Dead, reason: "4xx", status: 404, errText: "status 404"},
		{name: "408", answer: status(408, "slow"), outcome: Retry, reason: "408", status: 408, errText: "status 408"},
		{name: "410", answer: status(410, "gone"), outcome: Dead, reason: "410", status: 410, gone: true, errText: "status 410"},
		{name: "422", answer: status(422, "nope"), outcome: Dead, reason: "4xx", status: 422, errText: "status 422"},
		{name: "429", answer: status(429, "later"), outcome: Retry, reason: "429", status: 429, errText: "status 429"},
		{name: "500", answer: status(500, "oops"), outcome: Retry, reason: "5xx", status: 500, errText: "status 500"},
		{name: "501", answer: status(501, "oops"), outcome: Retry, reason: "5xx", status: 501, errText: "status 501"},
		{name: "503", answer: status(503, "oops"), outcome: Retry, reason: "5xx", status: 503, errText: "status 503"},
		{name: "599", answer: status(599, "oops"), outcome: Retry, reason: "5xx", status: 599, errText: "status 599"},
		{name: "600", answer: status(600, "?"), outcome: Dead, reason: "status", status: 600, errText: "status 600"},
		{
			name: "connection refused", answer: nil, outcome: Retry, reason: "connection",
			errText: `destination "audit": POST: dial tcp ` + closed,
		},
		{
			name: "timeout", answer: hang, timeout: 100 * time.Millisecond, outcome: Retry, reason: "timeout",
			errText: `destination "audit": POST: timeout after 100ms`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := closedURL
			var rc *fanouttest.Receiver
			if tt.answer != nil {
				rc = fanouttest.NewReceiver(t, tt.answer)
				url = rc.URL() + "/hook"
			}
			d := testDestination(t, url, func(d *Destination) {
				d.Policy = Policy{MaxAttempts: 3, Initial: time.Minute, Max: time.Hour, Multiplier: 2}
				if tt.timeout > 0 {
					d.Timeout = tt.timeout
				}
			})
			var seen attempts
			s := NewSender(SenderOptions{Version: "test", Observe: seen.observe})

			res := s.Send(testContext(t), d, testJob(), Round{})

			if res.Outcome != tt.outcome || res.Reason != tt.reason || res.Status != tt.status || res.Gone != tt.gone {
				t.Errorf("Send = {%s %q status %d gone %t}, want {%s %q status %d gone %t}",
					res.Outcome, res.Reason, res.Status, res.Gone, tt.outcome, tt.reason, tt.status, tt.gone)
			}
			if res.Attempts != 1 {
				t.Errorf("Attempts = %d, want 1", res.Attempts)
			}
			if got, want := seen.get(), "audit:"+tt.reason; got != want {
				t.Errorf("observed %q, want %q", got, want)
			}
			switch {
			case tt.errText == "" && res.Err != nil:
				t.Errorf("Err = %v, want nil", res.Err)
			case tt.errText != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.errText)):
				t.Errorf("Err = %v, want it to contain %q", res.Err, tt.errText)
			}
			if tt.outcome == Retry && res.Delay != time.Minute {
				t.Errorf("Delay = %s, want the policy's first wait 1m", res.Delay)
			}
			if tt.outcome != Retry && res.Delay != 0 {
				t.Errorf("Delay = %s, want 0", res.Delay)
			}
			if rc != nil && len(rc.Requests()) != 1 {
				t.Errorf("receiver got %d requests, want 1 (redirects are not followed)", len(rc.Requests()))
			}
		})
	}
}

// redirect answers with a redirect to a path that the receiver would record if followed.
func redirect(code int) fanouttest.AnswerFunc {
	return fanouttest.Reply(fanouttest.Answer{Status: code, Header: http.Header{"Location": {"/elsewhere"}}})
}

func TestSendCanceled(t *testing.T) {
	started := make(chan struct{})
	rc := fanouttest.NewReceiver(t, func(fanouttest.Request) fanouttest.Answer {
		close(started)
		return fanouttest.Answer{Delay: time.Hour} // until Send gives up
	})
	d := testDestination(t, rc.URL(), nil)
	ctx, cancel := context.WithCancel(testContext(t))
	go func() {
		<-started
		cancel()
	}()
	var seen attempts
	res := NewSender(SenderOptions{Observe: seen.observe}).Send(ctx, d, testJob(), Round{})
	if res.Outcome != Retry || res.Reason != ReasonCanceled || res.Delay != 0 || res.Attempts != 1 {
		t.Errorf("Send = {%s %q delay %s attempts %d}, want {retry canceled delay 0 attempts 1}", res.Outcome, res.Reason, res.Delay, res.Attempts)
	}
	if got := seen.get(); got != "audit:canceled" {
		t.Errorf("observed %q, want audit:canceled", got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{"", 0, false},
		{"2", 2 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"1.5", 0, false},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true}, // in the past: no wait
		{strconv.FormatInt(1<<62, 10), time.Duration(1<<63-1) / time.Second * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set("Retry-After", tt.header)
			}
			got, ok := retryAfter(h, now)
			if got != tt.want || ok != tt.ok {
				t.Errorf("retryAfter(%q) = %s, %t; want %s, %t", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestTimeoutCoversTheAnswer: the timeout bounds reading the answer too. A receiver that
// sends its status and part of a body, then stalls, does not hold the delivery: without
// success_when the 2xx counts; with it, the cut answer cannot be judged, and is retried.
func TestTimeoutCoversTheAnswer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"errcode":`))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	for _, tt := range []struct {
		name    string
		success func(int, http.Header, []byte) (bool, error)
		outcome Outcome
	}{
		{"status only", nil, Delivered},
		{"success_when", func(_ int, _ http.Header, body []byte) (bool, error) {
			var v map[string]any
			return false, json.Unmarshal(body, &v)
		}, Retry},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := testDestination(t, srv.URL+"/hook", func(d *Destination) {
				d.Timeout = 200 * time.Millisecond
				d.Policy = Policy{MaxAttempts: 3, Initial: time.Minute, Max: time.Hour, Multiplier: 2}
				d.Success = tt.success
			})
			done := make(chan Result, 1)
			go func() { done <- NewSender(SenderOptions{Version: "test"}).Send(testContext(t), d, testJob(), Round{}) }()
			select {
			case res := <-done:
				if res.Outcome != tt.outcome || res.Attempts != 1 {
					t.Errorf("Send = %v after %d attempts (%v), want %v after 1", res.Outcome, res.Attempts, res.Err, tt.outcome)
				}
			case <-time.After(fanouttest.WaitTimeout):
				t.Fatalf("Send still reading a stalled answer after %s", fanouttest.WaitTimeout)
			}
		})
	}
}
