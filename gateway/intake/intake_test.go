package intake

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/internal/fanouttest"
	"github.com/fanout-gw/fanout/rules"
)

// The intake's tests run it without a listener or JetStream: a callback is handed to
// Receive as httpapi would, with the real verifier and rules, and the jobs go to a store
// that keeps them in memory (or refuses them, as a queue that is down does).

const (
	app      = "1400000000"
	signed   = "1400000001" // an app with a callback-auth token
	token    = "t0ken"
	afterMsg = "C2C.CallbackAfterSendMsg"
)

var okJSON = string(tencentim.OK)

// memStore keeps the jobs it is given; with fail set it refuses them. wait, when set,
// runs first with Enqueue's context, as the queue waits for its acknowledgements.
type memStore struct {
	mu   sync.Mutex
	jobs []queue.Job
	fail error
	wait func(ctx context.Context) error
}

func (s *memStore) Enqueue(ctx context.Context, jobs []queue.Job) error {
	if s.wait != nil {
		if err := s.wait(ctx); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.jobs = append(s.jobs, jobs...)
	return nil
}

func (s *memStore) stored() []queue.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.jobs)
}

// fixture is an intake on a config with three routes, and what it counts and logs.
type fixture struct {
	in      *Intake
	store   *memStore
	metrics Metrics
	log     *bytes.Buffer
	live    *Config
}

func newFixture(t *testing.T, routes []rules.RouteSpec, responds []rules.RespondSpec, respond []Respond) *fixture {
	t.Helper()
	v, err := tencentim.NewVerifier(tencentim.Options{Apps: []tencentim.App{{SdkAppID: app}, {SdkAppID: signed, Token: token}},
		AllowIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	set, errs := rules.Compile(routes, responds)
	if len(errs) > 0 {
		t.Fatalf("rules: %v", errs)
	}
	f := &fixture{store: &memStore{}, log: &bytes.Buffer{}, metrics: Metrics{
		Callbacks:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"app", "command", "outcome"}),
		CallbackDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d"}),
		RouteMatches:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "m"}, []string{"route"}),
		RuleErrors:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e"}, []string{"route"}),
		Respond:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"destination", "outcome"}),
	}}
	f.live = &Config{Path: "/callback", MaxBodyBytes: 1 << 20, Verifier: v, Rules: set, Respond: respond}
	f.in = New(Options{Live: func() *Config { return f.live }, Store: f.store, DedupWindow: time.Minute, Metrics: f.metrics,
		Logger: slog.New(slog.NewTextHandler(f.log, nil))})
	return f
}

// defaultRoutes send every callback to app-backend, failed C2C messages to audit too.
var defaultRoutes = []rules.RouteSpec{
	{Name: "all", To: []string{"app-backend"}},
	{Name: "failed", Filter: rules.Filter{Commands: []string{afterMsg}, When: "SendMsgResult != 0"}, To: []string{"audit", "app-backend"}},
	{Name: "typo", Filter: rules.Filter{Commands: []string{afterMsg}, When: `From_Account + 1 > 0`}, To: []string{"audit"}},
}

func query(sdkAppID, command string) string {
	return "SdkAppid=" + sdkAppID + "&CallbackCommand=" + command + "&contenttype=json&ClientIP=198.51.100.1&OptPlatform=iOS"
}

// receive hands a callback to the intake as httpapi would, from an allowed address.
func (f *fixture) receive(t *testing.T, rawQuery string, body []byte) httpapi.Answer {
	t.Helper()
	return f.in.Receive(context.Background(), newCallback(t, rawQuery, body))
}

// newCallback is a callback as httpapi reads it, from an allowed address.
func newCallback(t *testing.T, rawQuery string, body []byte) *httpapi.Callback {
	return &httpapi.Callback{RawQuery: rawQuery, Body: body, ClientIP: netip.MustParseAddr("203.0.113.9"), RequestID: "req-" + t.Name()}
}

