package delivery

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// rsChanges records what a Breaker tells its onChange.
type rsChanges struct {
	mu  sync.Mutex
	got []string // "pause" or "resume"
}

func (c *rsChanges) onChange(paused bool, _ time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if paused {
		c.got = append(c.got, "pause")
	} else {
		c.got = append(c.got, "resume")
	}
}

func (c *rsChanges) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.got, " ")
}

// rsFail reports n failed rounds that were not probes.
func rsFail(b *Breaker, n int) {
	for range n {
		b.Done(false, true, true)
	}
}

// rsExpire ends the breaker's cool-down now, as if it had run its course: the cool-down
// is at least 5 s, too long to wait for in a unit test.
func rsExpire(b *Breaker) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.until = time.Now().Add(-time.Millisecond)
	b.notify()
}

// rsCooldown is the breaker's current cool-down.
func rsCooldown(b *Breaker) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cooldown
}

// rsCheckPausedFor checks that b is paused until about cooldown after a moment between
// before and the call.
func rsCheckPausedFor(t *testing.T, b *Breaker, before time.Time, cooldown time.Duration) {
	t.Helper()
	after := time.Now()
	paused, until := b.Paused()
	if !paused {
		t.Fatalf("not paused, want paused for %s", cooldown)
	}
	if until.Before(before.Add(cooldown)) || until.After(after.Add(cooldown)) {
		t.Fatalf("paused until %s from now, want %s", until.Sub(after).Round(time.Millisecond), cooldown)
	}
	if got := rsCooldown(b); got != cooldown {
		t.Fatalf("cool-down %s, want %s", got, cooldown)
	}
}

// rsAcquired is what a background Acquire returned.
type rsAcquired struct {
	probe bool
	err   error
}

// rsAcquireAsync runs Acquire in a goroutine.
func rsAcquireAsync(ctx context.Context, b *Breaker) <-chan rsAcquired {
	ch := make(chan rsAcquired, 1)
	go func() {
		probe, err := b.Acquire(ctx)
		ch <- rsAcquired{probe, err}
	}()
	return ch
}

func rsReceive(t *testing.T, ch <-chan rsAcquired, what string) rsAcquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		return rsAcquired{}
	}
}

func TestBreakerPausesAfterConsecutiveFailures(t *testing.T) {
	ch := &rsChanges{}
	b := NewBreaker(ch.onChange)
	ctx := testContext(t)

	rsFail(b, PauseAfter-1)
	b.Done(false, true, false) // an answer resets the count
	rsFail(b, PauseAfter-1)
	b.Done(false, false, false) // a round that did not run changes nothing
	if paused, _ := b.Paused(); paused {
		t.Fatalf("paused after %d failed rounds in a row, want %d", PauseAfter-1, PauseAfter)
	}
	if probe, err := b.Acquire(ctx); probe || err != nil {
		t.Fatalf("Acquire while running = %v, %v; want false, nil", probe, err)
	}

	before := time.Now()
	rsFail(b, 1)
	rsCheckPausedFor(t, b, before, PauseMinCooldown)
	if got := ch.String(); got != "pause" {
		t.Fatalf("onChange calls %q, want %q", got, "pause")
	}

	// Rounds that were already running when it paused end in failure too: no new pause.
	_, until := b.Paused()
	rsFail(b, 3)
	if _, again := b.Paused(); !again.Equal(until) {
		t.Errorf("a failed round while paused moved the end of the pause from %s to %s", until, again)
	}

	// No round starts before the cool-down ends.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if probe, err := b.Acquire(short); !errors.Is(err, context.DeadlineExceeded) || probe {
		t.Fatalf("Acquire during the cool-down = %v, %v; want it to wait until its context ended", probe, err)
	}
	if got := ch.String(); got != "pause" {
		t.Fatalf("onChange calls %q, want %q", got, "pause")
	}
}

func TestBreakerProbesWhenTheCooldownEnds(t *testing.T) {
	b := NewBreaker(nil)
	rsFail(b, PauseAfter)
	// Shorten the cool-down so that Acquire's own timer ends it.
	b.mu.Lock()
	b.until = time.Now().Add(50 * time.Millisecond)
	b.mu.Unlock()
	probe, err := b.Acquire(testContext(t))
	if err != nil || !probe {
		t.Fatalf("Acquire after the cool-down = %v, %v; want a probe", probe, err)
	}
}

