package delivery

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// accountOf is the To_Account of a recorded request's body.
func accountOf(r fanouttest.Request) string {
	var b struct{ To_Account string }
	_ = json.Unmarshal(r.Body, &b)
	return b.To_Account
}

// accountJob is a job for dest whose callback is addressed to account.
func accountJob(dest string, i int, account string) queue.Job {
	j := jobFor(dest, i)
	j.Body = []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","To_Account":"` + account + `","MsgSeq":` + strconv.Itoa(i) + `}`)
	return j
}

// startWorker runs a Worker for d on q the way the gateway does: slots for d's concurrency,
// admission before each job, a window larger than the concurrency. stop ends the rounds in
// flight and the consumption, as a graceful stop of the gateway does.
func startWorker(t *testing.T, q *queue.Queue, d *Destination, concurrency, window int) (stop func()) {
	t.Helper()
	return startWorkerWith(t, q, d, concurrency, window, nil)
}

// startWorkerWith is startWorker with a breaker (nil: never paused).
func startWorkerWith(t *testing.T, q *queue.Queue, d *Destination, concurrency, window int, b *Breaker) (stop func()) {
	t.Helper()
	d.Slots = NewSlots(concurrency)
	cur, _ := current(d)
	w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur, Breaker: b, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := q.Consume(ctx, d.Name, queue.ConsumeOptions{Window: window, AckWait: AckWait, Admit: w.Admit}, w.Handle)
	if err != nil {
		cancel()
		t.Fatalf("Consume: %v", err)
	}
	stop = func() {
		cancel()
		c.Stop()
	}
	t.Cleanup(stop)
	return stop
}

// TestPoisonJobsDoNotBlock: a receiver rejects every callback for two accounts with 500,
// forever, and takes the rest. With concurrency 2, the rest is delivered while the poison
// jobs wait for their retries, which hold no slot: every good job arrives before any poison
// job's third attempt.
func TestPoisonJobsDoNotBlock(t *testing.T) {
	t.Parallel()
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if a := accountOf(r); a == "poison-1" || a == "poison-2" {
			return fanouttest.Answer{Status: http.StatusInternalServerError}
		}
		return fanouttest.Answer{}
	})
	q := openQueue(t)
	// Every wait is longer than QuickRetryMax: each failed attempt goes back to the queue.
	d := testDestination(t, rc.URL(), func(d *Destination) {
		d.Policy = Policy{MaxAttempts: 100, Initial: 3 * time.Second, Max: 3 * time.Second, Multiplier: 1}
	})
	startWorker(t, q, d, 2, 8)

	// The poison jobs first, so that they hold the two slots if anything does.
	const good = 200
	var jobs []queue.Job
	jobs = append(jobs, accountJob("audit", 0, "poison-1"), accountJob("audit", 1, "poison-2"))
	for i := range good {
		jobs = append(jobs, accountJob("audit", 2+i, "good-"+strconv.Itoa(i)))
	}
	enqueue(t, q, jobs...)

	fanouttest.WaitFor(t, waitTimeout, "every good job delivered", func() bool {
		n := 0
		for _, r := range rc.Requests() {
			if accountOf(r) != "poison-1" && accountOf(r) != "poison-2" {
				n++
			}
		}
		return n == good
	})
	// The order of arrival, not a timing: no poison job made its third attempt before the
	// last good job arrived.
	poison := map[string]int{}
	for _, r := range rc.Requests() {
		if a := accountOf(r); a == "poison-1" || a == "poison-2" {
			poison[a]++
			if poison[a] >= 3 {
				t.Fatalf("%s made attempt %d before every good job was delivered", a, poison[a])
			}
		}
	}
	fanouttest.WaitFor(t, waitTimeout, "the poison jobs to keep retrying", func() bool {
		n := 0
		for _, r := range rc.Requests() {
			if a := accountOf(r); a == "poison-1" {
				n++
			}
		}
		return n >= 2
	})
	var seen []string
	for _, r := range rc.Requests() {
		if accountOf(r) == "poison-1" {
			seen = append(seen, r.Header.Get("Fanout-Attempt"))
		}
	}
	if !slices.Equal(seen[:2], []string{"1", "2"}) {
		t.Errorf("poison-1 Fanout-Attempt = %v, want 1, 2, ...", seen)
	}
}

