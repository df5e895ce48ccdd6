// Package intake is the callback path. A callback that httpapi read off the wire is
// checked (body size, query, SdkAppid, source address, Sign, JSON body), matched against
// the live rules, stored as one durable job per destination, and only then answered OK;
// meanwhile a respond rule's destination may answer a "before" callback synchronously.
// The intake also remembers the callbacks it stored within the dedup window, so that
// Tencent's retries are not delivered twice, counts every callback by outcome, and
// rate-limits the log of rules that fail at run time.
//
// It depends on small interfaces: the Store that takes the jobs (the queue), the live
// Config it reads once per callback (swapped by the gateway on reload), the Matcher (the
// compiled rules) and a Responder per respond rule. So it is tested without JetStream or a
// listener. It parses no YAML, speaks no NATS and routes no HTTP.
package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/rules"
)

// enqueueTimeout bounds the wait for the store's acknowledgements, leaving room in
// Tencent's 2 s for the answer: past it the callback is answered 503, never OK.
const enqueueTimeout = 1500 * time.Millisecond

// Store keeps jobs durably: the queue.
type Store interface {
	// Enqueue returns once every job is stored, or an error: then the callback may be
	// lost and is not answered OK.
	Enqueue(ctx context.Context, jobs []queue.Job) error
}

// Matcher decides where a callback goes: the compiled rules.
type Matcher interface {
	Match(ev *rules.Event, hook rules.ErrorHook) rules.Match
}

// Responder answers a "before" callback synchronously: a delivery.Responder.
type Responder interface {
	Respond(ctx context.Context, job queue.Job) delivery.RespondResult
}

// Config is the part of the live config a callback is received with. The gateway builds
// one per loaded config; a callback uses the one that was live when it arrived, from
// start to end.
type Config struct {
	Path           string
	MaxBodyBytes   int64
	TrustedProxies []netip.Prefix
	Verifier       *tencentim.Verifier
	Rules          Matcher
	// Respond are the respond rules, by the index rules.Match gives (RespondIndex).
	Respond []Respond
	// ExtraCommands are the commands of tencent.extra_commands: counted by name in the
	// metrics, like those Tencent documents.
	ExtraCommands []string
	// OrderBy are the compiled order_by of the ordered destinations, by name: their jobs
	// carry the callback's key.
	OrderBy map[string]*rules.Key
}

// Respond is one respond rule as the intake runs it.
type Respond struct {
	From      string // the destination that answers, for metrics and logs
	OnFailure string // allow, deny or drop, for logs
	Responder Responder
}

// Metrics are the series the intake counts; the gateway defines and registers them.
type Metrics struct {
	Callbacks        *prometheus.CounterVec // app, command, outcome (ok, duplicate, or a rejection reason)
	CallbackDuration prometheus.Histogram
	RouteMatches     *prometheus.CounterVec // route
	RuleErrors       *prometheus.CounterVec // route
	Respond          *prometheus.CounterVec // destination, outcome
	OrderKeyErrors   *prometheus.CounterVec // destination: order_by failed, the fallback lane was used
}

// Options configure New.
type Options struct {
	Live  func() *Config // the live config; never nil once New returns
	Store Store
	// DedupWindow is how long a stored callback is remembered: the same callback again
	// within it is answered OK and not stored again. 0 remembers nothing.
	DedupWindow time.Duration
	Metrics     Metrics
	Logger      *slog.Logger // nil = slog.Default()
	// Events, when set, is told of every accepted callback: the event log.
	Events Recorder
}

// Intake receives callbacks: it is the httpapi.Receiver of the callback port.
type Intake struct {
	live     func() *Config
	store    Store
	metrics  Metrics
	log      *slog.Logger
	dedup    *dedup
	logLimit logLimiter // rule errors, refused callbacks, clients gone
	events   Recorder
}

var _ httpapi.Receiver = (*Intake)(nil)

// New returns an intake.
func New(o Options) *Intake {
	in := &Intake{live: o.Live, store: o.Store, metrics: o.Metrics, log: o.Logger, dedup: newDedup(o.DedupWindow), events: o.Events}
	if in.log == nil {
		in.log = slog.Default()
	}
	return in
}

// Limits returns the live callback path, body limit and trusted proxies.
func (in *Intake) Limits() httpapi.Limits {
	c := in.live()
	return httpapi.Limits{Path: c.Path, MaxBodyBytes: c.MaxBodyBytes, TrustedProxies: c.TrustedProxies}
}

// call is one callback on its way through Receive.
type call struct {
	*httpapi.Callback
	start        time.Time
	live         *Config
	query        tencentim.Query
	app, command string // its metric labels
	eventID      string // once computed
}