func TestBreakerOneProbeAtATime(t *testing.T) {
	ch := &rsChanges{}
	b := NewBreaker(ch.onChange)
	ctx := testContext(t)
	rsFail(b, PauseAfter)
	rsExpire(b)

	probe, err := b.Acquire(ctx)
	if err != nil || !probe {
		t.Fatalf("first Acquire after the cool-down = %v, %v; want the probe", probe, err)
	}
	// While the probe runs, nobody else starts a round.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if probe, err := b.Acquire(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Acquire during the probe = %v, %v; want it to wait", probe, err)
	}
	waiters := []<-chan rsAcquired{rsAcquireAsync(ctx, b), rsAcquireAsync(ctx, b), rsAcquireAsync(ctx, b)}

	// The probe succeeds: the destination resumes and every waiter goes, none as a probe.
	b.Done(true, true, false)
	for i, w := range waiters {
		if a := rsReceive(t, w, "a waiter to go after the probe succeeded"); a.err != nil || a.probe {
			t.Errorf("waiter %d: Acquire = %v, %v; want false, nil", i, a.probe, a.err)
		}
	}
	if paused, _ := b.Paused(); paused {
		t.Error("still paused after a successful probe")
	}
	if got := ch.String(); got != "pause resume" {
		t.Errorf("onChange calls %q, want %q", got, "pause resume")
	}
	// Resumed, it counts failures afresh and starts again from the shortest cool-down.
	rsFail(b, PauseAfter-1)
	if paused, _ := b.Paused(); paused {
		t.Fatal("paused again before PauseAfter new failures")
	}
	before := time.Now()
	rsFail(b, 1)
	rsCheckPausedFor(t, b, before, PauseMinCooldown)
}

func TestBreakerCooldownDoublesAndIsCapped(t *testing.T) {
	ch := &rsChanges{}
	b := NewBreaker(ch.onChange)
	ctx := testContext(t)
	before := time.Now()
	rsFail(b, PauseAfter)
	rsCheckPausedFor(t, b, before, PauseMinCooldown)

	want := []time.Duration{2 * PauseMinCooldown, 4 * PauseMinCooldown, PauseMaxCooldown, PauseMaxCooldown}
	for _, cooldown := range want {
		rsExpire(b)
		probe, err := b.Acquire(ctx)
		if err != nil || !probe {
			t.Fatalf("Acquire after the cool-down = %v, %v; want the probe", probe, err)
		}
		before := time.Now()
		b.Done(true, true, true)
		rsCheckPausedFor(t, b, before, cooldown)
	}
	if got, want := ch.String(), strings.Repeat("pause ", len(want)+1); got+" " != want {
		t.Errorf("onChange calls %q, want %q", got, want)
	}

	rsExpire(b)
	if probe, err := b.Acquire(ctx); err != nil || !probe {
		t.Fatalf("Acquire = %v, %v; want the probe", probe, err)
	}
	b.Done(true, true, false)
	if paused, _ := b.Paused(); paused || rsCooldown(b) != 0 {
		t.Fatalf("after a successful probe: paused %v, cool-down %s; want running, 0", paused, rsCooldown(b))
	}
}

func TestBreakerCanceledProbeLetsAnotherProbe(t *testing.T) {
	b := NewBreaker(nil)
	ctx := testContext(t)
	rsFail(b, PauseAfter)
	rsExpire(b)

	if probe, err := b.Acquire(ctx); err != nil || !probe {
		t.Fatalf("Acquire = %v, %v; want the probe", probe, err)
	}
	waiter := rsAcquireAsync(ctx, b)
	// The probe's round is cut short before it reached the endpoint (shutdown, a reload):
	// it tells nothing, and the next caller probes at once.
	b.Done(true, false, false)
	if a := rsReceive(t, waiter, "the waiter to take over the probe"); a.err != nil || !a.probe {
		t.Fatalf("waiter's Acquire = %v, %v; want the probe", a.probe, a.err)
	}
	if paused, _ := b.Paused(); !paused {
		t.Fatal("a cancelled probe resumed the destination")
	}
	if got := rsCooldown(b); got != PauseMinCooldown {
		t.Fatalf("a cancelled probe changed the cool-down to %s", got)
	}
	// The second probe fails: paused again, for twice as long.
	before := time.Now()
	b.Done(true, true, true)
	rsCheckPausedFor(t, b, before, 2*PauseMinCooldown)
}

