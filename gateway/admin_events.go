package gateway

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/gateway/webhook"
	"github.com/fanout-gw/fanout/rules"
)

// The event log side of adminAPI: search, trace, follow, and replay into the queue.

var _ httpapi.Events = adminAPI{}

// replayBatch is the deliveries a replay stores at once.
const replayBatch = 256

func (a adminAPI) SearchEvents(ctx context.Context, f eventlog.Filter, before uint64, limit int) ([]eventlog.Summary, uint64, error) {
	if err := checkDestinationParam("destination", f.Destination); err != nil {
		return nil, 0, err
	}
	return a.g.events.Load().Search(ctx, f, before, limit)
}

func (a adminAPI) Event(ctx context.Context, id string) (eventlog.Detail, error) {
	return a.g.events.Load().Trace(ctx, id)
}

func (a adminAPI) CheckEventFilter(f eventlog.Filter) error {
	if err := checkDestinationParam("destination", f.Destination); err != nil {
		return err
	}
	events := a.g.events.Load()
	if events == nil {
		return eventlog.ErrOff
	}
	return events.Check(f)
}

func (a adminAPI) FollowEvents(ctx context.Context, f eventlog.Filter, fn func(eventlog.Entry) error) error {
	return a.g.events.Load().Follow(ctx, f, fn)
}

// ReplayEvents queues one batch of the callbacks r selects again: each to r.To, or to the
// destinations the live routes send it to now (r.Reroute). A copy keeps its callback's
// event id, hence its webhook-id, and starts a new series of attempts; it goes through the
// queue like any delivery, so its destination's rate limit, concurrency and backlog bound
// apply. A callback that cannot be queued (no route matches it now, a body the rules cannot
// read) is skipped, with the reason.
func (a adminAPI) ReplayEvents(ctx context.Context, r httpapi.EventReplay) (httpapi.EventReplayResult, error) {
	out := httpapi.EventReplayResult{DryRun: r.DryRun, Destinations: map[string]int{}, Events: []string{}, Skipped: []httpapi.SkippedEvent{}}
	if err := checkDestinationParam("destination", r.Filter.Destination); err != nil {
		return out, err
	}
	rt := a.g.live.Load()
	if r.To != "" && rt.dests[r.To] == nil {
		return out, &httpapi.ParamError{Param: "to", Message: fmt.Sprintf("%q is not a configured destination (configured: %v)", r.To, slices.Sorted(maps.Keys(rt.dests)))}
	}
	q, err := a.openQueue()
	if err != nil {
		return out, err
	}
	events := a.g.events.Load()
	items, next, err := events.Select(ctx, r.Filter, r.After, r.Limit)
	if err != nil {
		return out, err
	}
	out.Matched, out.Next = len(items), next

	now := time.Now()
	var jobs []queue.Job
	flush := func() error {
		if r.DryRun || len(jobs) == 0 {
			jobs = jobs[:0]
			return nil
		}
		if err := q.Enqueue(ctx, jobs); err != nil {
			return fmt.Errorf("replay: storing %d deliveries: %w", len(jobs), err)
		}
		for _, j := range jobs {
			events.Replayed(j.EventID, j.Destination, r.Reroute, j.Since)
		}
		jobs = jobs[:0]
		return nil
	}
	for _, it := range items {
		routed, reason := replayRoutes(rt, it, r.To)
		if reason != "" {
			out.Skipped = append(out.Skipped, httpapi.SkippedEvent{EventID: it.ID, Reason: reason})
			continue
		}
		out.Events = append(out.Events, it.ID)
		for _, d := range routed {
			jobs = append(jobs, queue.Job{EventID: it.ID, Destination: d.Destination, Routes: d.Routes, Query: it.Query,
				Body: it.Body, ReceivedAt: it.ReceivedAt, RequestID: it.RequestID, Attempt: 1, Since: now})
			out.Destinations[d.Destination]++
			out.Deliveries++
		}
		if len(jobs) >= replayBatch {
			if err := flush(); err != nil {
				return out, err
			}
		}
	}
	if err := flush(); err != nil {
		return out, err
	}
	if !r.DryRun && out.Deliveries > 0 {
		a.g.log.Info("callbacks replayed from the event log", "callbacks", len(out.Events), "deliveries", out.Deliveries,
			"to", r.To, "reroute", r.Reroute, "skipped", len(out.Skipped))
	}
	return out, nil
}

// replayRoutes is where a replay sends callback it: to, with the routes that matched it
// then, or wherever the live routes send it now. reason says why it goes nowhere.
func replayRoutes(rt *runtime, it eventlog.Selected, to string) ([]rules.Delivery, string) {
	if to != "" {
		return []rules.Delivery{{Destination: to, Routes: it.Routes}}, ""
	}
	q, err := tencentim.ParseQuery(it.Query)
	if err != nil {
		return nil, "the query cannot be read: " + err.Error()
	}
	fields, err := rules.ParseBody(it.Body)
	if err != nil {
		return nil, "the body cannot be read: " + err.Error()
	}
	m := rt.cfg.Rules.Match(rules.NewEvent(q.SdkAppID, it.Command, q.Values(), fields), func(string, string, error) {})
	if len(m.Deliveries) == 0 {
		return nil, "no route sends it anywhere now"
	}
	return m.Deliveries, ""
}

// checkDestinationParam refuses a name that cannot be a destination.
func checkDestinationParam(param, name string) error {
	if name == "" {
		return nil
	}
	if err := webhook.CheckDestinationName(name); err != nil {
		return &httpapi.ParamError{Param: param, Message: fmt.Sprintf("%q: %v", name, err)}
	}
	return nil
}
