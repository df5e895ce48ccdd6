package intake

import (
	"testing"
	"time"
)

func TestDedup(t *testing.T) {
	d := newDedup(20 * time.Millisecond)
	if d.seen("a") {
		t.Fatal("seen before it was added")
	}
	d.add("a")
	if !d.seen("a") || d.seen("b") {
		t.Fatal("a not seen, or b seen")
	}
	// Entries are forgotten between one and two windows after they were added.
	deadline := time.Now().Add(5 * time.Second)
	for d.seen("a") {
		if time.Now().After(deadline) {
			t.Fatal("a is still remembered long after the window")
		}
		time.Sleep(5 * time.Millisecond)
	}

	off := newDedup(0)
	off.add("a")
	if off.seen("a") {
		t.Error("a window of 0 remembers")
	}
}
