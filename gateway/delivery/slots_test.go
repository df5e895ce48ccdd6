package delivery

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestSlotsBound: no more than the limit are taken at once, waiters get the slots in the
// order they came, a lower limit applies as slots come back and a higher one at once.
func TestSlotsBound(t *testing.T) {
	s := NewSlots(2)
	ctx := testContext(t)
	for range 2 {
		if err := s.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range 3 {
		// Each waiter queues after the previous one.
		waiting := s.waiting()
		wg.Go(func() {
			if err := s.Acquire(ctx); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		})
		fanouttest.WaitFor(t, waitTimeout, "the waiter to queue", func() bool { return s.waiting() > waiting })
	}
	if got := s.InUse(); got != 2 {
		t.Fatalf("InUse = %d with three waiting, want 2", got)
	}
	served := func(n int) {
		t.Helper()
		fanouttest.WaitFor(t, waitTimeout, "the next waiter served", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(order) == n
		})
	}
	s.Release() // the first waiter's turn
	served(1)
	s.SetLimit(3) // one more at once: the second waiter's turn
	served(2)
	s.SetLimit(1) // applies as slots come back
	s.Release()
	s.Release()
	if got, w := s.InUse(), s.waiting(); got != 1 || w != 1 {
		t.Errorf("InUse = %d, %d waiting after lowering the limit to 1, want 1 and 1", got, w)
	}
	s.Release() // the last waiter's turn
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 3 || order[0] != 0 || order[1] != 1 || order[2] != 2 {
		t.Errorf("waiters served in the order %v, want [0 1 2]", order)
	}
}

// TestSlotsCancel: a waiter whose context ends takes nothing, and does not keep the slot
// from the next waiter.
func TestSlotsCancel(t *testing.T) {
	s := NewSlots(1)
	if err := s.Acquire(testContext(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Acquire(ctx) }()
	fanouttest.WaitFor(t, waitTimeout, "the waiter to queue", func() bool { return s.waiting() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", err)
	}
	s.Release()
	if got := s.InUse(); got != 0 {
		t.Errorf("InUse = %d, want 0: the cancelled waiter took a slot", got)
	}
	if err := s.Acquire(testContext(t)); err != nil {
		t.Errorf("Acquire after the cancelled waiter: %v", err)
	}
}

// BenchmarkSlotsManyWaiters: many lanes wait for few slots, as an ordered destination's
// keys do. Each release wakes one waiter, not all of them.
func BenchmarkSlotsManyWaiters(b *testing.B) {
	s := NewSlots(8)
	ctx := context.Background()
	var wg sync.WaitGroup
	per := b.N/2000 + 1
	b.ResetTimer()
	for range 2000 {
		wg.Go(func() {
			for range per {
				if s.Acquire(ctx) == nil {
					time.Sleep(50 * time.Microsecond) // a request in flight
					s.Release()
				}
			}
		})
	}
	wg.Wait()
}