func (f *fixture) count(t *testing.T, vec *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := vec.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestReceiveRefuses(t *testing.T) {
	body := fanouttest.Payload(t, afterMsg)
	tests := []struct {
		name     string
		cb       httpapi.Callback
		status   int
		reason   string
		info     string // in ErrorInfo
		app, cmd string // the metric labels
	}{
		{"too large", httpapi.Callback{RawQuery: query(app, afterMsg), Body: body[:10], TooLarge: true},
			413, "too_large", "body larger than server.max_body_bytes (1048576 bytes)", app, afterMsg},
		{"bad query", httpapi.Callback{RawQuery: "SdkAppid=%zz&CallbackCommand=" + afterMsg, Body: body},
			400, tencentim.ReasonBadQuery, "query parameter SdkAppid", "other", "other"},
		{"no SdkAppid", httpapi.Callback{RawQuery: "CallbackCommand=" + afterMsg, Body: body},
			403, tencentim.ReasonMissingApp, "SdkAppid is missing", "other", afterMsg},
		{"unknown SdkAppid", httpapi.Callback{RawQuery: query("1400000009", afterMsg), Body: body},
			403, tencentim.ReasonUnknownApp, "1400000009", "other", afterMsg},
		{"address outside allow_ips", httpapi.Callback{RawQuery: query(app, afterMsg), Body: body, ClientIP: netip.MustParseAddr("192.0.2.1")},
			403, tencentim.ReasonIPNotAllowed, "allow_ips", app, afterMsg},
		{"no Sign for an app with a token", httpapi.Callback{RawQuery: query(signed, afterMsg), Body: body},
			401, tencentim.ReasonMissingSign, "Sign is missing", signed, afterMsg},
		{"not JSON", httpapi.Callback{RawQuery: query(app, afterMsg), Body: []byte(`[1]`)},
			400, "bad_json", "", app, afterMsg},
		{"unknown command", httpapi.Callback{RawQuery: query(app, "C2C.CallbackMadeUp"), Body: []byte(`[`)},
			400, "bad_json", "", app, "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, defaultRoutes, nil, nil)
			cb := tt.cb
			if !cb.ClientIP.IsValid() {
				cb.ClientIP = netip.MustParseAddr("203.0.113.9")
			}
			a := f.in.Receive(context.Background(), &cb)
			if a.Status != tt.status || !bytes.HasPrefix(a.Body, []byte(`{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":`)) ||
				!strings.Contains(string(a.Body), tt.info) {
				t.Errorf("answer %d %s, want %d with %q", a.Status, a.Body, tt.status, tt.info)
			}
			if n := len(f.store.stored()); n != 0 {
				t.Errorf("%d jobs stored for a refused callback", n)
			}
			if got := f.count(t, f.metrics.Callbacks, tt.app, tt.cmd, tt.reason); got != 1 {
				t.Errorf("callbacks{%s,%s,%s} = %g, want 1", tt.app, tt.cmd, tt.reason, got)
			}
		})
	}
}

