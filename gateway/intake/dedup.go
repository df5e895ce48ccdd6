package intake

import (
	"hash/maphash"
	"sync"
	"time"
)

// dedup remembers the callbacks stored within the dedup window, so that Tencent IM sending
// one again (its retry after a timeout) is answered OK without a second delivery.
//
// It is kept in memory, a 64-bit hash per callback in a Go map (20 to 40 bytes each with
// the map's own overhead), rather than in JetStream's message-id de-duplication, which
// costs the server about 100 bytes per job, and a callback makes a job per destination.
// With replicas on an external JetStream, the queue's de-duplication is also on, with a
// short window (the gateway's queueOptions), for a retry that reaches another replica. What neither
// sees (a retry after a restart, or after a partly stored callback answered 503) is
// delivered again: delivery is at least once, and receivers de-duplicate on webhook-id.
//
// Two generations: entries live between one and two windows, and expiring them is dropping
// a map.
type dedup struct {
	window time.Duration
	seed   maphash.Seed

	mu       sync.Mutex
	cur      map[uint64]struct{}
	prev     map[uint64]struct{}
	cutStart time.Time // when cur started
}

func newDedup(window time.Duration) *dedup {
	return &dedup{window: window, seed: maphash.MakeSeed(), cur: map[uint64]struct{}{}, cutStart: time.Now()}
}

func (d *dedup) key(eventID string) uint64 { return maphash.String(d.seed, eventID) }

// seen reports whether eventID was stored within the window.
func (d *dedup) seen(eventID string) bool {
	if d.window <= 0 {
		return false
	}
	k := d.key(eventID)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rotate()
	_, a := d.cur[k]
	_, b := d.prev[k]
	return a || b
}

// add records eventID as stored.
func (d *dedup) add(eventID string) {
	if d.window <= 0 {
		return
	}
	k := d.key(eventID)
	d.mu.Lock()
	d.rotate()
	d.cur[k] = struct{}{}
	d.mu.Unlock()
}

func (d *dedup) rotate() {
	now := time.Now()
	age := now.Sub(d.cutStart)
	if age < d.window {
		return
	}
	d.prev, d.cur, d.cutStart = d.cur, make(map[uint64]struct{}, len(d.cur)), now
	if age >= 2*d.window { // idle: cur is older than a window too
		d.prev = nil
	}
}
