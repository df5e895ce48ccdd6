package gateway

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// The event log through the admin API of a real gateway: an embedded JetStream in
// t.TempDir(), httptest receivers, callbacks over HTTP.

const eventsToken = "events-admin-token"

// eventsConfig routes every C2C message to crm; %AUDIT% is the audit destination's
// line (empty: no audit), %ROUTES% more routes. The event log is off by default: it is
// turned on here.
const eventsConfig = `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: events-admin-token}
tencent:
  apps: [{sdkappid: 1400000000, token: tencent-token}]
queue: {dir: QUEUE_DIR}
defaults:
  retry: {max_attempts: 5, backoff: {initial: 10ms, max: 5s, multiplier: 2, jitter: 0}}
destinations:
  crm: {url: "%CRM%"}
%AUDIT%
routes:
  - name: c2c
    commands: [C2C.*]
    to: [crm]
%ROUTES%`

func eventsCfg(crm, audit, routes string) string {
	if audit != "" {
		audit = fmt.Sprintf("  audit: {url: %q}", audit)
	}
	return strings.NewReplacer("%CRM%", crm, "%AUDIT%", audit, "%ROUTES%", routes).Replace(eventsConfig) + "\nlog: {enabled: true}\n"
}

// send posts a signed C2C message carrying key, and returns when it is answered OK.
func (a *adminGateway) send(key string) {
	a.t.Helper()
	q := fanouttest.SignedCallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg", "tencent-token", time.Now())
	if ans := fanouttest.PostCallback(a.g.CallbackAddr(), q, fanouttest.C2CMessage(key)); !ans.OK() {
		a.t.Fatalf("callback %s: %d %s", key, ans.Status, ans.Body)
	}
}

// events lists what query selects (one page).
func (a *adminGateway) events(query string) httpapi.EventPage {
	a.t.Helper()
	var page httpapi.EventPage
	a.call(http.MethodGet, "/api/v1/events?"+query, "", &page)
	return page
}

// trace returns the callback whose MsgKey is key, once pred holds of it.
func (a *adminGateway) trace(key string, what string, pred func(eventlog.Detail) bool) eventlog.Detail {
	a.t.Helper()
	var d eventlog.Detail
	fanouttest.WaitFor(a.t, fanouttest.WaitTimeout, what, func() bool {
		page := a.events("field=MsgKey=" + url.QueryEscape(key))
		if len(page.Items) != 1 {
			return false
		}
		a.call(http.MethodGet, "/api/v1/events/"+page.Items[0].ID, "", &d)
		return pred(d)
	})
	return d
}

