package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/webhook"
	"github.com/fanout-gw/fanout/rules"
)

// laneSets are the running lane consumptions (queue.ConsumeLanes), by destination. A
// destination's lanes run beside its plain consumer, which still delivers the jobs stored
// without a key (before order_by was set); they keep running across reloads, and after a
// reload removes order_by until the process stops, so that the jobs left in the lanes are
// delivered, in order.
type laneSets struct {
	mu      sync.Mutex
	running map[string]queue.Lanes
}

func (l *laneSets) get(name string) queue.Lanes {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running[name]
}

// syncLanes starts consuming the lanes of d when it has order_by, or when its lanes still
// hold jobs (order_by was removed while Fanout was down), unless they run already. ctx is
// the destination worker's. Callers hold g.mu.
func (g *Gateway) syncLanes(ctx context.Context, q *queue.Queue, wctx context.Context, d *config.Destination) error {
	if g.lanes.get(d.Name) != nil {
		return nil
	}
	if d.Order == nil {
		n, err := q.LaneBacklog(ctx, d.Name)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		g.log.Info("destination without order_by still has deliveries in its lanes: delivering them in order", "destination", d.Name, "deliveries", n)
	}
	h := g.handler(q, d.Name)
	ls, err := q.ConsumeLanes(wctx, d.Name, queue.LaneOptions{Admit: h.Admit}, h.Handle)
	if err != nil {
		return err
	}
	g.lanes.mu.Lock()
	if g.lanes.running == nil {
		g.lanes.running = map[string]queue.Lanes{}
	}
	g.lanes.running[d.Name] = ls
	g.lanes.mu.Unlock()
	return nil
}

// stopLanes stops consuming the lanes of name, if they run.
func (g *Gateway) stopLanes(name string) {
	g.lanes.mu.Lock()
	ls := g.lanes.running[name]
	delete(g.lanes.running, name)
	g.lanes.mu.Unlock()
	if ls != nil {
		ls.Stop()
	}
}

// stopAllLanes stops consuming every destination's lanes, for Stop.
func (g *Gateway) stopAllLanes() {
	g.lanes.mu.Lock()
	running := g.lanes.running
	g.lanes.running = nil
	g.lanes.mu.Unlock()
	var wg sync.WaitGroup
	for _, ls := range running {
		wg.Go(ls.Stop)
	}
	wg.Wait()
}

var (
	lanesBlockedDesc = prometheus.NewDesc("fanout_lanes_blocked",
		"Lanes of an ordered destination waiting for an operator (on_exhausted: block), among those this process consumes.",
		[]string{"destination"}, nil)
	laneOldestDesc = prometheus.NewDesc("fanout_lane_oldest_age_seconds",
		"Age of the oldest delivery at the head of a lane this process consumes: how long the slowest lane is held up.",
		[]string{"destination"}, nil)
)

// laneCollector reads the lanes' state at scrape time, for the ordered destinations.
type laneCollector struct{ g *Gateway }

func (c *laneCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lanesBlockedDesc
	ch <- laneOldestDesc
}