func TestReceiveStoresThenAnswers(t *testing.T) {
	f := newFixture(t, defaultRoutes, nil, nil)
	body := []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","SendMsgResult":1}`)
	q := query(app, afterMsg)
	if a := f.receive(t, q, body); a.Status != http.StatusOK || string(a.Body) != okJSON {
		t.Fatalf("answer %d %s", a.Status, a.Body)
	}
	jobs := f.store.stored()
	eventID := tencentim.EventID(app, afterMsg, body)
	want := []queue.Job{
		{EventID: eventID, Destination: "app-backend", Routes: []string{"all", "failed"}},
		{EventID: eventID, Destination: "audit", Routes: []string{"failed"}},
	}
	if len(jobs) != len(want) {
		t.Fatalf("stored %d jobs, want %d: %+v", len(jobs), len(want), jobs)
	}
	for i, j := range jobs {
		if j.EventID != want[i].EventID || j.Destination != want[i].Destination || !slices.Equal(j.Routes, want[i].Routes) ||
			j.Query != q || !bytes.Equal(j.Body, body) || j.RequestID != "req-"+t.Name() || j.ReceivedAt.IsZero() {
			t.Errorf("job %d = %+v, want %+v with the callback's query, body and request id", i, j, want[i])
		}
	}
	if got := f.count(t, f.metrics.Callbacks, app, afterMsg, "ok"); got != 1 {
		t.Errorf("callbacks ok = %g", got)
	}
	for _, route := range []string{"all", "failed"} {
		if got := f.count(t, f.metrics.RouteMatches, route); got != 1 {
			t.Errorf("route_matches{%s} = %g", route, got)
		}
	}

	// A rule that fails at run time counts as no match, is counted each time, and logged
	// once per logEvery.
	f.receive(t, q, []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"another"}`))
	if got := f.count(t, f.metrics.RuleErrors, "typo"); got != 2 {
		t.Errorf("rule_errors{typo} = %g, want 2", got)
	}
	if n := strings.Count(f.log.String(), "rule failed at run time"); n != 1 {
		t.Errorf("the rule error was logged %d times, want once:\n%s", n, f.log)
	}
}

func TestReceiveDuplicate(t *testing.T) {
	f := newFixture(t, defaultRoutes, nil, nil)
	body := fanouttest.Payload(t, afterMsg)
	for i, want := range []string{"ok", "duplicate"} {
		if a := f.receive(t, query(app, afterMsg), body); a.Status != http.StatusOK || string(a.Body) != okJSON {
			t.Fatalf("callback %d: answer %d %s", i, a.Status, a.Body)
		}
		if got := f.count(t, f.metrics.Callbacks, app, afterMsg, want); got != 1 {
			t.Errorf("callback %d: callbacks{%s} = %g, want 1", i, want, got)
		}
	}
	if n := len(f.store.stored()); n != 1 {
		t.Errorf("stored %d jobs, want 1", n)
	}
	// The same body from another app is another callback.
	f.live.Verifier, _ = tencentim.NewVerifier(tencentim.Options{Apps: []tencentim.App{{SdkAppID: app}, {SdkAppID: "1400000002"}}})
	f.receive(t, query("1400000002", afterMsg), body)
	if n := len(f.store.stored()); n != 2 {
		t.Errorf("stored %d jobs, want 2", n)
	}
}

// TestReceiveStoreDown: a callback the store cannot take is answered 503, never OK, and is
// not remembered: Tencent's retry, once the store is back, is stored.
func TestReceiveStoreDown(t *testing.T) {
	f := newFixture(t, defaultRoutes, nil, nil)
	f.store.fail = errors.New("queue: no quorum")
	body := fanouttest.Payload(t, afterMsg)
	a := f.receive(t, query(app, afterMsg), body)
	if a.Status != http.StatusServiceUnavailable || !strings.Contains(string(a.Body), "cannot store the callback now: queue: no quorum") {
		t.Errorf("answer %d %s, want 503", a.Status, a.Body)
	}
	if got := f.count(t, f.metrics.Callbacks, app, afterMsg, "queue_unavailable"); got != 1 {
		t.Errorf("callbacks{queue_unavailable} = %g", got)
	}
	f.store.fail = nil
	if a := f.receive(t, query(app, afterMsg), body); a.Status != http.StatusOK {
		t.Fatalf("retry answered %d %s", a.Status, a.Body)
	}
	if n := len(f.store.stored()); n != 1 {
		t.Errorf("stored %d jobs after the retry, want 1", n)
	}
}

// TestReceiveRespond: a respond rule's destination answers a before callback; the other
// matched destinations still get their jobs, and an answer that cannot be used gives the
// rule's on_failure decision.
func TestReceiveRespond(t *testing.T) {
	var answer atomicString
	answer.set(`{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":120001}`)
	moderator := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, answer.get())
	}))
	t.Cleanup(moderator.Close)
	dest, err := delivery.NewDestination(delivery.Destination{Name: "moderator", URL: moderator.URL, Timeout: 5 * time.Second,
		Policy: delivery.Policy{MaxAttempts: 1, Initial: time.Second, Max: time.Second, Multiplier: 1}})
	if err != nil {
		t.Fatal(err)
	}
	const before = "C2C.CallbackBeforeSendMsg"
	f := newFixture(t, defaultRoutes, []rules.RespondSpec{{Filter: rules.Filter{Commands: []string{before}}, From: "moderator"}},
		[]Respond{{From: "moderator", OnFailure: "deny", Responder: &delivery.Responder{Sender: delivery.NewSender(delivery.SenderOptions{}),
			Destination: dest, Timeout: 1500 * time.Millisecond, OnFailure: tencentim.DecisionDeny}}})
	body := fanouttest.Payload(t, before)

	a := f.receive(t, query(app, before), body)
	if a.Status != http.StatusOK || string(a.Body) != answer.get() {
		t.Errorf("answer %d %s, want the moderator's", a.Status, a.Body)
	}
	if jobs := f.store.stored(); len(jobs) != 1 || jobs[0].Destination != "app-backend" {
		t.Errorf("jobs %+v, want one for app-backend", jobs)
	}

	answer.set(`{"ErrorCode":"0"}`)
	if a := f.receive(t, query(app, before), append(body, ' ')); string(a.Body) != string(tencentim.Decision(tencentim.DecisionDeny)) {
		t.Errorf("answer %s, want the deny decision", a.Body)
	}
	for outcome, want := range map[string]float64{delivery.RespondAnswered: 1, delivery.RespondBadAnswer: 1} {
		if got := f.count(t, f.metrics.Respond, "moderator", outcome); got != want {
			t.Errorf("respond{%s} = %g, want %g", outcome, got, want)
		}
	}
	if !strings.Contains(f.log.String(), "outcome=bad_answer") {
		t.Errorf("the unusable answer was not logged:\n%s", f.log)
	}
}

func TestLimits(t *testing.T) {
	f := newFixture(t, defaultRoutes, nil, nil)
	f.live.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	l := f.in.Limits()
	if l.Path != "/callback" || l.MaxBodyBytes != 1<<20 || len(l.TrustedProxies) != 1 {
		t.Errorf("Limits = %+v", l)
	}
}

type atomicString struct {
	mu sync.Mutex
	s  string
}

func (a *atomicString) set(s string) { a.mu.Lock(); a.s = s; a.mu.Unlock() }
func (a *atomicString) get() string  { a.mu.Lock(); defer a.mu.Unlock(); return a.s }