// TestEventsTraceTwoDestinations follows one callback to two destinations: crm takes it at
// once; audit fails twice (a quick retry, then a Retry-After that sends the delivery back
// to the queue) and takes the third attempt. The trace, found by MsgKey, shows every attempt.
func TestEventsTraceTwoDestinations(t *testing.T) {
	crm := fanouttest.NewReceiver(t, nil)
	audit := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		switch r.N {
		case 1:
			return fanouttest.Answer{Status: http.StatusServiceUnavailable}
		case 2:
			return fanouttest.Answer{Status: http.StatusServiceUnavailable, Header: http.Header{"Retry-After": {"3"}}}
		}
		return fanouttest.Answer{Status: http.StatusNoContent}
	})
	a := startAdminGateway(t, eventsCfg(crm.URL(), audit.URL(), "  - {name: vip, commands: [C2C.*], when: 'To_Account == \"Jonh\"', to: [audit]}"), eventsToken)
	a.send("trace-1")

	d := a.trace("trace-1", "both deliveries in the trace", func(d eventlog.Detail) bool { return d.Outcome == eventlog.OutcomeDelivered })
	if d.Command != "C2C.CallbackAfterSendMsg" || d.SdkAppID != fanouttest.App || !slices.Equal(d.Routes, []string{"c2c", "vip"}) ||
		d.Fields["MsgKey"] != "trace-1" || d.Fields["From_Account"] != "jared" || d.Fields["To_Account"] != "Jonh" {
		t.Errorf("callback: %+v", d.Summary)
	}
	if strings.Contains(d.Query, "Sign") || strings.Contains(d.Query, "RequestTime") || !strings.Contains(d.Query, "CallbackCommand=C2C.CallbackAfterSendMsg") {
		t.Errorf("query %q: want it without Sign and RequestTime", d.Query)
	}
	if d.BodyEncoding != "json" || fanouttest.MsgKey(d.Body) != "trace-1" {
		t.Errorf("body %s", d.Body)
	}
	want := map[string]struct {
		attempts int
		webhook  string
	}{"crm": {1, crm.Requests()[0].Header.Get("Webhook-Id")}, "audit": {3, audit.Requests()[0].Header.Get("Webhook-Id")}}
	for _, dl := range d.Deliveries {
		w := want[dl.Destination]
		if dl.State != eventlog.OutcomeDelivered || dl.Attempts != w.attempts || dl.WebhookID != w.webhook || dl.WebhookID != "msg_"+d.ID+"_"+dl.Destination {
			t.Errorf("%s: %+v, want delivered after %d attempts, webhook-id %s", dl.Destination, dl, w.attempts, w.webhook)
		}
	}
	var got []string
	for _, e := range d.Timeline {
		s := e.Kind
		switch e.Kind {
		case eventlog.KindAttempt:
			s = fmt.Sprintf("%s %s #%d %d %s", e.Kind, e.Destination, e.Attempt, e.Status, e.Result)
			if e.At.Before(d.ReceivedAt) || e.DurationMS <= 0 {
				t.Errorf("attempt at %v (received %v), %vms", e.At, d.ReceivedAt, e.DurationMS)
			}
		case eventlog.KindRetrying:
			s = fmt.Sprintf("%s %s after #%d", e.Kind, e.Destination, e.Attempt)
			if e.Due.Sub(e.At) < 2*time.Second {
				t.Errorf("retrying due %v at %v: want the 3 s of Retry-After", e.Due, e.At)
			}
		}
		got = append(got, s)
	}
	// crm's attempt and audit's first two race; the order within each destination holds.
	for _, dest := range []string{"crm", "audit"} {
		var mine []string
		for _, s := range got {
			if strings.Contains(s, " "+dest+" ") {
				mine = append(mine, s)
			}
		}
		wantSeq := map[string][]string{
			"crm": {"attempt crm #1 200 2xx"},
			"audit": {"attempt audit #1 503 5xx", "attempt audit #2 503 5xx", "retrying audit after #2",
				"attempt audit #3 204 2xx"},
		}[dest]
		if !slices.Equal(mine, wantSeq) {
			t.Errorf("%s's timeline %q, want %q (whole: %q)", dest, mine, wantSeq, got)
		}
	}
	if got[0] != "received" {
		t.Errorf("timeline starts with %q", got[0])
	}
}