// Receive checks a callback in the order Tencent's errors are documented: size,
// SdkAppid, source address, Sign, JSON body; then matches it, stores every delivery
// durably, and only then answers OK (or the respond rule's answer).
func (in *Intake) Receive(ctx context.Context, cb *httpapi.Callback) httpapi.Answer {
	c := &call{Callback: cb, start: time.Now(), live: in.live()}
	ev, rejected := in.check(c)
	if rejected != nil {
		return in.reject(ctx, c, rejected)
	}
	m := c.live.Rules.Match(ev, in.ruleFailed)
	if ev.Command != c.query.CallbackCommand && c.command == "other" {
		c.app, c.command = labels(c.live, tencentim.Query{SdkAppID: c.query.SdkAppID, CallbackCommand: ev.Command})
	}

	var answer []byte
	var wg sync.WaitGroup
	if m.Respond != nil {
		wg.Go(func() { answer = in.respond(ctx, c, c.live.Respond[m.RespondIndex]) })
	}
	duplicate, err := in.enqueue(ctx, c, ev, m.Deliveries)
	wg.Wait()
	var tooLarge *queue.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		return in.reject(ctx, c, &tencentim.Rejection{Status: http.StatusRequestEntityTooLarge, Reason: ReasonTooLarge,
			Info: fmt.Sprintf("body larger than the queue stores (%d bytes, with JetStream's max_payload of %d)", tooLarge.MaxBody, tooLarge.MaxPayload)})
	case err != nil:
		in.log.Error("callback not stored, answered 503", "request_id", c.RequestID, "app", c.app, "command", c.command, "err", err)
		return in.fail(c, &tencentim.Rejection{Status: http.StatusServiceUnavailable, Reason: "queue_unavailable",
			Info: "cannot store the callback now: " + err.Error()})
	}
	if !duplicate { // a duplicate was counted when it was stored
		for _, r := range m.Routes {
			in.metrics.RouteMatches.WithLabelValues(r).Inc()
		}
	}
	if answer == nil {
		answer = tencentim.OK
	}
	outcome := "ok"
	if duplicate {
		outcome = "duplicate"
	}
	in.counted(c, outcome)
	in.record(c, ev, &m, duplicate)
	if ctx.Err() != nil && len(m.Deliveries) > 0 {
		// The client closed the connection while the callback was being stored (the store
		// does not stop for it): what it will not read is that it was stored.
		if n, ok := in.logLimit.allow("client_gone"); ok {
			in.log.Info("client went away before the answer; the callback was stored and will be delivered",
				"request_id", c.RequestID, "app", c.app, "command", c.command, "duplicate", duplicate, "suppressed", n)
		}
	}
	if in.log.Enabled(ctx, slog.LevelDebug) { // the arguments alone cost allocations
		in.log.Debug("callback accepted", "request_id", c.RequestID, "app", c.app, "command", c.command,
			"routes", m.Routes, "deliveries", len(m.Deliveries), "respond", m.Respond != nil, "duplicate", duplicate)
	}
	return httpapi.Answer{Status: http.StatusOK, Body: answer}
}

// check runs Check on a call, keeping its query and metric labels.
func (in *Intake) check(c *call) (*rules.Event, *tencentim.Rejection) {
	q, ev, r := Check(c.live, c.Callback)
	c.query = q
	c.app, c.command = labels(c.live, q)
	return ev, r
}

// Check runs the checks nothing may be stored without, in the order Tencent's errors are
// documented (size, query, SdkAppid, source address, Sign, JSON body), and returns the
// callback's query and the callback as the rules see it, or why it is refused. Receive
// runs it on every callback; `fanout route` runs it too, so that it answers as serve would.
func Check(live *Config, cb *httpapi.Callback) (tencentim.Query, *rules.Event, *tencentim.Rejection) {
	q, qerr := tencentim.ParseQuery(cb.RawQuery)
	if cb.TooLarge {
		return q, nil, &tencentim.Rejection{Status: http.StatusRequestEntityTooLarge, Reason: ReasonTooLarge,
			Info: "body larger than server.max_body_bytes (" + strconv.FormatInt(live.MaxBodyBytes, 10) + " bytes)"}
	}
	if qerr != nil {
		return q, nil, &tencentim.Rejection{Status: http.StatusBadRequest, Reason: tencentim.ReasonBadQuery, Info: qerr.Error()}
	}
	if r := live.Verifier.Verify(q, cb.ClientIP); r != nil {
		return q, nil, r
	}
	fields, err := rules.ParseBody(cb.Body)
	if err != nil {
		return q, nil, &tencentim.Rejection{Status: http.StatusBadRequest, Reason: ReasonBadJSON, Info: err.Error()}
	}
	return q, rules.NewEvent(q.SdkAppID, q.CallbackCommand, q.Values(), fields), nil
}

// Rejection reasons of the intake's own checks (tencentim has those of the protocol).
const (
	ReasonTooLarge = "too_large" // the body is over server.max_body_bytes, or over what the queue stores
	ReasonBadJSON  = "bad_json"  // the body is not one JSON object
)