func (c *laneCollector) Collect(ch chan<- prometheus.Metric) {
	c.g.lanes.mu.Lock()
	states := make(map[string]queue.LaneState, len(c.g.lanes.running))
	for name, ls := range c.g.lanes.running {
		states[name] = ls.State()
	}
	c.g.lanes.mu.Unlock()
	for name, st := range states {
		age := 0.0
		if !st.Oldest.IsZero() {
			age = max(time.Since(st.Oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(lanesBlockedDesc, prometheus.GaugeValue, float64(st.Blocked), name)
		ch <- prometheus.MustNewConstMetric(laneOldestDesc, prometheus.GaugeValue, age, name)
	}
}

// Lanes lists the blocked lanes (of every replica: they are read from the queue), and the
// lane partitions this replica consumes.
func (a adminAPI) Lanes(ctx context.Context, destination string) (httpapi.Lanes, error) {
	out := httpapi.Lanes{Blocked: []httpapi.BlockedLane{}, Consuming: []httpapi.LanePartitions{}}
	if destination != "" {
		if err := webhook.CheckDestinationName(destination); err != nil {
			return out, &httpapi.ParamError{Param: "destination", Message: fmt.Sprintf("%q: %v", destination, err)}
		}
	}
	q, err := a.openQueue()
	if err != nil {
		return out, err
	}
	blocked, err := q.BlockedLanes(ctx, destination)
	if err != nil {
		return out, err
	}
	for _, l := range blocked {
		out.Blocked = append(out.Blocked, blockedLane(l))
	}
	for _, d := range a.g.live.Load().cfg.Destinations {
		if destination != "" && d.Name != destination {
			continue
		}
		if ls := a.g.lanes.get(d.Name); ls != nil {
			st := ls.State()
			parts := st.Partitions
			if parts == nil {
				parts = []int{}
			}
			out.Consuming = append(out.Consuming, httpapi.LanePartitions{Destination: d.Name, OrderBy: d.OrderBy,
				OnExhausted: d.OnExhausted, Partitions: parts, Of: queue.LanePartitions, Blocked: st.Blocked})
		}
	}
	return out, nil
}

// ReleaseLane asks for a retry or a skip of a blocked lane; the replica that consumes the
// lane applies it.
func (a adminAPI) ReleaseLane(ctx context.Context, destination, key, action string) (httpapi.LaneRelease, error) {
	if err := webhook.CheckDestinationName(destination); err != nil {
		return httpapi.LaneRelease{}, &httpapi.ParamError{Param: "destination", Message: fmt.Sprintf("%q: %v", destination, err)}
	}
	q, err := a.openQueue()
	if err != nil {
		return httpapi.LaneRelease{}, err
	}
	asked := time.Now()
	l, applied, err := q.ReleaseLane(ctx, destination, key, action)
	if errors.Is(err, queue.ErrNotFound) {
		return httpapi.LaneRelease{}, fmt.Errorf("no blocked lane %q of destination %q: %w", key, destination, httpapi.ErrNotFound)
	}
	if err != nil {
		return httpapi.LaneRelease{}, err
	}
	a.g.log.Info("blocked lane released by an operator", "destination", destination, "key", key, "action", action,
		"event_id", l.EventID, "applied", applied)
	switch action {
	case queue.LaneSkip:
		// The skipped delivery becomes a dead letter (the consuming replica stores it).
		a.g.events.Load().Ended(eventlog.End{EventID: l.EventID, Destination: destination, Dead: true, Attempt: l.Attempts,
			Reason: l.Reason + "; lane skipped by an operator"})
	case queue.LaneRetry:
		// The retried delivery's next attempt is due now, on the replica consuming the lane.
		a.g.events.Load().Ended(eventlog.End{EventID: l.EventID, Destination: destination, Attempt: l.Attempts, Due: asked, At: asked})
	}
	return httpapi.LaneRelease{Destination: destination, Key: key, Action: action, Lane: blockedLane(l), Applied: applied}, nil
}

func blockedLane(l queue.BlockedLane) httpapi.BlockedLane {
	return httpapi.BlockedLane{
		Destination: l.Destination, Key: l.Key, Partition: l.Partition, EventID: l.EventID, RequestID: l.RequestID,
		ReceivedAt: l.ReceivedAt, Reason: l.Reason, LastStatus: l.LastStatus, BodyExcerpt: l.BodyExcerpt, LastError: l.LastError,
		Attempts: l.Attempts, FirstAttempt: l.FirstAttempt, LastAttempt: l.LastAttempt, BlockedAt: l.BlockedAt,
		Action: l.Action,
	}
}

// orderBy maps the ordered destinations of cfg to their compiled order_by, for the intake.
func orderBy(cfg *config.Config) map[string]*rules.Key {
	m := map[string]*rules.Key{}
	for _, d := range cfg.Destinations {
		if d.Order != nil {
			m[d.Name] = d.Order
		}
	}
	return m
}
