package delivery

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit paces the attempts of one destination: at most n per period, evenly, with no
// burst above one: attempts start 1/rate apart, so a receiver limited to 10/s sees at
// most 11 within any one second (the first and the last at its edges). It is a
// Limiter; a reload keeps it while the rate is unchanged.
type RateLimit struct {
	n      int
	period time.Duration
	lim    *rate.Limiter
}

// NewRateLimit returns a limiter of n attempts per period.
func NewRateLimit(n int, period time.Duration) *RateLimit {
	return &RateLimit{n: n, period: period, lim: rate.NewLimiter(rate.Limit(float64(n)/period.Seconds()), 1)}
}

// Same reports whether r limits to n per period.
func (r *RateLimit) Same(n int, period time.Duration) bool {
	return r != nil && r.n == n && r.period == period
}

// Wait blocks until an attempt may start, or ctx ends.
func (r *RateLimit) Wait(ctx context.Context) error { return r.lim.Wait(ctx) }
