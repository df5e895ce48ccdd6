package intake

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// logLines are the lines of the fixture's log with msg, without their time.
func (f *fixture) logLines(msg string) []string {
	var out []string
	for _, line := range strings.Split(f.log.String(), "\n") {
		if strings.Contains(line, `msg="`+msg+`"`) {
			out = append(out, regexp.MustCompile(`^time=\S+ `).ReplaceAllString(line, ""))
		}
	}
	return out
}

// TestReceiveTooLargeForQueue: a body the queue cannot store in one message is refused
// with 413, like one over max_body_bytes, and logged as a refusal, not as an outage.
func TestReceiveTooLargeForQueue(t *testing.T) {
	f := newFixture(t, defaultRoutes, nil, nil)
	f.store.fail = fmt.Errorf("queue: enqueue event e to %q: %w", "app-backend", &queue.TooLargeError{Body: 900000, MaxPayload: 1 << 20, MaxBody: 737280})
	a := f.receive(t, query(app, afterMsg), fanouttest.Payload(t, afterMsg))
	want := `{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"body larger than the queue stores (737280 bytes, with JetStream's max_payload of 1048576)"}`
	if a.Status != http.StatusRequestEntityTooLarge || string(a.Body) != want {
		t.Errorf("answer %d %s\nwant 413 %s", a.Status, a.Body, want)
	}
	if got := f.count(t, f.metrics.Callbacks, app, afterMsg, "too_large"); got != 1 {
		t.Errorf("callbacks{too_large} = %g, want 1", got)
	}
	lines := f.logLines("callback refused")
	wantLine := `level=WARN msg="callback refused" request_id=req-TestReceiveTooLargeForQueue app=1400000000 command=C2C.CallbackAfterSendMsg reason=too_large status=413 info="body larger than the queue stores (737280 bytes, with JetStream's max_payload of 1048576)" suppressed=0`
	if len(lines) != 1 || lines[0] != wantLine || strings.Contains(f.log.String(), "503") {
		t.Errorf("log:\n%s\nwant one line:\n%s", f.log, wantLine)
	}
	if got := f.count(t, f.metrics.RouteMatches, "all"); got != 0 {
		t.Errorf("route_matches{all} = %g for a refused callback, want 0", got)
	}
}

// TestRefusalsLogged: refused callbacks are logged at warn, one line per reason and app
// every logEvery, which says how many it held back.
func TestRefusalsLogged(t *testing.T) {
	f := newFixture(t, defaultRoutes, nil, nil)
	body := fanouttest.Payload(t, afterMsg)
	for range 3 {
		f.receive(t, query(signed, afterMsg), body) // no Sign
	}
	f.receive(t, query("1400000009", afterMsg), body)
	f.receive(t, query("1400000008", afterMsg), body) // the same reason and app label ("other")

	// The window of the first key passes.
	f.in.logLimit.mu.Lock()
	f.in.logLimit.last["reject\x00missing_sign\x00"+signed] = time.Now().Add(-logEvery)
	f.in.logLimit.mu.Unlock()
	f.receive(t, query(signed, afterMsg), body)

	want := []string{
		`level=WARN msg="callback refused" request_id=req-TestRefusalsLogged app=1400000001 command=C2C.CallbackAfterSendMsg reason=missing_sign status=401 info="Sign is missing: callback authentication is on for SdkAppid 1400000001" suppressed=0`,
		`level=WARN msg="callback refused" request_id=req-TestRefusalsLogged app=other command=C2C.CallbackAfterSendMsg reason=unknown_app status=403 info="SdkAppid \"1400000009\" is not configured" suppressed=0`,
		`level=WARN msg="callback refused" request_id=req-TestRefusalsLogged app=1400000001 command=C2C.CallbackAfterSendMsg reason=missing_sign status=401 info="Sign is missing: callback authentication is on for SdkAppid 1400000001" suppressed=2`,
	}
	if got := f.logLines("callback refused"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := f.count(t, f.metrics.Callbacks, signed, afterMsg, "missing_sign"); got != 4 {
		t.Errorf("callbacks{missing_sign} = %g, want 4: every refusal is counted", got)
	}
}

// TestDuplicateIsNoRouteMatch: a callback received again within the dedup window is not
// a second match of its routes.
func TestDuplicateIsNoRouteMatch(t *testing.T) {
	f := newFixture(t, defaultRoutes, nil, nil)
	body := []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","SendMsgResult":1}`)
	for range 2 {
		if a := f.receive(t, query(app, afterMsg), body); a.Status != http.StatusOK {
			t.Fatalf("answer %d %s", a.Status, a.Body)
		}
	}
	for _, route := range []string{"all", "failed"} {
		if got := f.count(t, f.metrics.RouteMatches, route); got != 1 {
			t.Errorf("route_matches{%s} = %g, want 1", route, got)
		}
	}
	if got := f.count(t, f.metrics.Callbacks, app, afterMsg, "duplicate"); got != 1 {
		t.Errorf("callbacks{duplicate} = %g, want 1", got)
	}
}

// TestClientGoneWhileStoring: a client that closes the connection while its callback is
// stored does not stop the store, and the log says the callback was stored.
func TestClientGoneWhileStoring(t *testing.T) {
	f := newFixture(t, defaultRoutes, nil, nil)
	f.store.wait = func(ctx context.Context) error { return ctx.Err() } // as the queue waits for its acks
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone
	a := f.in.Receive(ctx, newCallback(t, query(app, afterMsg), fanouttest.Payload(t, afterMsg)))
	if a.Status != http.StatusOK || len(f.store.stored()) != 1 {
		t.Errorf("answer %d %s with %d jobs stored, want 200 and the job", a.Status, a.Body, len(f.store.stored()))
	}
	want := `level=INFO msg="client went away before the answer; the callback was stored and will be delivered" request_id=req-TestClientGoneWhileStoring app=1400000000 command=C2C.CallbackAfterSendMsg duplicate=false suppressed=0`
	if got := f.logLines("client went away before the answer; the callback was stored and will be delivered"); len(got) != 1 || got[0] != want ||
		strings.Contains(f.log.String(), "503") || strings.Contains(f.log.String(), "not stored") {
		t.Errorf("log:\n%s\nwant the line:\n%s", f.log, want)
	}
}
