package delivery

import (
	"container/list"
	"context"
	"sync"
)

// Slots bound the HTTP requests in flight to one destination: its concurrency. A job takes
// a slot for each attempt and gives it back as soon as the answer is read, so a job waiting
// for its next attempt holds none. The limit can change while slots are taken (a reload):
// a lower one applies as slots come back. Slots belong to a destination's name and are kept
// across reloads. The zero value is not usable: use NewSlots.
//
// Waiters are served in the order they came, and a slot given back wakes one waiter only:
// an ordered destination can have thousands of lanes waiting for a few slots, and waking
// them all at every answer would cost more than the requests.
type Slots struct {
	mu      sync.Mutex
	limit   int
	used    int
	waiters list.List // of chan struct{}, closed when its slot is granted
}

// NewSlots returns n free slots (at least 1).
func NewSlots(n int) *Slots {
	return &Slots{limit: max(n, 1)}
}

// Acquire takes a slot, waiting for one to be free; it returns ctx's error if ctx ends
// first, having taken nothing.
func (s *Slots) Acquire(ctx context.Context) error {
	s.mu.Lock()
	if s.used < s.limit && s.waiters.Len() == 0 {
		s.used++
		s.mu.Unlock()
		return nil
	}
	granted := make(chan struct{})
	e := s.waiters.PushBack(granted)
	s.mu.Unlock()
	select {
	case <-granted:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	select {
	case <-granted: // granted meanwhile: give it on
		s.used--
		s.grant()
	default:
		s.waiters.Remove(e)
	}
	s.mu.Unlock()
	return ctx.Err()
}

// Release gives a slot back.
func (s *Slots) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used--
	if s.used < 0 {
		panic("delivery: Slots.Release without Acquire")
	}
	s.grant()
}

// SetLimit changes the number of slots (at least 1).
func (s *Slots) SetLimit(n int) {
	s.mu.Lock()
	s.limit = max(n, 1)
	s.grant()
	s.mu.Unlock()
}

// InUse is the number of slots taken: requests in flight.
func (s *Slots) InUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// grant gives the free slots to the first waiters. Callers hold mu.
func (s *Slots) grant() {
	for s.used < s.limit && s.waiters.Len() > 0 {
		granted := s.waiters.Remove(s.waiters.Front()).(chan struct{})
		s.used++
		close(granted)
	}
}

// waiting is the number of callers waiting in Acquire, for tests.
func (s *Slots) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiters.Len()
}
