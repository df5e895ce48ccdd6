package gateway

import (
	"context"
	"fmt"

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

// syncWorkers makes the running consumers match rt: new destinations start at once,
// changed concurrency restarts the consumer with its new window (the new one starts before the old
// one stops, so delivery never pauses), removed destinations stop and their queued
// deliveries move to the dead-letter queue. URL, headers, secrets and retry policy need no
// restart: workers read the live destination for every message. A removed destination's
// rounds in flight are canceled rather than waited for: a round of quick retries to a
// downstream that is down can last minutes, and its deliveries are dead-lettered anyway.
// Callers hold g.mu.
func (g *Gateway) syncWorkers(ctx context.Context, rt *runtime) error {
	limits := map[string]queue.BacklogLimit{}
	for _, d := range rt.cfg.Destinations {
		limits[d.Name] = queue.BacklogLimit{Jobs: d.MaxBacklog.Jobs, Bytes: d.MaxBacklog.Bytes}
	}
	g.queue.SetBacklogLimits(limits)
	for _, d := range rt.cfg.Destinations {
		g.state(d.Name).slots.SetLimit(d.Concurrency)
		old := g.workers[d.Name]
		if old != nil && old.concurrency == d.Concurrency {
			if err := g.syncLanes(ctx, old.ctx, d); err != nil {
				return fmt.Errorf("destination %q: starting its lanes: %w", d.Name, err)
			}
			continue
		}
		w := &worker{concurrency: d.Concurrency}
		if old != nil {
			w.ctx, w.cancel = old.ctx, old.cancel
		} else {
			w.ctx, w.cancel = context.WithCancel(g.workCtx)
		}
		h := g.handler(d.Name)
		c, err := g.queue.Consume(w.ctx, d.Name, queue.ConsumeOptions{Window: window(d.Concurrency), AckWait: delivery.AckWait, Admit: h.Admit}, h.Handle)
		if err != nil {
			if old == nil {
				w.cancel()
			}
			return fmt.Errorf("destination %q: starting its worker: %w", d.Name, err)
		}
		w.consumption = c
		g.workers[d.Name] = w
		if old != nil {
			go old.consumption.Stop()
		}
		if err := g.syncLanes(ctx, w.ctx, d); err != nil {
			return fmt.Errorf("destination %q: starting its lanes: %w", d.Name, err)
		}
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
		n, err := g.queue.RemoveDestination(ctx, name, ReasonDestinationRemoved)
		if err != nil {
			g.log.Error("removed destination: cannot move its deliveries to the dead-letter queue; they stay queued", "destination", name, "err", err)
			continue
		}
		g.log.Warn("destination removed: its queued deliveries are in the dead-letter queue", "destination", name, "moved", n)
	}
	return nil
}

// dropUnknownDestinations dead-letters deliveries queued for destinations that the config
// no longer has (removed while Fanout was down).
func (g *Gateway) dropUnknownDestinations(ctx context.Context) error {
	names, err := g.queue.QueuedDestinations(ctx)
	if err != nil {
		return err
	}
	rt := g.live.Load()
	for _, name := range names {
		if rt.dests[name] != nil {
			continue
		}
		n, err := g.queue.RemoveDestination(ctx, name, ReasonDestinationRemoved)
		if err != nil {
			return fmt.Errorf("destination %q: %w", name, err)
		}
		if n > 0 {
			g.log.Warn("destination no longer configured: its queued deliveries are in the dead-letter queue", "destination", name, "moved", n)
		}
	}
	return nil
}

// window is how many jobs of a destination with concurrency c are handed out at once, across
// replicas: those being sent (at most c per replica) and those between two quick attempts,
// which hold no slot. It bounds the memory a destination's jobs in hand take.
func window(c int) int { return 4*c + 64 }

// handler is the queue handler of one destination: a delivery.Worker reading the live
// destination for every message, with the destination's pause breaker.
func (g *Gateway) handler(name string) *delivery.Worker {
	st := g.state(name)
	w := &delivery.Worker{
		Queue:  g.queue,
		Sender: g.sender,
		Current: func() *delivery.Destination {
			return g.live.Load().dests[name]
		},
		Breaker: st.breaker,
		Logger:  g.log,
		Done:    func(end delivery.End) { g.finished(name, st, end) },
	}
	return w
}
