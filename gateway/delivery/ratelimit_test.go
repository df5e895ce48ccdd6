package delivery

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
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

// rsGrants runs Wait on r from workers goroutines until total waits returned, and returns
// when each returned, sorted.
func rsGrants(t *testing.T, r *RateLimit, workers, total int) []time.Time {
	t.Helper()
	ctx := testContext(t)
	var mu sync.Mutex
	var at []time.Time
	started := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				if started >= total {
					mu.Unlock()
					return
				}
				started++
				mu.Unlock()
				if err := r.Wait(ctx); err != nil {
					t.Errorf("Wait: %v", err)
					return
				}
				mu.Lock()
				at = append(at, time.Now())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	return at
}

// rsMostIn is the largest number of times within any window [at[i], at[i]+window).
func rsMostIn(at []time.Time, window time.Duration) int {
	most := 0
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < window; j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

// TestRateLimitWait: concurrent waiters on a 10/s limit get at most 10 in any second, with
// no burst: 35 grants take at least 3.4 s. The limiter spaces the grants exactly; the
// goroutines may observe them a little late, so a window may see one more (+1).
func TestRateLimitWait(t *testing.T) {
	r := NewRateLimit(10, time.Second)
	start := time.Now()
	at := rsGrants(t, r, 8, 35)
	took := time.Since(start)
	if took < 3400*time.Millisecond {
		t.Errorf("35 grants at 10/s took %s, want at least 3.4s", took)
	}
	if most := rsMostIn(at, time.Second); most > 10+1 {
		t.Errorf("%d grants within one second, want at most 10 (+1)", most)
	}
	if most := rsMostIn(at, 3*time.Second); most > 30+1 {
		t.Errorf("%d grants within three seconds, want at most 30 (+1)", most)
	}
	t.Logf("35 grants in %s; most in 1 s: %d, in 3 s: %d", took.Round(time.Millisecond), rsMostIn(at, time.Second), rsMostIn(at, 3*time.Second))
}

// TestRateLimitNoBurstAfterIdle: a limiter left idle does not save up attempts.
func TestRateLimitNoBurstAfterIdle(t *testing.T) {
	r := NewRateLimit(20, time.Second) // one every 50 ms
	ctx := testContext(t)
	if err := r.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // idle: a bucket larger than one would fill up now
	start := time.Now()
	for range 4 {
		if err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("4 waits after an idle time took %s, want at least 150ms (a burst of one)", took)
	}
}

// TestRateLimitPeriod: n per period is the same pace whatever the unit.
func TestRateLimitPeriod(t *testing.T) {
	r := NewRateLimit(1200, time.Minute) // 20/s
	start := time.Now()
	rsGrants(t, r, 2, 11)
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("11 grants at 1200/m took %s, want at least 500ms", took)
	}
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

// TestSendWaitsForTheRateLimit: the Sender paces every attempt of a destination, quick
// retries included, and a context that ends in the wait cancels the round.
func TestSendWaitsForTheRateLimit(t *testing.T) {
	rc := newReceiver(t, sequence(503, 503, 200))
	d := testDestination(t, rc.URL, func(d *Destination) { d.RateLimit = NewRateLimit(10, time.Second) })
	s := NewSender(SenderOptions{})
	start := time.Now()
	res := s.Send(testContext(t), d, testJob(), false)
	took := time.Since(start)
	if res.Outcome != Delivered || res.Attempts != 3 {
		t.Fatalf("Send = %s after %d attempts, want delivered after 3", res.Outcome, res.Attempts)
	}
	// The quick retries wait 1 ms; the limit spaces the three attempts by 100 ms.
	if took < 200*time.Millisecond {
		t.Errorf("3 attempts at 10/s took %s, want at least 200ms", took)
	}

	limited := testDestination(t, rc.URL, func(d *Destination) { d.RateLimit = NewRateLimit(1, time.Hour) })
	ctx := testContext(t)
	if res := s.Send(ctx, limited, testJob(), false); res.Outcome != Delivered {
		t.Fatalf("first Send: %s", res.Outcome)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	before := len(rc.requests())
	res = s.Send(short, limited, testJob(), false)
	if res.Outcome != Retry || res.Reason != ReasonCanceled || res.Attempts != 0 {
		t.Errorf("Send waiting past its context = %s %q after %d attempts, want retry %q after 0", res.Outcome, res.Reason, res.Attempts, ReasonCanceled)
	}
	if n := len(rc.requests()); n != before {
		t.Errorf("the receiver got %d requests beyond the limit", n-before)
	}
}