// TestEventsSearch lists callbacks through the API with filters and pages, and refuses
// filters it cannot apply, naming them.
func TestEventsSearch(t *testing.T) {
	crm := fanouttest.NewReceiver(t, nil)
	audit := fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Status: http.StatusBadRequest}))
	a := startAdminGateway(t, eventsCfg(crm.URL(), audit.URL(), "  - {name: to-audit, commands: [C2C.*], when: 'MsgKey startsWith \"a\"', to: [audit]}"), eventsToken)
	for _, k := range []string{"a1", "b1", "a2", "b2"} {
		a.send(k)
	}
	// An unrouted callback: a command no route takes.
	q := fanouttest.SignedCallbackQuery(fanouttest.App, "State.StateChange", "tencent-token", time.Now())
	if ans := fanouttest.PostCallback(a.g.CallbackAddr(), q, []byte(`{"CallbackCommand":"State.StateChange","Info":{"To_Account":"x"}}`)); !ans.OK() {
		t.Fatalf("state change: %d %s", ans.Status, ans.Body)
	}
	// crm's deliveries of a1 and a2 race their dead letters at audit, and each record shows
	// once its block is written: wait for all of them.
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "a1 and a2 dead at audit, all four delivered to crm, the state change unrouted", func() bool {
		return len(a.events("outcome=dead").Items) == 2 && len(a.events("outcome=delivered").Items) == 2 &&
			len(a.events("outcome=delivered&destination=crm").Items) == 4 && len(a.events("outcome=no_route").Items) == 1
	})
	keys := func(p httpapi.EventPage) []string {
		var out []string
		for _, s := range p.Items {
			out = append(out, cmpOr(s.Fields["MsgKey"], s.Command))
		}
		return out
	}
	for _, tt := range []struct{ query, want string }{
		{"", "State.StateChange b2 a2 b1 a1"},
		{"outcome=dead", "a2 a1"},
		{"outcome=dead&destination=audit", "a2 a1"},
		{"outcome=delivered&destination=crm", "b2 a2 b1 a1"},
		{"outcome=no_route", "State.StateChange"},
		{"route=to-audit", "a2 a1"},
		{"command=C2C.*", "b2 a2 b1 a1"},
		{"field=MsgKey=b1", "b1"},
		{"field=From_Account=jared&field=MsgKey=a2", "a2"},
		{"app=1400000001", ""},
		{"since=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), ""},
	} {
		if got := strings.Join(keys(a.events(tt.query)), " "); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.query, got, tt.want)
		}
	}
	// Two at a time, newest first.
	p1 := a.events("limit=2&command=C2C.*")
	p2 := a.events(fmt.Sprintf("limit=2&command=C2C.*&after=%d", p1.Next))
	if strings.Join(keys(p1), " ") != "b2 a2" || strings.Join(keys(p2), " ") != "b1 a1" || p1.Next == 0 {
		t.Errorf("pages %v (next %d), %v (next %d)", keys(p1), p1.Next, keys(p2), p2.Next)
	}
	if p3 := a.events(fmt.Sprintf("limit=2&command=C2C.*&after=%d", p2.Next)); p2.Next != 0 && len(p3.Items) != 0 {
		t.Errorf("a third page: %v", keys(p3))
	}

	for _, tt := range []struct{ method, path, body, param string }{
		{"GET", "/api/v1/events?outcome=lost", "", "outcome"},
		{"GET", "/api/v1/events?field=MsgSeq=1", "", "field"},
		{"GET", "/api/v1/events?field=MsgKey", "", "field"},
		{"GET", "/api/v1/events?since=yesterday", "", "since"},
		{"GET", "/api/v1/events?limit=0", "", "limit"},
		{"GET", "/api/v1/events?destination=a.b", "", "destination"},
		{"GET", "/api/v1/events?reason=x", "", "reason"},
		{"GET", "/api/v1/events/stream?outcome=lost", "", "outcome"},
		{"POST", "/api/v1/events/replay", `{"filter": {"since": "2025-01-02T00:00:00Z"}}`, "to"},
		{"POST", "/api/v1/events/replay", `{"filter": {}, "to": "crm"}`, "filter.since"},
		{"POST", "/api/v1/events/replay", `{"filter": {"since": "2025-01-02T00:00:00Z", "outcome": "x"}, "to": "crm"}`, "filter.outcome"},
		{"POST", "/api/v1/events/replay", `{"filter": {"since": "2025-01-02T00:00:00Z"}, "to": "nowhere"}`, "to"},
		{"POST", "/api/v1/events/replay", `{"filter": {"since": "2025-01-02T00:00:00Z"}, "to": "crm", "reroute": true}`, "to"},
		{"POST", "/api/v1/events/replay", `{"filter": {"since": "2025-01-02T00:00:00Z"}, "to": "crm", "force": true}`, "force"},
	} {
		status, b := a.do(tt.method, tt.path, tt.body)
		var e struct{ Error, Param string }
		_ = json.Unmarshal(b, &e)
		if status != http.StatusBadRequest || e.Param != tt.param {
			t.Errorf("%s %s %s: %d %s, want 400 about %s", tt.method, tt.path, tt.body, status, b, tt.param)
		}
	}
	if status, b := a.do(http.MethodGet, "/api/v1/events/"+strings.Repeat("f", 32), ""); status != http.StatusNotFound {
		t.Errorf("an unknown callback: %d %s, want 404", status, b)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestEventsBackfill adds a destination by reload and sends it the callbacks of the last
// minutes from the log: a dry run first, then the copies, with the original webhook-id.
func TestEventsBackfill(t *testing.T) {
	crm := fanouttest.NewReceiver(t, nil)
	a := startAdminGateway(t, eventsCfg(crm.URL(), "", ""), eventsToken)
	a.send("old-1")
	a.send("old-2")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the old callbacks delivered", func() bool { return crm.Count() == 2 })
	since := time.Now()
	keys := []string{"new-1", "new-2", "new-3", "new-4", "new-5"}
	for _, k := range keys {
		a.send(k)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the new callbacks delivered to crm", func() bool { return crm.Count() == 7 })

	audit := fanouttest.NewReceiver(t, nil)
	a.rewrite(eventsCfg(crm.URL(), audit.URL(), ""))
	a.call(http.MethodPost, "/-/reload", "", nil)

	body := fmt.Sprintf(`{"filter": {"since": %q}, "to": "audit", "dry_run": true}`, since.UTC().Format(time.RFC3339Nano))
	var dry httpapi.EventReplayResult
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the log to have the new callbacks", func() bool {
		a.call(http.MethodPost, "/api/v1/events/replay", body, &dry)
		return dry.Matched == len(keys)
	})
	if !dry.DryRun || dry.Deliveries != 5 || dry.Destinations["audit"] != 5 || len(dry.Events) != 5 || len(dry.Skipped) != 0 || dry.Next != 0 {
		t.Errorf("dry run: %+v", dry)
	}
	if audit.Count() != 0 {
		t.Fatalf("a dry run delivered %d", audit.Count())
	}

	var res httpapi.EventReplayResult
	a.call(http.MethodPost, "/api/v1/events/replay", strings.Replace(body, `"dry_run": true`, `"dry_run": false`, 1), &res)
	if res.DryRun || res.Matched != 5 || res.Deliveries != 5 || res.Destinations["audit"] != 5 || !slices.Equal(res.Events, dry.Events) {
		t.Errorf("replay: %+v", res)
	}
	fanouttest.WaitForNone(t, fanouttest.WaitTimeout, "the backfill at audit", func() []string {
		var missing []string
		for _, k := range keys {
			if audit.Delivered()[k] != 1 {
				missing = append(missing, k)
			}
		}
		return missing
	})
	if got := audit.Delivered(); got["old-1"]+got["old-2"] != 0 {
		t.Errorf("callbacks before since were sent: %v", got)
	}
	for _, r := range audit.Requests() {
		crmCopy := crm.ByKey(fanouttest.MsgKey(r.Body))[0]
		id := strings.TrimSuffix(strings.TrimPrefix(crmCopy.Header.Get("Webhook-Id"), "msg_"), "_crm")
		if got := r.Header.Get("Webhook-Id"); got != "msg_"+id+"_audit" || !slices.Contains(res.Events, id) {
			t.Errorf("webhook-id %s for the callback %s", got, id)
		}
		if string(r.Body) != string(crmCopy.Body) || r.Header.Get("Fanout-Attempt") != "1" {
			t.Errorf("the copy differs: %s (attempt %s), crm got %s", r.Body, r.Header.Get("Fanout-Attempt"), crmCopy.Body)
		}
	}
	d := a.trace("new-3", "the backfill in the trace", func(d eventlog.Detail) bool { return len(d.Deliveries) == 2 && d.Outcome == "delivered" })
	if dl := d.Deliveries[1]; dl.Destination != "audit" || dl.Replayed != 1 || dl.Attempts != 1 {
		t.Errorf("audit in the trace: %+v", dl)
	}

	// Re-evaluating the routes: with a route to audit now, each callback goes to both.
	a.rewrite(eventsCfg(crm.URL(), audit.URL(), "  - {name: audit-all, to: [audit]}"))
	a.call(http.MethodPost, "/-/reload", "", nil)
	var re httpapi.EventReplayResult
	a.call(http.MethodPost, "/api/v1/events/replay", fmt.Sprintf(`{"filter": {"since": %q, "field": ["MsgKey=new-1"]}, "reroute": true, "dry_run": true}`,
		since.UTC().Format(time.RFC3339Nano)), &re)
	if re.Matched != 1 || re.Deliveries != 2 || re.Destinations["crm"] != 1 || re.Destinations["audit"] != 1 {
		t.Errorf("reroute dry run: %+v", re)
	}
}

