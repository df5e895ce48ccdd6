package delivery

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// QuickRetryMax is the longest wait that is slept in-process between two attempts (without
// a slot: see Slots). A longer wait ends the round and stores the job in the queue until
// it is due: a job waiting in the process still takes a place in its destination's window
// of jobs in hand, is invisible to other replicas, and is retried only after the ack wait
// if the process dies.
const QuickRetryMax = 2 * time.Second

// Policy is the retry policy of one destination.
type Policy struct {
	MaxAttempts int           // attempts in all, the first included; then dead ("max attempts")
	Initial     time.Duration // wait after the first failed attempt
	Max         time.Duration // longest wait, also the cap of a Retry-After
	Multiplier  float64       // growth of the wait per failed attempt (>= 1)
	Jitter      float64       // +/- this fraction of the wait, at random (0 <= Jitter < 1)
	MaxAge      time.Duration // give up when the next attempt would be later than the job's AttemptsSince+MaxAge; 0 = no limit
}

// Wait is the time to wait after the attempt-th failed attempt (1-based):
// min(Initial*Multiplier^(attempt-1), Max), then moved by up to +/- Jitter of itself at
// random so that the retries of many jobs failing together spread out.
func (p Policy) Wait(attempt int) time.Duration {
	w := float64(p.backoff(attempt))
	if p.Jitter > 0 {
		w += w * p.Jitter * (2*rand.Float64() - 1)
	}
	return time.Duration(max(w, 0))
}

// backoff is Wait without jitter. Whether a wait is quick (in-process) is decided on it,
// not on the jittered wait, so that it depends only on the policy.
func (p Policy) backoff(attempt int) time.Duration {
	attempt = max(attempt, 1)
	w := float64(p.Initial) * math.Pow(p.Multiplier, float64(attempt-1))
	if w >= float64(p.Max) || math.IsInf(w, 0) || math.IsNaN(w) {
		return p.Max
	}
	return time.Duration(w)
}

// validate checks the policy's own invariants.
func (p Policy) validate() error {
	var errs []error
	if p.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max_attempts %d: must be at least 1", p.MaxAttempts))
	}
	if p.Initial <= 0 {
		errs = append(errs, fmt.Errorf("backoff initial %s: must be positive", p.Initial))
	}
	if p.Max < p.Initial {
		errs = append(errs, fmt.Errorf("backoff max %s: must be at least initial %s", p.Max, p.Initial))
	}
	if p.Multiplier < 1 || math.IsInf(p.Multiplier, 0) || math.IsNaN(p.Multiplier) {
		errs = append(errs, fmt.Errorf("backoff multiplier %g: must be a number >= 1", p.Multiplier))
	}
	if p.Jitter < 0 || p.Jitter >= 1 || math.IsNaN(p.Jitter) {
		errs = append(errs, fmt.Errorf("backoff jitter %g: must be in [0, 1)", p.Jitter))
	}
	if p.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max_age %s: must not be negative", p.MaxAge))
	}
	return errors.Join(errs...)
}
