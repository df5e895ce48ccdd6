package intake

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDedup(t *testing.T) {
	ctx := context.Background()
	d := newDedup(20 * time.Millisecond)
	dup, done, err := d.claim(ctx, "a")
	if dup || err != nil {
		t.Fatalf("claim(a) = %v, %v before it was stored", dup, err)
	}
	done(true)
	if dup, _, _ := d.claim(ctx, "a"); !dup {
		t.Fatal("a not seen once stored")
	}
	if dup, done, _ := d.claim(ctx, "b"); dup {
		t.Fatal("b seen")
	} else {
		done(false)
	}
	// An entry is forgotten once the window has passed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		dup, done, _ := d.claim(ctx, "a")
		if !dup {
			done(false)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a is still remembered long after the window")
		}
		time.Sleep(5 * time.Millisecond)
	}

	off := newDedup(0)
	_, done, _ = off.claim(ctx, "a")
	done(true)
	if dup, _, _ := off.claim(ctx, "a"); dup {
		t.Error("a window of 0 remembers")
	}
}

// TestDedupConcurrentCopies reproduces two copies of one callback arriving together both
// being stored: the check and the record were two steps. Now exactly one copy stores it, and
// the others are duplicates once it is stored; when that store fails, another copy stores it.
func TestDedupConcurrentCopies(t *testing.T) {
	d := newDedup(time.Minute)
	var stores atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 16 {
		wg.Go(func() {
			<-start
			dup, done, err := d.claim(context.Background(), "same")
			if err != nil || dup {
				return
			}
			n := stores.Add(1)
			time.Sleep(time.Millisecond) // the write to the queue
			done(n > 1)                  // the first store fails, the next succeeds
		})
	}
	close(start)
	wg.Wait()
	if n := stores.Load(); n != 2 {
		t.Errorf("%d copies stored, want 2 (the first failed, the second stored it)", n)
	}

	// A claim waiting for a store gives up with its context.
	_, done, _ := d.claim(context.Background(), "slow")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, _, err := d.claim(ctx, "slow"); err == nil {
		t.Error("a claim waiting for a store that never ends did not give up with its context")
	}
	done(true)
}

// TestDedupBounded: the table never grows; when a bucket is full of entries within the
// window, the oldest is forgotten first.
func TestDedupBounded(t *testing.T) {
	if d := newDedup(time.Hour); len(d.table) != dedupCapacity {
		t.Fatalf("table of %d entries, want %d", len(d.table), dedupCapacity)
	}
	const capacity = 4 * dedupWays
	d := newDedupOf(time.Hour, capacity)
	ctx := context.Background()
	store := func(id string) {
		dup, done, _ := d.claim(ctx, id)
		if !dup {
			done(true)
		}
	}
	for i := range 10_000 {
		store(fmt.Sprint("id-", i))
	}
	if len(d.table) != capacity || len(d.inflight) != 0 {
		t.Fatalf("table %d entries (want %d), %d in flight", len(d.table), capacity, len(d.inflight))
	}
	// Ids that land in one bucket, one more than it holds, stored oldest first.
	var same []string
	first := &d.bucket(d.key("probe-0"))[0]
	for i := 0; len(same) < dedupWays+1; i++ {
		id := fmt.Sprint("probe-", i)
		if &d.bucket(d.key(id))[0] == first {
			same = append(same, id)
		}
	}
	for _, id := range same {
		store(id)
		time.Sleep(time.Millisecond) // distinct times
	}
	if dup, done, _ := d.claim(ctx, same[0]); dup {
		t.Error("the oldest entry of a full bucket is still remembered")
	} else {
		done(false)
	}
	for _, id := range same[1:] {
		if dup, _, _ := d.claim(ctx, id); !dup {
			t.Errorf("%s, among the newest of a full bucket, was forgotten", id)
		}
	}
}
