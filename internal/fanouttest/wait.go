package fanouttest

import (
	"fmt"
	"testing"
	"time"
)

// WaitTimeout bounds a wait for something that should happen within a moment. Waits that
// span a JetStream election or an ack wait pass a longer timeout of their own.
const WaitTimeout = 30 * time.Second

// WaitFor polls cond until it holds, and fails the test, naming what it waited for, when
// timeout passes first. It is how a test waits: never a bare time.Sleep.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	poll(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// WaitForNone polls missing until it returns nothing, and fails the test with what is
// still missing when timeout passes first: for waits on many things at once (every
// acknowledged callback at a receiver), where a failure should say which ones.
func WaitForNone(t testing.TB, timeout time.Duration, what string, missing func() []string) {
	t.Helper()
	poll(t, timeout, what, func() (bool, string) {
		left := missing()
		return len(left) == 0, fmt.Sprintf("; still missing: %v", left)
	})
}

// poll runs check every few milliseconds until it reports done; at the deadline it fails
// the test with what, and the detail of the last check.
func poll(t testing.TB, timeout time.Duration, what string, check func() (done bool, detail string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, detail := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s%s", timeout, what, detail)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
