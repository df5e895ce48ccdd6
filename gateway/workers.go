package gateway

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/queue"
)

// ReasonDestinationRemoved is the dead-letter reason of deliveries whose destination is no
// longer configured.
const ReasonDestinationRemoved = "destination removed"

// worker is the running consumer of one destination.
type worker struct {
	consumption queue.Consumption
	concurrency int
	// ctx is the destination's, kept when its consumer restarts; cancel ends its rounds in
	// flight when it is removed.
	ctx    context.Context
	cancel context.CancelFunc
}

// syncWorkers makes the running consumers match rt, which is live (see startWorkers and
// commitWorkers). Callers hold g.mu.
func (g *Gateway) syncWorkers(ctx context.Context, rt *runtime) error {
	started, err := g.startWorkers(ctx, g.queue.Load(), rt)
	if err != nil {
		return err
	}
	g.commitWorkers(rt, started)
	return nil
}

// startWorkers starts the consumers that rt needs and that do not run as rt wants them:
// destinations without a worker, and those whose concurrency changed (the new consumption
// starts before the old one stops, so delivery never pauses), and the lanes of ordered
// destinations. It leaves g.workers as it is, for commitWorkers; on an error it stops what
// it started, so that a reload that fails changes nothing. Callers hold g.mu.
func (g *Gateway) startWorkers(ctx context.Context, q *queue.Queue, rt *runtime) (map[string]*worker, error) {
	started := map[string]*worker{}
	var lanes []string // destinations whose lanes this call started
	undo := func() {
		for name, w := range started {
			w.consumption.Stop()
			if g.workers[name] == nil {
				w.cancel()
			}
		}
		for _, name := range lanes {
			g.stopLanes(name)
		}
	}
	for _, d := range rt.cfg.Destinations {
		old := g.workers[d.Name]
		w := old
		if old == nil || old.concurrency != d.Concurrency {
			w = &worker{concurrency: d.Concurrency}
			if old != nil {
				w.ctx, w.cancel = old.ctx, old.cancel
			} else {
				w.ctx, w.cancel = context.WithCancel(g.workCtx)
			}
			if old == nil {
				// A removal of this destination's backlog under way stops at its next job,
				// now that the staged config names it, or finishes deleting its consumers
				// before this one is made.
				g.removing.Lock()
				g.removing.Unlock()
			}
			h := g.handler(q, d.Name)
			c, err := q.Consume(w.ctx, d.Name, queue.ConsumeOptions{Window: window(d.Concurrency), AckWait: delivery.AckWait, Admit: h.Admit}, h.Handle)
			if err != nil {
				if old == nil {
					w.cancel()
				}
				undo()
				return nil, fmt.Errorf("destination %q: starting its worker: %w", d.Name, err)
			}
			w.consumption = c
			started[d.Name] = w
		}
		running := g.lanes.get(d.Name) != nil
		if err := g.syncLanes(ctx, q, w.ctx, d); err != nil {
			undo()
			return nil, fmt.Errorf("destination %q: starting its lanes: %w", d.Name, err)
		}
		if !running && g.lanes.get(d.Name) != nil {
			lanes = append(lanes, d.Name)
		}
	}
	return started, nil
}

// commitWorkers makes rt's workers the running ones, once rt is live: started replace
// their predecessors (whose consumption stops in the background), and the workers of
// destinations rt no longer has stop, with their lanes, their rounds in flight canceled
// rather than waited for (a round of quick retries to a receiver that is down can last
// minutes). Their backlog is not touched here: the sweep dead-letters it once no replica
// names them. Callers hold g.mu.
func (g *Gateway) commitWorkers(rt *runtime, started map[string]*worker) {
	limits := map[string]queue.BacklogLimit{}
	for _, d := range rt.cfg.Destinations {
		limits[d.Name] = queue.BacklogLimit{Jobs: d.MaxBacklog.Jobs, Bytes: d.MaxBacklog.Bytes}
		g.state(d.Name).slots.SetLimit(d.Concurrency)
	}
	if q := g.queue.Load(); q != nil {
		q.SetBacklogLimits(limits)
	}
	for name, w := range started {
		if old := g.workers[name]; old != nil {
			go old.consumption.Stop()
		}
		g.workers[name] = w
	}
	for name, w := range g.workers {
		if rt.dests[name] != nil {
			continue
		}
		w.cancel()
		w.consumption.Stop()
		g.stopLanes(name)
		delete(g.workers, name)
		g.dropState(name)
		g.log.Info("destination removed: its worker stopped; its queued deliveries go to the dead-letter queue once no replica's config names it",
			"destination", name)
	}
}

// window is how many jobs of a destination with concurrency c are handed out at once, across
// replicas: those being sent (at most c per replica) and those between two quick attempts,
// which hold no slot. It bounds the memory a destination's jobs in hand take.
func window(c int) int { return 4*c + 64 }