// reject answers a refused callback with Tencent's FAIL JSON, counted by reason, and logs
// it at warn: one line per reason and app every logEvery, saying how many it held back
// (a token changed in the console but not here refuses every callback). The others are
// logged at debug.
func (in *Intake) reject(ctx context.Context, c *call, r *tencentim.Rejection) httpapi.Answer {
	if n, ok := in.logLimit.allow("reject\x00" + r.Reason + "\x00" + c.app); ok {
		in.log.Warn("callback refused", "request_id", c.RequestID, "app", c.app, "command", c.command,
			"reason", r.Reason, "status", r.Status, "info", r.Info, "suppressed", n)
	} else if in.log.Enabled(ctx, slog.LevelDebug) {
		in.log.Debug("callback refused", "request_id", c.RequestID, "app", c.app, "command", c.command,
			"reason", r.Reason, "status", r.Status, "info", r.Info)
	}
	return in.fail(c, r)
}

// fail answers r with Tencent's FAIL JSON, counted by reason.
func (in *Intake) fail(c *call, r *tencentim.Rejection) httpapi.Answer {
	in.counted(c, r.Reason)
	return httpapi.Answer{Status: r.Status, Body: tencentim.Fail(r.Info)}
}

func (in *Intake) counted(c *call, outcome string) {
	in.metrics.Callbacks.WithLabelValues(c.app, c.command, outcome).Inc()
	in.metrics.CallbackDuration.Observe(time.Since(c.start).Seconds())
}

// enqueue stores one job per delivery and returns once all are stored, unless the same
// callback was stored within the dedup window (duplicate).
func (in *Intake) enqueue(ctx context.Context, c *call, ev *rules.Event, deliveries []rules.Delivery) (duplicate bool, err error) {
	if len(deliveries) == 0 {
		return false, nil
	}
	eventID := tencentim.EventID(c.query.SdkAppID, ev.Command, c.Body)
	c.eventID = eventID
	// The store goes on when the client goes away: once the writes are sent, waiting for
	// their acknowledgements is what tells whether the callback was stored, for the log
	// and for the dedup window that a retry of it will meet.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
	defer cancel()
	duplicate, done, err := in.dedup.claim(ctx, eventID)
	if err != nil {
		return false, fmt.Errorf("waiting for a copy of this callback being stored: %w", err)
	}
	if duplicate {
		return true, nil
	}
	jobs := make([]queue.Job, len(deliveries))
	now := time.Now()
	for i, d := range deliveries {
		jobs[i] = queue.Job{EventID: eventID, Destination: d.Destination, Routes: d.Routes,
			Query: c.RawQuery, Body: c.Body, ReceivedAt: now, RequestID: c.RequestID}
		if k := c.live.OrderBy[d.Destination]; k != nil {
			jobs[i].Ordered, jobs[i].Key = true, in.orderKey(c, d.Destination, k, ev)
		}
	}
	err = in.store.Enqueue(ctx, jobs)
	done(err == nil)
	return false, err
}

// respond asks the respond rule's destination for the answer to a "before" callback,
// counts the outcome and logs an answer that could not be used.
func (in *Intake) respond(ctx context.Context, c *call, rule Respond) []byte {
	job := queue.Job{EventID: tencentim.EventID(c.query.SdkAppID, c.query.CallbackCommand, c.Body), Destination: rule.From,
		Query: c.query.Raw, Body: c.Body, ReceivedAt: time.Now(), RequestID: c.RequestID}
	res := rule.Responder.Respond(ctx, job)
	in.metrics.Respond.WithLabelValues(rule.From, res.Outcome).Inc()
	if res.Outcome != delivery.RespondAnswered {
		in.log.Warn("respond: no usable answer, returning the on_failure decision", "request_id", c.RequestID,
			"destination", rule.From, "outcome", res.Outcome, "status", res.Status, "on_failure", rule.OnFailure, "err", res.Err)
	}
	return res.Answer
}

// labels bounds the metric labels: the app only when configured, the command only when
// Tencent documents it or extra_commands lists it; anything else is "other", so forged requests cannot grow the
// series without limit.
func labels(live *Config, q tencentim.Query) (app, command string) {
	app, command = "other", "other"
	if _, ok := live.Verifier.App(q.SdkAppID); ok {
		app = q.SdkAppID
	}
	if _, ok := tencentim.LookupCommand(q.CallbackCommand); ok || slices.Contains(live.ExtraCommands, q.CallbackCommand) {
		command = q.CallbackCommand
	}
	return app, command
}

// ruleFailed counts and logs (rate-limited) a rule that failed at run time.
func (in *Intake) ruleFailed(kind, name string, err error) {
	in.metrics.RuleErrors.WithLabelValues(name).Inc()
	if n, ok := in.logLimit.allow("rule\x00" + name); ok {
		in.log.Warn("rule failed at run time and counts as no match", "kind", kind, "route", name, "err", err, "suppressed", n)
	}
}

// logLimiter lets one log line per key through every logEvery, and counts those it holds
// back. Keys are few: a reason and a configured app (or "other"), a route name.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

const logEvery = 10 * time.Second

// allow reports whether a line for key may be logged now and, if so, how many were held
// back since the last one.
func (l *logLimiter) allow(key string) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	if now := time.Now(); now.Sub(l.last[key]) >= logEvery {
		l.last[key] = now
		suppressed = l.held[key]
		delete(l.held, key)
		return suppressed, true
	}
	l.held[key]++
	return 0, false
}
