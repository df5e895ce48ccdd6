package delivery

import (
	"context"
	"sync"
)

// Slots bound the HTTP requests in flight to one destination: its concurrency. A job takes
// a slot for each attempt and gives it back as soon as the answer is read, so a job waiting
// for its next attempt holds none. The limit can change while slots are taken (a reload):
// a lower one applies as slots come back. Slots belong to a destination's name and are kept
// across reloads. The zero value is not usable: use NewSlots.
type Slots struct {
	mu    sync.Mutex
	limit int
	used  int
	free  chan struct{} // closed and replaced when a slot may have become free
}

// NewSlots returns n free slots (at least 1).
func NewSlots(n int) *Slots {
	return &Slots{limit: max(n, 1), free: make(chan struct{})}
}

// Acquire takes a slot, waiting for one to be free; it returns ctx's error if ctx ends
// first, having taken nothing.
func (s *Slots) Acquire(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.used < s.limit {
			s.used++
			s.mu.Unlock()
			return nil
		}
		free := s.free
		s.mu.Unlock()
		select {
		case <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Release gives a slot back.
func (s *Slots) Release() {
	s.mu.Lock()
	s.used--
	if s.used < 0 {
		s.mu.Unlock()
		panic("delivery: Slots.Release without Acquire")
	}
	s.wake()
	s.mu.Unlock()
}

// SetLimit changes the number of slots (at least 1).
func (s *Slots) SetLimit(n int) {
	s.mu.Lock()
	s.limit = max(n, 1)
	s.wake()
	s.mu.Unlock()
}

// InUse is the number of slots taken: requests in flight.
func (s *Slots) InUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

func (s *Slots) wake() {
	close(s.free)
	s.free = make(chan struct{})
}
