package delivery

import (
	"context"
	"sync"
	"time"
)

// Pause policy: a destination whose rounds keep failing (connection errors, timeouts,
// 408, 429, 5xx) is paused, so that a dead endpoint does not burn the attempts of every
// queued delivery. While paused, workers hold the jobs they were admitted with (their slots
// are taken, so the queue hands out no more) and make no attempt; after the cool-down one
// round probes the endpoint with its own job: success resumes, failure pauses again for
// twice as long, up to PauseMaxCooldown. The cap is short so that an endpoint that answers
// again gets its backlog within seconds; a probe costs one request, and one attempt of the
// job it carries, which was due anyway (only due jobs are handed out).
const (
	PauseAfter       = 5 // consecutive failed rounds
	PauseMinCooldown = time.Second
	PauseMaxCooldown = 5 * time.Second
)

// Breaker is the pause state of one destination, shared by its workers and kept across
// reloads. The zero value is not usable: use NewBreaker.
type Breaker struct {
	onChange func(paused bool, until time.Time)

	mu       sync.Mutex
	failures int       // consecutive failed rounds
	until    time.Time // paused until; zero when running
	cooldown time.Duration
	probing  bool
	held     bool          // paused by an operator: no round starts until Resume
	wake     chan struct{} // closed and replaced when the state changes
}

// NewBreaker returns a running breaker; onChange (may be nil) is told when it pauses or
// resumes, for logs and metrics. It is called with the breaker's lock held: it must not
// call back into the breaker.
func NewBreaker(onChange func(paused bool, until time.Time)) *Breaker {
	return &Breaker{onChange: onChange, wake: make(chan struct{})}
}

// Paused reports whether the destination is paused, and until when (zero when an operator
// paused it: until Resume).
func (b *Breaker) Paused() (bool, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held {
		return true, time.Time{}
	}
	return !b.until.IsZero(), b.until
}

// Acquire returns when a round may start: at once while running; while paused, after the
// cool-down, and then to one caller at a time (probe is true for it); while an operator
// holds it, after Resume. ctx ending returns its error.
func (b *Breaker) Acquire(ctx context.Context) (probe bool, err error) {
	for {
		b.mu.Lock()
		if b.until.IsZero() && !b.held {
			b.mu.Unlock()
			return false, nil
		}
		wait := time.Until(b.until)
		if b.held {
			wait = 0 // no timer: only Resume wakes it
		} else if wait <= 0 && !b.probing {
			b.probing = true
			b.mu.Unlock()
			return true, nil
		}
		wake := b.wake
		b.mu.Unlock()
		var t *time.Timer
		var timer <-chan time.Time
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if err != nil {
			return false, err
		}
	}
}

// Done records how a round ended. failed means the endpoint failed (see the pause policy);
// a round that ended otherwise with an answer (delivered, or refused with a 4xx) shows the
// endpoint is up. A probe that did not run (cancelled) must report with failed=false and
// ran=false so that another caller can probe.
func (b *Breaker) Done(probe, ran, failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch {
	case !ran:
		if probe {
			b.notify()
		}
	case failed:
		b.failures++
		paused := !b.until.IsZero()
		if probe || (!paused && b.failures >= PauseAfter) {
			b.cooldown = min(max(2*b.cooldown, PauseMinCooldown), PauseMaxCooldown)
			b.until = time.Now().Add(b.cooldown)
			b.notify()
			if b.onChange != nil && !b.held {
				b.onChange(true, b.until)
			}
		}
	default:
		b.failures = 0
		if !b.until.IsZero() {
			b.until, b.cooldown = time.Time{}, 0
			b.notify()
			if b.onChange != nil && !b.held {
				b.onChange(false, time.Time{})
			}
		}
	}
}

func (b *Breaker) notify() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// Pause holds the destination until Resume, whatever its rounds say: no round starts (the
// rounds running finish), and onChange is not called meanwhile, since the destination
// stays paused. It reports whether an operator had not paused it already.
func (b *Breaker) Pause() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held {
		return false
	}
	b.held = true
	b.notify()
	return true
}

// Resume ends a pause, an operator's or the pause policy's: rounds start at once, and the
// count of failed rounds starts again. It reports whether the destination was paused.
func (b *Breaker) Resume() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.held && b.until.IsZero() {
		return false
	}
	b.held, b.until, b.cooldown, b.failures = false, time.Time{}, 0, 0
	b.notify()
	return true
}

// Held reports whether an operator paused the destination.
func (b *Breaker) Held() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}