// sse reads a server-sent event stream of the admin port into entries until stop.
type sse struct {
	mu      sync.Mutex
	entries []eventlog.Entry
	raw     strings.Builder
}

func (s *sse) all() ([]eventlog.Entry, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.entries), s.raw.String()
}

// follow opens GET /api/v1/events/stream?query and reads it until the test ends.
func (a *adminGateway) follow(query string) *sse {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.g.AdminAddr()+"/api/v1/events/stream?"+query, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		a.t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sse{}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.raw.WriteString(line + "\n")
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var e eventlog.Entry
				if json.Unmarshal([]byte(data), &e) == nil {
					s.entries = append(s.entries, e)
				}
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// TestEventsStream follows the log live with a filter while callbacks come in.
func TestEventsStream(t *testing.T) {
	crm := fanouttest.NewReceiver(t, nil)
	audit := fanouttest.NewReceiver(t, nil)
	a := startAdminGateway(t, eventsCfg(crm.URL(), audit.URL(), "  - {name: vip, commands: [C2C.*], when: 'MsgKey startsWith \"vip\"', to: [audit]}"), eventsToken)
	if status, _ := fanouttest.Do(http.MethodGet, "http://"+a.g.AdminAddr()+"/api/v1/events/stream", "", nil); status != http.StatusUnauthorized {
		t.Errorf("the stream without a token: %d, want 401", status)
	}
	s := a.follow("destination=audit")
	// The stream starts at the end of the log: send until it shows the first callback.
	n := 0
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the stream to show a callback", func() bool {
		n++
		a.send(fmt.Sprintf("vip-%d", n))
		a.send(fmt.Sprintf("plain-%d", n))
		entries, _ := s.all()
		return len(entries) > 0
	})
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the last callback's attempt at audit", func() bool {
		entries, _ := s.all()
		for _, e := range entries {
			if e.Kind == eventlog.KindAttempt && e.Result == "2xx" && e.Destination == "audit" && e.EventID != "" {
				return true
			}
		}
		return false
	})
	entries, raw := s.all()
	for _, e := range entries {
		switch {
		case e.Kind == eventlog.KindReceived && strings.HasPrefix(e.Fields["MsgKey"], "vip-") && e.Command == "C2C.CallbackAfterSendMsg":
		case e.Kind == eventlog.KindAttempt && e.Destination == "audit":
		default:
			t.Errorf("the stream for audit shows %+v", e)
		}
	}
	if !strings.HasPrefix(raw, ": following the event log\n") {
		t.Errorf("stream begins %q", raw[:min(len(raw), 80)])
	}

	// Stopping the gateway ends the stream: it does not hold the admin port open.
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	start := time.Now()
	if err := a.g.Stop(ctx); err != nil {
		t.Errorf("Stop with a stream open: %v (after %s)", err, time.Since(start))
	}
}

