package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestCrashLosesNoAcknowledgedCallback runs the real binary under a continuous load of
// callbacks with unique MsgKeys, kills it with SIGKILL in the middle, starts it again on the
// same config and data directory, and finishes the load: every callback that was answered
// OK is delivered. A callback whose answer the crash interrupted is sent again, as Tencent
// IM would; such a callback, or a delivery the crash cut short, may arrive twice.
func TestCrashLosesNoAcknowledgedCallback(t *testing.T) {
	const (
		total   = 3000
		senders = 4
	)
	dir := t.TempDir()
	bin := fanouttest.FanoutBinary(t)

	// Until the restart the receiver takes 25 ms per request, slower than the callbacks come
	// in, so that the kill leaves stored deliveries that were not made yet, as well as
	// some in progress.
	sink := fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Delay: 25 * time.Millisecond}))
	config := fanouttest.WriteConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue:
  dir: %q
  sync: always
destinations:
  # A delivery that the kill cut short is redelivered after the ack wait (15 s).
  sink:
    url: %q
    concurrency: 8
    timeout: 2s
    retry: {backoff: {initial: 6s}}
routes:
  - name: all
    to: [sink]
`, fanouttest.App, filepath.Join(dir, "data"), sink.URL()))

	first := fanouttest.StartFanout(t, bin, config)
	var addr atomic.Pointer[string]
	addr.Store(&first.Listen)

	// The load: senders take the next MsgKey and POST it until it is answered OK, moving to
	// the new address when the process is restarted. Bounded in count and time.
	type outcome struct {
		key       string
		firstSent time.Time
		acked     time.Time
		tries     int
	}
	var (
		next     atomic.Int64
		ackedN   atomic.Int64
		retried  atomic.Int64
		mu       sync.Mutex
		outcomes []outcome
		failures []string
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(2 * time.Minute)
	for range senders {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				key := fmt.Sprintf("crash-%05d", i)
				body := fanouttest.C2CMessage(key)
				o := outcome{key: key, firstSent: time.Now()}
				for {
					o.tries++
					if o.tries > 1000 || time.Now().After(deadline) {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: no OK after %d tries", key, o.tries-1))
						mu.Unlock()
						break
					}
					if fanouttest.PostCallback(*addr.Load(), c2cQuery, body).OK() {
						o.acked = time.Now()
						ackedN.Add(1)
						break
					}
					retried.Add(1)
					time.Sleep(20 * time.Millisecond) // pacing between tries, not a wait for a condition
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		})
	}
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()

	loadStart := time.Now()
	fanouttest.WaitFor(t, 2*time.Minute, "a third of the load to be acknowledged", func() bool { return ackedN.Load() >= total/3 })
	first.Kill(t) // SIGKILL, mid-load
	killedAt := time.Now()
	ackedAtKill := ackedN.Load()
	deliveredAtKill := len(sink.Delivered())

	ackRate := float64(ackedAtKill) / killedAt.Sub(loadStart).Seconds()

	second := fanouttest.StartFanout(t, bin, config)
	addr.Store(&second.Listen)
	restartedAt := time.Now()
	sink.SetAnswer(nil)
	select {
	case <-loadDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("the load did not finish")
	}
	if len(failures) > 0 {
		t.Fatalf("%d callbacks never answered OK, e.g. %s", len(failures), failures[0])
	}

	acked := map[string]bool{}
	for _, o := range outcomes {
		acked[o.key] = true
	}
	fanouttest.WaitForNone(t, 2*time.Minute, fmt.Sprintf("the %d acknowledged callbacks at the receiver", len(acked)), func() []string {
		got := sink.Delivered()
		var missing []string
		for key := range acked {
			if got[key] == 0 {
				missing = append(missing, key)
			}
		}
		slices.Sort(missing)
		if len(missing) > 20 {
			missing = append(missing[:20], fmt.Sprintf("and %d more", len(missing)-20))
		}
		return missing
	})
	late := 0 // deliveries that waited for the ack wait (or came that late for any reason)
	for _, h := range sink.Requests() {
		if h.At.After(restartedAt.Add(20 * time.Second)) {
			late++
		}
	}
	t.Logf("all acknowledged callbacks delivered %s after the restart (%d deliveries more than 20 s after it)",
		time.Since(restartedAt).Round(time.Millisecond), late)

	got := sink.Delivered()
	duplicates, extra := 0, 0
	for key, c := range got {
		if !acked[key] {
			extra++
		}
		duplicates += c - 1
	}
	// A callback first sent after the restart was not interrupted by the crash: once.
	for _, o := range outcomes {
		if o.firstSent.After(restartedAt) && got[o.key] != 1 {
			t.Errorf("%s, sent after the restart, was delivered %d times, want once", o.key, got[o.key])
		}
	}
	if extra != 0 {
		t.Errorf("%d callbacks delivered that were never sent", extra)
	}
	if len(acked) != total {
		t.Errorf("%d callbacks acknowledged, want %d", len(acked), total)
	}
	t.Logf("crash: %d callbacks from %d senders (%.0f/s acknowledged), killed after %d were acknowledged and %d delivered, "+
		"restarted after %s; %d tries repeated around the crash; %d deliveries for %d callbacks: %d duplicates",
		total, senders, ackRate, ackedAtKill, deliveredAtKill, restartedAt.Sub(killedAt).Round(time.Millisecond),
		retried.Load(), sink.Count(), len(got), duplicates)
	if ackedAtKill-int64(deliveredAtKill) < 50 {
		t.Errorf("only %d stored deliveries were waiting at the kill: the crash did not test what it should", ackedAtKill-int64(deliveredAtKill))
	}

	// The second process stops cleanly on SIGTERM.
	second.Stop(t)
}
