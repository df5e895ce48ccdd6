package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestAttemptsAcrossKill follows one delivery's Fanout-Attempt across two SIGKILLs of the
// real binary: once while the delivery waits for its next attempt (it is stored as a
// schedule), once while an attempt is in flight (its number is not given again). The
// receiver answers 503 to attempts 1 to 3, holds attempt 3 until the kill, and takes the
// next one: it sees 1, 2, 3, 4, with no number repeated.
func TestAttemptsAcrossKill(t *testing.T) {
	bin := fanouttest.FanoutBinary(t)
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		switch {
		case r.N < 3:
			return fanouttest.Answer{Status: http.StatusServiceUnavailable}
		case r.N == 3:
			return fanouttest.Answer{Status: http.StatusServiceUnavailable, Delay: time.Minute} // until the kill
		}
		return fanouttest.Answer{}
	})
	// Every wait (4 s) is longer than the in-process quick retries: each failed attempt is
	// stored in the queue until due.
	config := fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
destinations:
  audit:
    url: %q
    timeout: 30s
    retry: {max_attempts: 10, backoff: {initial: 4s, max: 4s, multiplier: 1, jitter: 0}}
routes:
  - name: all
    to: [audit]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "data")), rc.URL()))

	f := fanouttest.StartFanout(t, bin, config)
	if a := f.Callback(c2cQuery, fanouttest.C2CMessage("attempts-1")); !a.OK() {
		t.Fatalf("callback: %d %s", a.Status, a.Body)
	}
	fanouttest.WaitFor(t, time.Minute, "attempt 2 answered and its retry stored", func() bool {
		r := rc.Requests()
		return len(r) == 2 && r[1].Status != 0 && strings.Contains(f.Logged("delivery failed, will retry", "attempts"), "2")
	})
	// JetStream writes down that it handed a job out a moment after it did; a kill within
	// that moment can give an attempt's number again (docs/guarantees.md). These kills come
	// later, as a crash in the middle of a retry policy does.
	time.Sleep(time.Second)
	f.Kill(t) // the delivery waits for attempt 3, stored
	f = fanouttest.StartFanout(t, bin, config)
	fanouttest.WaitFor(t, time.Minute, "attempt 3 in flight", func() bool { return rc.Count() == 3 })
	time.Sleep(time.Second)
	f.Kill(t) // attempt 3 in flight: handed out again after the ack wait
	fanouttest.StartFanout(t, bin, config)
	fanouttest.WaitFor(t, time.Minute, "the delivery", func() bool {
		r := rc.Requests()
		return len(r) == 4 && r[3].Status == http.StatusOK
	})

	var got []string
	for _, r := range rc.Requests() {
		got = append(got, r.Header.Get("Fanout-Attempt"))
	}
	t.Logf("Fanout-Attempt across two kills: %v", got)
	if want := []string{"1", "2", "3", "4"}; !slices.Equal(got, want) {
		t.Errorf("Fanout-Attempt = %v, want %v", got, want)
	}
}