// TestEventsRetentionKeepsDeliveries fills a 1 MiB log with large callbacks for a
// destination that is down: the log stays within its bound, and every delivery stays
// queued.
func TestEventsRetentionKeepsDeliveries(t *testing.T) {
	cfg := strings.Replace(eventsCfg("http://127.0.0.1:1/down", "", ""), "log: {enabled: true}", "log: {enabled: true, max_bytes: 1MiB}", 1)
	cfg = strings.Replace(cfg, "max_attempts: 5", "max_attempts: 1000", 1)
	a := startAdminGateway(t, cfg, eventsToken)
	const n = 40
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		// Random bytes: the log compresses its blocks, and a run of one letter would take
		// almost nothing.
		raw := make([]byte, 30<<10)
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		pad := hex.EncodeToString(raw)
		q := fanouttest.SignedCallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg", "tencent-token", time.Now())
		body := fmt.Sprintf(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgKey":"big-%d","Pad":%q}`, i, pad)
		if ans := fanouttest.PostCallback(a.g.CallbackAddr(), q, []byte(body)); !ans.OK() {
			t.Fatalf("callback %d: %d %s", i, ans.Status, ans.Body)
		}
	}
	m := fanouttest.ScrapeMetrics(t, "http://"+a.g.AdminAddr()+"/metrics", eventsToken)
	var ds httpapi.Destinations
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the log to reach its bound", func() bool {
		m = fanouttest.ScrapeMetrics(t, "http://"+a.g.AdminAddr()+"/metrics", eventsToken)
		return len(a.events("field=MsgKey=big-0").Items) == 0 && len(a.events(fmt.Sprintf("field=MsgKey=big-%d", n-1)).Items) == 1
	})
	if size := m.Sum("fanout_event_log_bytes", nil); size <= 0 || size > 1<<20 {
		t.Errorf("fanout_event_log_bytes %v: want within 1 MiB", size)
	}
	if got := m.Sum("fanout_event_log_dropped_total", nil); got != 0 {
		t.Errorf("records dropped: %v", got)
	}
	a.call(http.MethodGet, "/api/v1/destinations", "", &ds)
	if p := ds.Destinations[0].Pending; p != n {
		t.Errorf("crm has %d deliveries pending, want %d: the log's limits took deliveries", p, n)
	}
}

