package delivery

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

func TestRateLimitSame(t *testing.T) {
	var none *RateLimit
	r := NewRateLimit(10, time.Second)
	tests := []struct {
		name   string
		r      *RateLimit
		n      int
		period time.Duration
		want   bool
	}{
		{"no limit", none, 10, time.Second, false},
		{"same", r, 10, time.Second, true},
		{"other count", r, 11, time.Second, false},
		{"other period", r, 10, time.Minute, false},
		// The same pace written differently is another config: a new bucket (of one) is fine.
		{"same pace, other unit", r, 600, time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Same(tt.n, tt.period); got != tt.want {
				t.Errorf("Same(%d, %s) = %v, want %v", tt.n, tt.period, got, tt.want)
			}
		})
	}
}

// rsSchedule is when total waiters that all arrive at start may go: r's schedule read on a
// virtual clock (reservations made at a given instant), so that a test checks the pace
// exactly instead of measuring it.
func rsSchedule(r *RateLimit, start time.Time, total int) []time.Time {
	at := make([]time.Time, total)
	for i := range at {
		at[i] = start.Add(r.lim.ReserveN(start, 1).DelayFrom(start))
	}
	return at
}

// TestRateLimitWait: waiters that arrive together on a 10/s limit go one every 100 ms, the
// first at once: at most 10 in any second, 30 in any three, with no burst.
func TestRateLimitWait(t *testing.T) {
	start := time.Now()
	at := rsSchedule(NewRateLimit(10, time.Second), start, 35)
	for i, a := range at {
		if got, want := a.Sub(start), time.Duration(i)*100*time.Millisecond; got != want {
			t.Fatalf("waiter %d goes after %s, want %s", i+1, got, want)
		}
	}
	if most := fanouttest.MostWithin(at, time.Second); most != 10 {
		t.Errorf("%d grants within one second, want 10", most)
	}
	if most := fanouttest.MostWithin(at, 3*time.Second); most != 30 {
		t.Errorf("%d grants within three seconds, want 30", most)
	}
}

// TestRateLimitConcurrentWaiters: of waiters that call Wait together on a limit whose
// second slot is an hour away, exactly one goes; the others give up at once, their slot
// being past their context's deadline. Counts, not a stopwatch: the real Wait grants no
// burst above one.
func TestRateLimitConcurrentWaiters(t *testing.T) {
	r := NewRateLimit(1, time.Hour)
	ctx := testContext(t)
	var granted, refused atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if r.Wait(ctx) == nil {
				granted.Add(1)
			} else {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if granted.Load() != 1 || refused.Load() != 7 {
		t.Errorf("%d waiters granted, %d refused; want 1 and 7", granted.Load(), refused.Load())
	}
}

// TestRateLimitNoBurstAfterIdle: a limiter left idle does not save up attempts: after an
// idle time, four waiters still go one every 50 ms at 20/s.
func TestRateLimitNoBurstAfterIdle(t *testing.T) {
	r := NewRateLimit(20, time.Second)
	start := time.Now()
	r.lim.ReserveN(start, 1)
	idle := start.Add(300 * time.Millisecond) // a bucket larger than one would fill up meanwhile
	var got []time.Duration
	for _, at := range rsSchedule(r, idle, 4) {
		got = append(got, at.Sub(idle))
	}
	want := []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Errorf("after an idle time, waiters go after %v, want %v (a burst of one)", got, want)
	}
}

// TestRateLimitPeriod: n per period is the same pace whatever the unit: 1200/m is 20/s.
func TestRateLimitPeriod(t *testing.T) {
	start := time.Now()
	at := rsSchedule(NewRateLimit(1200, time.Minute), start, 11)
	if last := at[len(at)-1].Sub(start); last != 500*time.Millisecond {
		t.Errorf("the 11th grant at 1200/m goes after %s, want 500ms", last)
	}
}

// BenchmarkRateLimitWait measures what the real clock gives waiters on a 1000/s limit, from
// 8 goroutines: the grants per second, and the most grants seen within any 100 ms (100 at an
// exact pace; goroutines that observe their grant late can see one more).
//
//	go test -run '^$' -bench RateLimitWait ./gateway/delivery/
func BenchmarkRateLimitWait(b *testing.B) {
	r := NewRateLimit(1000, time.Second)
	ctx := testContext(b)
	var mu sync.Mutex
	var at []time.Time
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.Wait(ctx); err != nil {
				b.Errorf("Wait: %v", err)
				return
			}
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
		}
	})
	b.ReportMetric(float64(len(at))/time.Since(start).Seconds(), "grants/s")
	b.ReportMetric(float64(fanouttest.MostWithin(at, 100*time.Millisecond)), "most/100ms")
}

func TestRateLimitWaitEndsWithContext(t *testing.T) {
	r := NewRateLimit(1, time.Hour)
	ctx := testContext(t)
	if err := r.Wait(ctx); err != nil {
		t.Fatalf("first Wait: %v", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Wait(canceled); err == nil {
		t.Error("Wait with a cancelled context returned nil")
	}
	// The next slot is an hour away: Wait gives up at once instead of sleeping past the
	// deadline, and a round's Send then ends like a cancellation.
	short, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	if err := r.Wait(short); err == nil {
		t.Error("Wait whose slot is past the context's deadline returned nil")
	}
}

// rsLimiter is a Limiter that grants at once and writes "wait" to the log it shares with a
// receiver, which writes "request": their order shows where Send waits.
type rsLimiter struct {
	mu  *sync.Mutex
	log *[]string
}

func (l rsLimiter) Wait(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.log = append(*l.log, "wait")
	return nil
}

// TestSendWaitsForTheRateLimit: the Sender waits for the limiter before every attempt of a
// destination, quick retries included, and a context that ends in the wait cancels the round.
func TestSendWaitsForTheRateLimit(t *testing.T) {
	var (
		mu  sync.Mutex
		log []string
	)
	statuses := fanouttest.Statuses(503, 503, 200)
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		mu.Lock()
		log = append(log, "request")
		mu.Unlock()
		return statuses(r)
	})
	d := testDestination(t, rc.URL(), func(d *Destination) { d.RateLimit = rsLimiter{&mu, &log} })
	s := NewSender(SenderOptions{})
	res := s.Send(testContext(t), d, testJob(), Round{})
	if res.Outcome != Delivered || res.Attempts != 3 {
		t.Fatalf("Send = %s after %d attempts, want delivered after 3", res.Outcome, res.Attempts)
	}
	mu.Lock()
	got := slices.Clone(log)
	mu.Unlock()
	if want := []string{"wait", "request", "wait", "request", "wait", "request"}; !slices.Equal(got, want) {
		t.Errorf("limiter and receiver saw %v, want %v: a wait before each attempt", got, want)
	}

	limited := testDestination(t, rc.URL(), func(d *Destination) { d.RateLimit = NewRateLimit(1, time.Hour) })
	ctx := testContext(t)
	if res := s.Send(ctx, limited, testJob(), Round{}); res.Outcome != Delivered {
		t.Fatalf("first Send: %s", res.Outcome)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	before := len(rc.Requests())
	res = s.Send(short, limited, testJob(), Round{})
	if res.Outcome != Retry || res.Reason != ReasonCanceled || res.Attempts != 0 {
		t.Errorf("Send waiting past its context = %s %q after %d attempts, want retry %q after 0", res.Outcome, res.Reason, res.Attempts, ReasonCanceled)
	}
	if n := len(rc.Requests()); n != before {
		t.Errorf("the receiver got %d requests beyond the limit", n-before)
	}
}