// handler is the queue handler of one destination: a delivery.Worker reading the live
// destination for every message (or the one of a reload whose workers are starting), with
// the destination's pause breaker.
func (g *Gateway) handler(q *queue.Queue, name string) *delivery.Worker {
	st := g.state(name)
	w := &delivery.Worker{
		Queue:  q,
		Sender: g.sender,
		Current: func() *delivery.Destination {
			if d := g.live.Load().dests[name]; d != nil {
				return d
			}
			if rt := g.staged.Load(); rt != nil {
				return rt.dests[name]
			}
			return nil
		},
		Breaker: st.breaker,
		Logger:  g.log,
		Done:    func(end delivery.End) { g.finished(name, st, end) },
	}
	return w
}

// replica is this process's entry in the replicas registry, for rt.
func (g *Gateway) replica(rt *runtime) queue.Replica {
	return queue.Replica{ID: g.replicaID, ConfigHash: rt.cfg.Hash, Destinations: slices.Sorted(maps.Keys(rt.dests))}
}

// sweepSoon asks keepRegistry to announce the live config and sweep now (a reload).
func (g *Gateway) sweepSoon() {
	select {
	case g.sweepNow <- struct{}{}:
	default:
	}
}

// keepRegistry renews this replica's entry in the registry every sweepEvery, and at once
// after a reload, and then sweeps (in the background: moving a large backlog takes a
// while, and the entry must be renewed meanwhile). It returns when ctx ends.
func (g *Gateway) keepRegistry(ctx context.Context, q *queue.Queue) {
	t := time.NewTicker(g.sweepEvery)
	defer t.Stop()
	sweeping := make(chan struct{}, 1) // holds a token while a sweep runs
	for {
		if err := q.Announce(ctx, g.replica(g.live.Load())); err != nil && ctx.Err() == nil {
			g.log.Warn("cannot renew this replica's entry in the replicas registry", "err", err)
		}
		select {
		case sweeping <- struct{}{}:
			go func() {
				defer func() { <-sweeping }()
				g.sweep(ctx, q)
			}()
		default: // the last sweep is still moving a backlog
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-g.sweepNow:
		}
	}
}

// sweep dead-letters the backlog of every destination that has deliveries or a consumer in
// the queue and that no replica's config names: neither the live config of this one, nor
// an entry of the registry. A destination a replica still serves keeps its backlog, for
// that replica to deliver; when the registry cannot be read, nothing is removed.
//
// A callback matched on a config that a reload has just replaced may store a delivery for
// a destination the reload removed, after its backlog was moved: the next sweep finds it.
func (g *Gateway) sweep(ctx context.Context, q *queue.Queue) {
	names, err := q.QueuedDestinations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("cannot list the destinations in the queue; removed destinations are looked for again later", "err", err)
		}
		return
	}
	replicas, err := q.Replicas(ctx)
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("cannot read the replicas registry; removed destinations are looked for again later", "err", err)
		}
		return
	}
	named := map[string]bool{}
	for _, r := range replicas {
		for _, d := range r.Destinations {
			named[d] = true
		}
	}
	for _, name := range names {
		if named[name] || g.configured(name) {
			continue
		}
		g.removeBacklog(ctx, q, name)
	}
}

// configured reports whether the live config names destination, or the config a reload is
// starting the workers of.
func (g *Gateway) configured(destination string) bool {
	if g.live.Load().dests[destination] != nil {
		return true
	}
	rt := g.staged.Load()
	return rt != nil && rt.dests[destination] != nil
}

// removeBacklog moves the deliveries queued for name to the dead-letter queue, counting
// them in fanout_removed_deliveries_total. It stops when name is configured again.
//
// It holds g.removing throughout: a reload that configures name again waits for it before
// creating name's consumer. It waits little: the moving stops at the next job once the
// reload's staged config names it, and the consumers are deleted only by a removal that
// moved everything while no config named it.
func (g *Gateway) removeBacklog(ctx context.Context, q *queue.Queue, name string) {
	if g.removeHook != nil {
		g.removeHook(name)
	}
	g.removing.Lock()
	defer g.removing.Unlock()
	if g.configured(name) {
		return
	}
	n, _, err := q.Pending(ctx, name)
	if err != nil {
		n = -1
	}
	g.log.Warn("destination no longer named by any replica's config: moving its queued deliveries to the dead-letter queue",
		"destination", name, "pending", n)
	counter := g.metrics.removed.WithLabelValues(name)
	moved, err := q.RemoveDestination(ctx, name, ReasonDestinationRemoved, func(moved int) bool {
		counter.Inc()
		if moved%10000 == 0 {
			g.log.Info("moving a removed destination's deliveries to the dead-letter queue", "destination", name, "moved", moved)
		}
		return !g.configured(name)
	})
	switch {
	case err != nil && ctx.Err() == nil:
		g.log.Error("removed destination: cannot move its deliveries to the dead-letter queue; trying again later", "destination", name, "moved", moved, "err", err)
	case err != nil:
		g.log.Info("removed destination: moving its deliveries stopped (Fanout stopping); going on later", "destination", name, "moved", moved)
	case g.configured(name):
		g.log.Warn("destination configured again: its remaining deliveries stay queued", "destination", name, "moved", moved)
	default:
		g.log.Warn("removed destination: its queued deliveries are in the dead-letter queue", "destination", name, "moved", moved)
	}
}