// TestEventsBlockedLane: a delivery of an ordered destination with on_exhausted: block
// that gives up is recorded as blocked (its lane waits for an operator), not dead; dead
// once an operator skips it.
func TestEventsBlockedLane(t *testing.T) {
	crm := fanouttest.NewReceiver(t, nil)
	audit := fanouttest.NewReceiver(t, func(fanouttest.Request) fanouttest.Answer {
		return fanouttest.Answer{Status: http.StatusBadRequest, Body: "no"}
	})
	cfg := strings.NewReplacer("%CRM%", crm.URL(),
		"%AUDIT%", fmt.Sprintf("  audit: {url: %q, order_by: From_Account, on_exhausted: block}", audit.URL()),
		"%ROUTES%", "  - {name: vip, commands: [C2C.*], to: [audit]}").Replace(eventsConfig) + "\nlog: {enabled: true}\n"
	a := startAdminGateway(t, cfg, eventsToken)
	a.send("blocked-1")

	d := a.trace("blocked-1", "audit's delivery blocked", func(d eventlog.Detail) bool { return d.Outcome == eventlog.OutcomeBlocked })
	for _, dl := range d.Deliveries {
		want := map[string]string{"crm": eventlog.OutcomeDelivered, "audit": eventlog.OutcomeBlocked}[dl.Destination]
		if dl.State != want || dl.Destination == "audit" && dl.Reason != "status 400" {
			t.Errorf("%s: %+v, want %s", dl.Destination, dl, want)
		}
	}
	if !slices.ContainsFunc(d.Timeline, func(e eventlog.Entry) bool { return e.Kind == eventlog.KindBlocked && e.Destination == "audit" }) ||
		slices.ContainsFunc(d.Timeline, func(e eventlog.Entry) bool { return e.Kind == eventlog.KindDead }) {
		t.Errorf("timeline: %+v, want a blocked record and no dead one", d.Timeline)
	}
	if page := a.events("outcome=blocked&destination=audit"); len(page.Items) != 1 || page.Items[0].ID != d.ID {
		t.Errorf("outcome=blocked at audit: %+v", page.Items)
	}
	if page := a.events("outcome=dead"); len(page.Items) != 0 {
		t.Errorf("outcome=dead: %+v, want none", page.Items)
	}

	// An operator retries the lane: the delivery waits for its next attempt, which fails
	// again (the receiver still refuses it) and blocks the lane again.
	a.call(http.MethodPost, "/api/v1/lanes/audit/jared/retry", "", nil)
	d = a.trace("blocked-1", "audit's delivery retried, then blocked again", func(d eventlog.Detail) bool {
		// The retry's record is written once the lane's replica applied it, which can be
		// after the records of the attempt it made: the trace orders them by time.
		n := map[string]int{}
		for _, e := range d.Timeline {
			n[e.Kind]++
		}
		return d.Outcome == eventlog.OutcomeBlocked && n[eventlog.KindBlocked] == 2 && n[eventlog.KindRetrying] == 1
	})
	kinds := []string{}
	for _, e := range d.Timeline {
		if e.Destination == "audit" && e.Kind != eventlog.KindAttempt {
			kinds = append(kinds, e.Kind)
		}
	}
	if want := []string{eventlog.KindBlocked, eventlog.KindRetrying, eventlog.KindBlocked}; !slices.Equal(kinds, want) {
		t.Errorf("audit's records besides attempts: %v, want %v", kinds, want)
	}

	// An operator skips the lane: the delivery is a dead letter now.
	a.call(http.MethodPost, "/api/v1/lanes/audit/jared/skip", "", nil)
	d = a.trace("blocked-1", "audit's delivery dead once skipped", func(d eventlog.Detail) bool { return d.Outcome == eventlog.OutcomeDead })
	if dl := d.Deliveries[1]; dl.Destination != "audit" || dl.Reason != "status 400; lane skipped by an operator" {
		t.Errorf("audit after the skip: %+v", dl)
	}
}

// TestEventsOff runs a gateway without a log section: the log is off by default, and the
// endpoints say so.
func TestEventsOff(t *testing.T) {
	crm := fanouttest.NewReceiver(t, nil)
	a := startAdminGateway(t, strings.Replace(eventsCfg(crm.URL(), "", ""), "log: {enabled: true}", "", 1), eventsToken)
	a.send("off-1")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the delivery", func() bool { return crm.Count() == 1 })
	for _, p := range []string{"/api/v1/events", "/api/v1/events/" + strings.Repeat("a", 32), "/api/v1/events/stream"} {
		status, b := a.do(http.MethodGet, p, "")
		if status != http.StatusNotFound || !strings.Contains(string(b), "log.enabled: false") {
			t.Errorf("%s: %d %s", p, status, b)
		}
	}
	m := fanouttest.ScrapeMetrics(t, "http://"+a.g.AdminAddr()+"/metrics", eventsToken)
	if !slices.ContainsFunc(m, func(s fanouttest.Sample) bool { return s.Name == "fanout_event_log_bytes" && s.Value == 0 }) {
		t.Errorf("fanout_event_log_bytes is not 0 while the log is off")
	}
}
