package intake

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// dedup remembers the callbacks stored within the dedup window, so that Tencent IM sending
// one again (its retry after a timeout) is answered OK without a second delivery.
//
// Checking and recording are one step (claim): of two copies of a callback arriving at the
// same moment, one stores it and the other waits for that store's outcome: a duplicate
// once it is stored, or its turn to store it when that failed. So a copy is never answered
// OK on the strength of a store that then failed.
//
// Memory is fixed: a table of dedupCapacity entries (a 64-bit hash and a time, 16 bytes
// each: 16 MiB), allocated once, in buckets of dedupWays. An entry older than the window is
// free. When every entry of a bucket is younger than the window (the window holds more
// callbacks than the table), the oldest is forgotten first: a copy of that callback coming
// later within its window is stored and delivered again, with the same webhook-id for the
// receiver to de-duplicate. At 1,000 callbacks a second the table holds about 17 minutes.
//
// It is in memory, per process: a restart forgets it, and another replica does not see it
// (the queue's own short de-duplication covers a retry that reaches another replica).
type dedup struct {
	window time.Duration
	seed   maphash.Seed

	mu       sync.Mutex
	table    []dedupEntry             // len dedupCapacity, in buckets of dedupWays
	inflight map[uint64]chan struct{} // being stored now; closed when that ends
}

const (
	dedupCapacity = 1 << 20
	dedupWays     = 8
)

type dedupEntry struct {
	key uint64
	at  int64 // Unix nanoseconds when stored; 0 for an empty entry
}

func newDedup(window time.Duration) *dedup { return newDedupOf(window, dedupCapacity) }

// newDedupOf is a dedup of capacity entries (a multiple of dedupWays).
func newDedupOf(window time.Duration, capacity int) *dedup {
	d := &dedup{window: window, seed: maphash.MakeSeed(), inflight: map[uint64]chan struct{}{}}
	if window > 0 {
		d.table = make([]dedupEntry, capacity)
	}
	return d
}

func (d *dedup) key(eventID string) uint64 { return maphash.String(d.seed, eventID) }

// bucket is the part of the table where k lives.
func (d *dedup) bucket(k uint64) []dedupEntry {
	i := int(k%uint64(len(d.table)/dedupWays)) * dedupWays
	return d.table[i : i+dedupWays : i+dedupWays]
}

// claim reports whether eventID was stored within the window (duplicate). If it was not,
// the caller stores it and then calls done with whether the store succeeded; meanwhile
// another claim of the same eventID waits (until ctx ends: then it returns ctx's error).
func (d *dedup) claim(ctx context.Context, eventID string) (duplicate bool, done func(stored bool), err error) {
	if d.window <= 0 {
		return false, func(bool) {}, nil
	}
	k := d.key(eventID)
	for {
		d.mu.Lock()
		now := time.Now().UnixNano()
		if d.stored(k, now) {
			d.mu.Unlock()
			return true, nil, nil
		}
		wait, busy := d.inflight[k]
		if !busy {
			ch := make(chan struct{})
			d.inflight[k] = ch
			d.mu.Unlock()
			return false, func(stored bool) { d.finish(k, ch, stored) }, nil
		}
		d.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false, nil, ctx.Err()
		}
	}
}

// stored reports whether k was stored within the window. Callers hold d.mu.
func (d *dedup) stored(k uint64, now int64) bool {
	for _, e := range d.bucket(k) {
		if e.at != 0 && e.key == k && now-e.at < int64(d.window) {
			return true
		}
	}
	return false
}

// finish ends the store of k: recorded when it succeeded, and the waiting claims woken.
func (d *dedup) finish(k uint64, ch chan struct{}, stored bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.inflight, k)
	close(ch)
	if !stored {
		return
	}
	now := time.Now().UnixNano()
	b := d.bucket(k)
	victim := 0
	for i, e := range b {
		if e.key == k || e.at == 0 || now-e.at >= int64(d.window) {
			victim = i
			break
		}
		if e.at < b[victim].at {
			victim = i
		}
	}
	b[victim] = dedupEntry{key: k, at: now}
}