// TestConcurrencyBoundsRequestsInFlight: with concurrency 3 and a window of 20, the receiver
// never sees more than 3 requests at once, and sees 3 at once when jobs wait.
func TestConcurrencyBoundsRequestsInFlight(t *testing.T) {
	t.Parallel()
	rc := fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Delay: 20 * time.Millisecond}))
	q := openQueue(t)
	d := testDestination(t, rc.URL(), nil)
	startWorker(t, q, d, 3, 20)
	var jobs []queue.Job
	for i := range 60 {
		jobs = append(jobs, jobFor("audit", i))
	}
	enqueue(t, q, jobs...)
	fanouttest.WaitFor(t, waitTimeout, "every job delivered", func() bool { return len(rc.Requests()) == 60 && pending(t, q, "audit") == 0 })
	if m := rc.MaxInFlight(); m != 3 {
		t.Errorf("at most %d requests in flight, want exactly 3 (the concurrency)", m)
	}
}

// TestAttemptsAcrossStop: a job that failed attempt 1 and is between two quick attempts when
// its consumer stops is handed back at once, and the next consumer continues with attempt
// 2: no number is given twice or skipped.
func TestAttemptsAcrossStop(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	fail := true
	rc := fanouttest.NewReceiver(t, func(fanouttest.Request) fanouttest.Answer {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return fanouttest.Answer{Status: http.StatusServiceUnavailable}
		}
		return fanouttest.Answer{}
	})
	q := openQueue(t)
	// The first wait (1 s) is quick: the round sleeps in-process after attempt 1.
	d := testDestination(t, rc.URL(), func(d *Destination) {
		d.Policy = Policy{MaxAttempts: 10, Initial: time.Second, Max: time.Minute, Multiplier: 2}
	})
	stop := startWorker(t, q, d, 1, 4)
	enqueue(t, q, jobFor("audit", 1))
	fanouttest.WaitFor(t, waitTimeout, "attempt 1", func() bool { return len(rc.Requests()) == 1 })
	stop() // during the quick wait
	// The copy in hand is acknowledged once the new one is stored (the ack is asynchronous).
	fanouttest.WaitFor(t, waitTimeout, "the job handed back, one copy", func() bool { return pending(t, q, "audit") == 1 })
	mu.Lock()
	fail = false
	mu.Unlock()
	startWorker(t, q, d, 1, 4)
	fanouttest.WaitFor(t, waitTimeout, "the delivery", func() bool { return len(rc.Requests()) == 2 && pending(t, q, "audit") == 0 })
	var got []string
	for _, r := range rc.Requests() {
		got = append(got, r.Header.Get("Fanout-Attempt"))
	}
	if want := []string{"1", "2"}; !slices.Equal(got, want) {
		t.Errorf("Fanout-Attempt = %v, want %v", got, want)
	}
}

// TestPausedWithFullWindow: a destination is down long enough to be paused while it has more
// jobs in hand than slots, and quick retries (their waits are short). The jobs admitted
// during the pause hold every slot while they wait for the probe; the probe and the rounds
// between two quick attempts must not wait for a slot, or nothing moves again. Once the
// receiver answers, everything is delivered.
func TestPausedWithFullWindow(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	rc := fanouttest.NewReceiver(t, func(fanouttest.Request) fanouttest.Answer {
		if up.Load() {
			return fanouttest.Answer{}
		}
		return fanouttest.Answer{Status: http.StatusServiceUnavailable}
	})
	q := openQueue(t)
	// Rounds of 5 quick attempts (waits of 20 to 320 ms), then a wait in the queue.
	d := testDestination(t, rc.URL(), func(d *Destination) {
		d.Policy = Policy{MaxAttempts: 1000, Initial: 20 * time.Millisecond, Max: 5 * time.Second, Multiplier: 4}
	})
	b := NewBreaker(nil)
	startWorkerWith(t, q, d, 2, 12, b)
	const n = 30
	var jobs []queue.Job
	for i := range n {
		jobs = append(jobs, jobFor("audit", i))
	}
	enqueue(t, q, jobs...)
	var first time.Time
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the destination paused, and a probe failed", func() bool {
		paused, until := b.Paused()
		if paused && first.IsZero() {
			first = until
		}
		return paused && until.After(first)
	})
	up.Store(true)
	fanouttest.WaitForNone(t, fanouttest.WaitTimeout, "every job delivered", func() []string {
		delivered := map[string]bool{}
		for _, r := range rc.Requests() {
			if r.Status < 300 {
				delivered[r.Header.Get("Webhook-Id")] = true
			}
		}
		var missing []string
		for _, j := range jobs {
			if !delivered[webhookID(d, j)] {
				missing = append(missing, j.EventID)
			}
		}
		return missing
	})
}
