package delivery

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// QuickRetryMax is the longest wait that is slept in-process between two attempts. A
// longer wait ends the round and hands the job back to the queue with that delay: holding
// a worker and an unacknowledged message for minutes would hide the retry from other
// replicas and lose it on a crash.
const QuickRetryMax = 5 * time.Second

// Policy is the retry policy of one destination.
type Policy struct {
	MaxAttempts int           // attempts in all, the first included; then dead ("max attempts")
	Initial     time.Duration // wait after the first failed attempt
	Max         time.Duration // longest wait, also the cap of a Retry-After
	Multiplier  float64       // growth of the wait per failed attempt (>= 1)
	Jitter      float64       // +/- this fraction of the wait, at random (0 <= Jitter < 1)
	MaxAge      time.Duration // give up when the next attempt would be later than ReceivedAt+MaxAge; 0 = no limit
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
// not on the jittered wait, so that the number of attempts of a round depends only on the
// policy: the Worker relies on that to number attempts across redeliveries.
func (p Policy) backoff(attempt int) time.Duration {
	attempt = max(attempt, 1)
	w := float64(p.Initial) * math.Pow(p.Multiplier, float64(attempt-1))
	if w >= float64(p.Max) || math.IsInf(w, 0) || math.IsNaN(w) {
		return p.Max
	}
	return time.Duration(w)
}

// quickRound is the most attempts one round starting at attempt first can make: the first,
// then one more after every quick wait, never past MaxAttempts. A Retry-After can end a round
// earlier; it never makes it longer.
func (p Policy) quickRound(first int) int {
	n := 1
	for a := max(first, 1); a < p.MaxAttempts && p.backoff(a) <= QuickRetryMax; a++ {
		n++
	}
	return n
}

// firstAttempt maps a JetStream delivery count (1-based) to the number of the first HTTP
// attempt of that delivery's round. The first delivery makes the quick attempts
// 1..quickRound(1); every later delivery was scheduled by a wait longer than QuickRetryMax
// and so makes the attempt after the previous one. The count only grows, so the mapping
// is deterministic without storing anything, but it can skip numbers: a delivery redelivered
// after a crash or an expired ack wait, or a round that a long Retry-After ended before its
// quick attempts were done, consumes a delivery count without making those attempts. The
// number never goes past MaxAttempts, so a job always gets its last attempt.
func (p Policy) firstAttempt(delivery int) int {
	if delivery <= 1 {
		return 1
	}
	return min(p.quickRound(1)+delivery-1, max(p.MaxAttempts, 1))
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