// TestWorkerPausedProbeWithoutAttempt: a paused destination's probe takes a job whose body
// transform fails, so no request reaches the endpoint. That says nothing about the
// endpoint: the destination must stay paused (and the next job probes).
func TestWorkerPausedProbeWithoutAttempt(t *testing.T) {
	closed := "http://" + fanouttest.FreeAddr(t) + "/hook" // every attempt fails with a connection error

	q := openQueue(t)
	d := testDestination(t, closed, func(d *Destination) {
		d.Name = "down"
		d.Policy = Policy{MaxAttempts: 1, Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1}
		d.Transform = func(_ string, body []byte) ([]byte, error) {
			if strings.Contains(string(body), "untransformable") {
				return nil, errors.New("no such field")
			}
			return body, nil
		}
	})
	cur, _ := current(d)
	ch := &rsChanges{}
	b := NewBreaker(ch.onChange)
	var mu sync.Mutex
	var results []Result
	w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur, Breaker: b,
		Logger: slog.New(slog.DiscardHandler), Done: func(r Result) {
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}}
	consume(t, q, w, "down", AckWait, w.Handle)
	rounds := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(results)
	}

	var jobs []queue.Job
	for i := range PauseAfter {
		jobs = append(jobs, jobFor("down", i))
	}
	enqueue(t, q, jobs...)
	fanouttest.WaitFor(t, waitTimeout, "the destination to pause", func() bool { paused, _ := b.Paused(); return paused && rounds() == PauseAfter })

	rsExpire(b)
	bad := jobFor("down", 100)
	bad.Body = []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","untransformable":true}`)
	enqueue(t, q, bad)
	fanouttest.WaitFor(t, waitTimeout, "the untransformable job to be dead-lettered", func() bool { return rounds() == PauseAfter+1 })
	mu.Lock()
	last := results[len(results)-1]
	mu.Unlock()
	if last.Reason != ReasonTransform || last.Attempts != 0 {
		t.Fatalf("last round: reason %q, %d attempts; want %q, 0", last.Reason, last.Attempts, ReasonTransform)
	}
	if paused, _ := b.Paused(); !paused {
		t.Fatalf("a probe that made no attempt resumed the destination (onChange: %s)", ch)
	}
	// The probe slot is free again: the next job probes (and fails: paused for longer).
	before := time.Now()
	enqueue(t, q, jobFor("down", 101))
	fanouttest.WaitFor(t, waitTimeout, "the next probe", func() bool { return rounds() == PauseAfter+2 })
	rsCheckPausedFor(t, b, before, 2*PauseMinCooldown)
	if got := ch.String(); got != "pause pause" {
		t.Errorf("onChange calls %q, want %q", got, "pause pause")
	}
}

func TestBreakerHeldUntilResume(t *testing.T) {
	ch := &rsChanges{}
	b := NewBreaker(ch.onChange)
	ctx := testContext(t)

	if !b.Pause() || b.Pause() {
		t.Fatal("Pause should report true the first time only")
	}
	if paused, until := b.Paused(); !paused || !until.IsZero() || !b.Held() {
		t.Fatalf("Paused() = %v, %v, Held() = %v; want true, zero time, true", paused, until, b.Held())
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if probe, err := b.Acquire(short); !errors.Is(err, context.DeadlineExceeded) || probe {
		t.Fatalf("Acquire while held = %v, %v; want it to wait until its context ended", probe, err)
	}
	waiters := []<-chan rsAcquired{rsAcquireAsync(ctx, b), rsAcquireAsync(ctx, b)}

	// Rounds that were running end: failures pause nothing more, a success resumes nothing,
	// and a cool-down running out makes no probe.
	rsFail(b, PauseAfter)
	rsExpire(b)
	b.Done(false, true, false)
	rsFail(b, PauseAfter)
	rsExpire(b)
	short2, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if probe, err := b.Acquire(short2); !errors.Is(err, context.DeadlineExceeded) || probe {
		t.Fatalf("Acquire while held after the cool-down = %v, %v; want it to wait", probe, err)
	}
	if paused, _ := b.Paused(); !paused {
		t.Fatal("not paused any more while held")
	}
	if got := ch.String(); got != "" {
		t.Fatalf("onChange calls %q while held, want none", got)
	}

	if !b.Resume() || b.Resume() {
		t.Fatal("Resume should report true the first time only")
	}
	for i, w := range waiters {
		if a := rsReceive(t, w, "a waiter to go after Resume"); a.err != nil || a.probe {
			t.Errorf("waiter %d: Acquire = %v, %v; want false, nil", i, a.probe, a.err)
		}
	}
	if paused, _ := b.Paused(); paused || b.Held() {
		t.Fatal("still paused after Resume")
	}
	// The failures counted while held are forgotten.
	rsFail(b, PauseAfter-1)
	if paused, _ := b.Paused(); paused {
		t.Fatal("paused again before PauseAfter new failures")
	}
}

func TestBreakerResumeEndsAnAutomaticPause(t *testing.T) {
	b := NewBreaker(nil)
	ctx := testContext(t)
	rsFail(b, PauseAfter)
	b.Done(true, true, true) // a failed probe doubles the cool-down
	if got := rsCooldown(b); got != 2*PauseMinCooldown {
		t.Fatalf("cool-down %s, want %s", got, 2*PauseMinCooldown)
	}
	if !b.Resume() {
		t.Fatal("Resume of a paused destination reported false")
	}
	if probe, err := b.Acquire(ctx); probe || err != nil {
		t.Fatalf("Acquire after Resume = %v, %v; want false, nil", probe, err)
	}
	// The next pause starts again from the shortest cool-down.
	rsFail(b, PauseAfter-1)
	if paused, _ := b.Paused(); paused {
		t.Fatal("paused again before PauseAfter new failures")
	}
	before := time.Now()
	rsFail(b, 1)
	rsCheckPausedFor(t, b, before, PauseMinCooldown)
}
