package gateway

import (
	"sync"
	"time"

	"github.com/fanout-gw/fanout/gateway/delivery"
)

// DestinationHealth is what the admin API shows of a destination's recent deliveries.
type DestinationHealth struct {
	Paused      bool      `json:"paused"`
	Held        bool      `json:"held,omitempty"` // paused by an operator, until resumed
	PausedUntil time.Time `json:"paused_until,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// destState is the state of a destination that outlives reloads: its pause breaker and
// its last error. It goes away when the destination is removed.
type destState struct {
	breaker *delivery.Breaker
	slots   *delivery.Slots // concurrency: the requests in flight

	mu          sync.Mutex
	lastError   string
	lastErrorAt time.Time
}

// state returns the state of destination name, creating it on first use.
func (g *Gateway) state(name string) *destState {
	g.statesMu.Lock()
	defer g.statesMu.Unlock()
	if s := g.states[name]; s != nil {
		return s
	}
	s := &destState{slots: delivery.NewSlots(1)}
	s.breaker = delivery.NewBreaker(func(paused bool, until time.Time) {
		if paused {
			g.metrics.destinationPause.WithLabelValues(name).Set(1)
			g.log.Warn("destination keeps failing: paused, one probe after the cool-down", "destination", name,
				"until", until.Format(time.RFC3339))
			return
		}
		g.metrics.destinationPause.WithLabelValues(name).Set(0)
		g.log.Info("destination answered again: resumed", "destination", name)
	})
	g.metrics.destinationPause.WithLabelValues(name).Set(0)
	g.states[name] = s
	return s
}

func (g *Gateway) dropState(name string) {
	g.statesMu.Lock()
	delete(g.states, name)
	g.statesMu.Unlock()
	g.metrics.destinationPause.DeleteLabelValues(name)
}

// finished records a round's end: metrics and the last error.
func (g *Gateway) finished(name string, s *destState, res delivery.Result) {
	switch res.Outcome {
	case delivery.Delivered:
		g.metrics.deliveries.WithLabelValues(name, "delivered").Inc()
	case delivery.Dead:
		outcome := "dead"
		if res.Blocked {
			outcome = "blocked" // kept at the head of its lane, not finished
		}
		g.metrics.deliveries.WithLabelValues(name, outcome).Inc()
	}
	if res.Err != nil && res.Reason != delivery.ReasonCanceled {
		s.mu.Lock()
		s.lastError, s.lastErrorAt = res.Err.Error(), time.Now()
		s.mu.Unlock()
	}
}

// destinationHealth returns the health of a destination (zero when it has none yet).
func (g *Gateway) destinationHealth(name string) DestinationHealth {
	g.statesMu.Lock()
	s := g.states[name]
	g.statesMu.Unlock()
	if s == nil {
		return DestinationHealth{}
	}
	var h DestinationHealth
	h.Paused, h.PausedUntil = s.breaker.Paused()
	h.Held = s.breaker.Held()
	s.mu.Lock()
	h.LastError, h.LastErrorAt = s.lastError, s.lastErrorAt
	s.mu.Unlock()
	return h
}
