package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/rules"
)

// enqueueTimeout bounds the wait for the queue's acknowledgements, leaving room in
// Tencent's 2 s for the answer: past it the callback is answered 503, never OK.
const enqueueTimeout = 1500 * time.Millisecond

// Limits implements httpapi.Receiver with the live config's path, body limit and proxies.
func (g *Gateway) Limits() httpapi.Limits {
	s := g.live.Load().cfg.Server
	return httpapi.Limits{Path: s.Path, MaxBodyBytes: s.MaxBodyBytes, TrustedProxies: s.TrustedProxies}
}

// Receive is the callback path, in SPEC section 4 order: size, SdkAppid, source IP, Sign,
// JSON; then match, store every delivery durably, and only then answer OK.
func (g *Gateway) Receive(ctx context.Context, cb *httpapi.Callback) httpapi.Answer {
	start := time.Now()
	rt := g.live.Load()
	id := cb.RequestID
	q, qerr := tencentim.ParseQuery(cb.RawQuery)
	app, command := g.labels(rt, q)
	reject := func(status int, reason, info string) httpapi.Answer {
		g.metrics.callbacks.WithLabelValues(app, command, reason).Inc()
		g.metrics.callbackDuration.Observe(time.Since(start).Seconds())
		if g.log.Enabled(ctx, slog.LevelDebug) {
			g.log.Debug("callback rejected", "request_id", id, "app", app, "command", command, "reason", reason, "status", status, "info", info)
		}
		return httpapi.Answer{Status: status, Body: tencentim.Fail(info)}
	}
	if cb.TooLarge {
		return reject(http.StatusRequestEntityTooLarge, "too_large",
			"body larger than server.max_body_bytes ("+strconv.FormatInt(rt.cfg.Server.MaxBodyBytes, 10)+" bytes)")
	}
	if qerr != nil {
		return reject(http.StatusBadRequest, tencentim.ReasonBadQuery, qerr.Error())
	}
	if r := rt.verifier.Verify(q, cb.ClientIP); r != nil {
		return reject(r.Status, r.Reason, r.Info)
	}
	fields, err := rules.ParseBody(cb.Body)
	if err != nil {
		return reject(http.StatusBadRequest, "bad_json", err.Error())
	}
	ev := rules.NewEvent(q.SdkAppID, q.CallbackCommand, queryMap(q), fields)
	m := rt.cfg.Rules.Match(ev, g.ruleErrorHook)
	for _, r := range m.Routes {
		g.metrics.routeMatches.WithLabelValues(r).Inc()
	}
	if ev.Command != q.CallbackCommand && command == "other" {
		app, command = g.labels(rt, tencentim.Query{SdkAppID: q.SdkAppID, CallbackCommand: ev.Command})
	}

	var answer []byte
	var wg sync.WaitGroup
	if m.Respond != nil {
		wg.Go(func() { answer = g.respond(ctx, rt, m.RespondIndex, q, cb.Body, id) })
	}
	eventID := tencentim.EventID(q.SdkAppID, ev.Command, cb.Body)
	duplicate := len(m.Deliveries) > 0 && g.dedup.seen(eventID)
	if len(m.Deliveries) > 0 && !duplicate {
		jobs := make([]queue.Job, len(m.Deliveries))
		now := time.Now()
		for i, d := range m.Deliveries {
			jobs[i] = queue.Job{EventID: eventID, Destination: d.Destination, Routes: d.Routes,
				Query: cb.RawQuery, Body: cb.Body, ReceivedAt: now, RequestID: id}
		}
		ectx, cancel := context.WithTimeout(ctx, enqueueTimeout)
		err := g.queue.Enqueue(ectx, jobs)
		cancel()
		if err != nil {
			wg.Wait()
			g.log.Error("callback not stored, answered 503", "request_id", id, "app", app, "command", command, "err", err)
			return reject(http.StatusServiceUnavailable, "queue_unavailable", "cannot store the callback now: "+err.Error())
		}
		g.dedup.add(eventID)
	}
	wg.Wait()
	if answer == nil {
		answer = tencentim.OK
	}
	outcome := "ok"
	if duplicate {
		outcome = "duplicate"
	}
	g.metrics.callbacks.WithLabelValues(app, command, outcome).Inc()
	g.metrics.callbackDuration.Observe(time.Since(start).Seconds())
	if g.log.Enabled(ctx, slog.LevelDebug) { // the arguments alone cost allocations
		g.log.Debug("callback accepted", "request_id", id, "app", app, "command", command,
			"routes", m.Routes, "deliveries", len(m.Deliveries), "respond", m.Respond != nil, "duplicate", duplicate)
	}
	return httpapi.Answer{Status: http.StatusOK, Body: answer}
}

// labels bounds the metric labels: the app only when configured, the command only when
// Tencent documents it or a route names it; anything else is "other", so forged requests
// cannot grow the series without limit.
func (g *Gateway) labels(rt *runtime, q tencentim.Query) (app, command string) {
	app, command = "other", "other"
	if _, ok := rt.verifier.App(q.SdkAppID); ok {
		app = q.SdkAppID
	}
	if _, ok := tencentim.LookupCommand(q.CallbackCommand); ok {
		command = q.CallbackCommand
	}
	return app, command
}

// ruleLimiter lets one log line per route through every ruleLogEvery.
type ruleLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const ruleLogEvery = 10 * time.Second

func (l *ruleLimiter) Allow(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if now := time.Now(); now.Sub(l.last[name]) >= ruleLogEvery {
		l.last[name] = now
		return true
	}
	return false
}
