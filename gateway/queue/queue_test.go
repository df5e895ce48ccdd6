package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

func TestEnqueueConsumeAck(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	destinations := []string{"app-backend", "audit", "oncall_bot"}
	var jobs []Job
	for _, d := range destinations {
		jobs = append(jobs, testJob("1", d))
	}
	if err := q.Enqueue(ctx, jobs); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}

	for i, d := range destinations {
		t.Run(d, func(t *testing.T) {
			if n := pending(t, q, d); n != 1 {
				t.Fatalf("Pending before consuming = %d, want 1", n)
			}
			var r recorder
			consume(t, q, d, 4, r.handle)
			fanouttest.WaitFor(t, waitTimeout, "the job to be acknowledged", func() bool { return pending(t, q, d) == 0 })
			got := r.deliveries()
			if len(got) != 1 {
				t.Fatalf("got %d deliveries, want 1", len(got))
			}
			if diff := sameJob(got[0].job, jobs[i]); diff != "" {
				t.Errorf("delivered job: %s", diff)
			}
			if got[0].attempt != 1 {
				t.Errorf("Attempt() = %d, want 1", got[0].attempt)
			}
			if len(r.errs) > 0 {
				t.Errorf("Ack: %v", r.errs)
			}
		})
	}
}

func TestEnqueueRejects(t *testing.T) {
	q := openTest(t, "")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		job  Job
	}{
		{"dot in destination", context.Background(), testJob("1", "a.b")},
		{"wildcard destination", context.Background(), testJob("1", "*")},
		{"empty destination", context.Background(), testJob("1", "")},
		{"context done", cancelled, testJob("1", "ok")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := q.Enqueue(tt.ctx, []Job{tt.job}); err == nil {
				t.Fatal("Enqueue succeeded, want an error")
			}
		})
	}
	if dests, err := q.QueuedDestinations(testContext(t)); err != nil || len(dests) != 0 {
		t.Errorf("QueuedDestinations = %v, %v; want nothing stored", dests, err)
	}
}

func TestDuplicateSuppressedWithinDedupWindow(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	jobs := []Job{testJob("dup", "a"), testJob("dup", "b")}
	for range 2 {
		if err := q.Enqueue(ctx, jobs); err != nil {
			t.Fatalf("Enqueue: %v", err) // a duplicate is acknowledged
		}
	}
	for _, d := range []string{"a", "b"} {
		if n := pending(t, q, d); n != 1 {
			t.Errorf("Pending(%q) = %d after enqueueing twice, want 1", d, n)
		}
	}

	// Consume up to a job enqueued afterwards: stream order guarantees a
	// stored duplicate would have come before it.
	sentinel := testJob("sentinel", "a")
	if err := q.Enqueue(ctx, []Job{sentinel}); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	var r recorder
	consume(t, q, "a", 1, r.handle)
	fanouttest.WaitFor(t, waitTimeout, "the sentinel", func() bool {
		got := r.deliveries()
		return len(got) > 0 && got[len(got)-1].job.EventID == sentinel.EventID
	})
	if got := r.deliveries(); len(got) != 2 {
		t.Errorf("got %d deliveries (duplicate + sentinel), want 2", len(got))
	}
}

// TestLaterRedeliversWhenDue: a job stored back with Later(attempt 2, due) is delivered
// again, unchanged but for its attempt, as attempt 2; until it is due the consumer goes on
// with the jobs behind it. Checked by order, not with a stopwatch: a job retried in an hour
// is overtaken by one enqueued after the retry.
func TestLaterRedeliversWhenDue(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	var laterRetried atomic.Bool
	r := recorder{act: func(m *Message) {
		delay := map[string]time.Duration{"ev-1": 200 * time.Millisecond, "ev-later": time.Hour}[m.Job.EventID]
		if m.Attempt() == 1 && delay > 0 {
			if err := m.Later(context.Background(), m.Attempt()+1, time.Now().Add(delay)); err != nil {
				t.Errorf("Later: %v", err)
			}
			laterRetried.Store(m.Job.EventID == "ev-later")
			return
		}
		if err := m.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
	}}
	consume(t, q, "flaky", 2, r.handle)

	if err := q.Enqueue(ctx, []Job{testJob("1", "flaky")}); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	fanouttest.WaitFor(t, waitTimeout, "the redelivery", func() bool { return r.count() == 2 })
	got := r.deliveries()
	if got[0].attempt != 1 || got[1].attempt != 2 {
		t.Errorf("attempts = %d, %d; want 1, 2", got[0].attempt, got[1].attempt)
	}
	want := testJob("1", "flaky")
	want.Attempt = 2
	if diff := sameJob(got[1].job, want); diff != "" {
		t.Errorf("redelivered job: %s", diff)
	}
	fanouttest.WaitFor(t, waitTimeout, "the ack", func() bool { return pending(t, q, "flaky") == 0 })

	// A job retried in an hour, then one enqueued once that retry is made: the second is
	// delivered, the first is not delivered again meanwhile.
	if err := q.Enqueue(ctx, []Job{testJob("later", "flaky")}); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	fanouttest.WaitFor(t, waitTimeout, "the retry in an hour", laterRetried.Load)
	if err := q.Enqueue(ctx, []Job{testJob("after", "flaky")}); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	fanouttest.WaitFor(t, waitTimeout, "the job enqueued after the retry, acknowledged", func() bool {
		return slices.ContainsFunc(r.deliveries(), func(d delivery) bool { return d.job.EventID == "ev-after" }) &&
			pending(t, q, "flaky") < 2
	})
	var order []string
	for _, d := range r.deliveries()[2:] {
		order = append(order, fmt.Sprintf("%s#%d", d.job.EventID, d.attempt))
	}
	if want := []string{"ev-later#1", "ev-after#1"}; !slices.Equal(order, want) {
		t.Errorf("deliveries after the retry in an hour: %v, want %v", order, want)
	}
	if n := pending(t, q, "flaky"); n != 1 {
		t.Errorf("Pending = %d, want 1: the job retried in an hour", n)
	}
}

// gate is a handler that holds every message until released, counting the
// handlers running at once.
type gate struct {
	running, maxRunning, handled atomic.Int64
	release                      chan struct{}
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) handle(_ context.Context, m *Message) {
	n := g.running.Add(1)
	for {
		old := g.maxRunning.Load()
		if n <= old || g.maxRunning.CompareAndSwap(old, n) {
			break
		}
	}
	<-g.release
	g.running.Add(-1)
	if err := m.Ack(); err == nil {
		g.handled.Add(1)
	}
}

func enqueueN(t testing.TB, q *Queue, destination string, n int) {
	t.Helper()
	jobs := make([]Job, n)
	for i := range jobs {
		jobs[i] = testJob(fmt.Sprint(i), destination)
	}
	if err := q.Enqueue(testContext(t), jobs); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
}

func TestMaxInFlightBoundsHandlers(t *testing.T) {
	tests := []struct {
		name         string
		consumptions int // several play replicas sharing the consumer
		maxInFlight  int
	}{
		{"one consumption", 1, 3},
		{"two replicas share the limit", 2, 3},
		{"one at a time", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := openTest(t, "")
			const jobs = 30
			enqueueN(t, q, "d", jobs)
			g := newGate()
			for range tt.consumptions {
				consume(t, q, "d", tt.maxInFlight, g.handle)
			}
			fanouttest.WaitFor(t, waitTimeout, "the handlers to fill the limit", func() bool { return g.running.Load() == int64(tt.maxInFlight) })
			close(g.release)
			fanouttest.WaitFor(t, waitTimeout, "every job", func() bool { return g.handled.Load() == jobs })
			if got := g.maxRunning.Load(); got != int64(tt.maxInFlight) {
				t.Errorf("max handlers in flight = %d, want %d", got, tt.maxInFlight)
			}
		})
	}
}

func TestConsumeAgainUpdatesTheConsumer(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	g := newGate()
	old, err := q.Consume(ctx, "d", ConsumeOptions{Window: 2, AckWait: 10 * time.Second}, g.handle)
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	renewed := consume(t, q, "d", 5, g.handle)
	old.Stop()
	_ = renewed

	cons, err := q.jobs.Consumer(ctx, consumerName("d"))
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	cfg := cons.CachedInfo().Config
	if cfg.MaxAckPending != 5 || cfg.AckWait != 30*time.Second || cfg.MaxDeliver != -1 || cfg.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("consumer config: MaxAckPending %d, AckWait %s, MaxDeliver %d, AckPolicy %s; want 5, 30s, -1, explicit",
			cfg.MaxAckPending, cfg.AckWait, cfg.MaxDeliver, cfg.AckPolicy)
	}

	const jobs = 20
	enqueueN(t, q, "d", jobs)
	fanouttest.WaitFor(t, waitTimeout, "5 handlers", func() bool { return g.running.Load() == 5 })
	close(g.release)
	fanouttest.WaitFor(t, waitTimeout, "every job", func() bool { return g.handled.Load() == jobs })
	if got := g.maxRunning.Load(); got != 5 {
		t.Errorf("max handlers in flight = %d, want 5", got)
	}
}

func TestStopWaitsForHandlers(t *testing.T) {
	q := openTest(t, "")
	started := make(chan struct{})
	var finished atomic.Bool
	release := make(chan struct{})
	c, err := q.Consume(context.Background(), "d", ConsumeOptions{Window: 1, AckWait: 30 * time.Second}, func(_ context.Context, m *Message) {
		close(started)
		<-release
		m.Ack()
		finished.Store(true)
	})
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	enqueueN(t, q, "d", 1)
	<-started
	stopped := make(chan struct{})
	go func() { c.Stop(); close(stopped) }()
	fanouttest.WaitFor(t, waitTimeout, "Stop to begin", c.(*consumption).stopped)
	select {
	case <-stopped:
		t.Fatal("Stop returned while a handler was in flight")
	default:
	}
	close(release)
	<-stopped
	if !finished.Load() {
		t.Error("Stop returned before the handler in flight finished")
	}
	c.Stop() // idempotent
}

func TestConsumeStopsWhenContextEnds(t *testing.T) {
	q := openTest(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	var r recorder
	c, err := q.Consume(ctx, "d", ConsumeOptions{Window: 2, AckWait: 30 * time.Second}, r.handle)
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	cancel()
	c.Stop() // returns: the consumption ended with its context
	enqueueN(t, q, "d", 1)
	if n := pending(t, q, "d"); n != 1 {
		t.Errorf("Pending = %d, want the job left for a later consumer", n)
	}
}

func TestDeadLetters(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)

	// Phase one dead-letters two jobs of "a", phase two three of "b"; mark
	// separates them in time.
	deadLetterAll := func(destination string, n int, info DeadLetterInfo) {
		t.Helper()
		enqueueN(t, q, destination, n)
		var done atomic.Int64
		c := consume(t, q, destination, 2, func(ctx context.Context, m *Message) {
			if err := q.DeadLetter(ctx, m, info); err != nil {
				t.Errorf("DeadLetter: %v", err)
			}
			done.Add(1)
		})
		fanouttest.WaitFor(t, waitTimeout, "the dead letters", func() bool { return done.Load() == int64(n) })
		c.Stop()
		if p := pending(t, q, destination); p != 0 {
			t.Errorf("Pending(%q) = %d after DeadLetter, want 0 (acknowledged)", destination, p)
		}
	}
	first := time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)
	infoA := DeadLetterInfo{Reason: "status 400", LastStatus: 400, BodyExcerpt: `{"error":"bad"}`, Attempts: 1, FirstAttempt: first, LastAttempt: first}
	infoB := DeadLetterInfo{Reason: "max attempts", LastStatus: 503, LastError: `destination "b": POST: status 503`,
		Attempts: 12, FirstAttempt: first, LastAttempt: first.Add(time.Hour)}
	deadLetterAll("a", 2, infoA)
	mark := time.Now()
	for time.Now().Equal(mark) { // the clock must move past mark
	}
	deadLetterAll("b", 3, infoB)

	all, next, err := q.ListDeadLetters(ctx, DeadLetterFilter{}, 0, 100)
	if err != nil || next != 0 || len(all) != 5 {
		t.Fatalf("ListDeadLetters() = %d items, next %d, %v; want 5, 0, nil", len(all), next, err)
	}
	for i, dl := range all {
		if i > 0 && dl.ID <= all[i-1].ID {
			t.Errorf("ids not ascending: %d after %d", dl.ID, all[i-1].ID)
		}
		want, info := testJob(dl.EventID[len("ev-"):], "a"), infoA
		if i >= 2 {
			want, info = testJob(dl.EventID[len("ev-"):], "b"), infoB
		}
		if diff := sameJob(dl.Job, want); diff != "" {
			t.Errorf("dead letter %d job: %s", dl.ID, diff)
		}
		if dl.Reason != info.Reason || dl.LastStatus != info.LastStatus || dl.BodyExcerpt != info.BodyExcerpt || dl.LastError != info.LastError ||
			dl.Attempts != info.Attempts || !dl.FirstAttempt.Equal(info.FirstAttempt) || !dl.LastAttempt.Equal(info.LastAttempt) {
			t.Errorf("dead letter %d info = %+v, want %+v", dl.ID, dl.DeadLetterInfo, info)
		}
		if dl.DeadAt.IsZero() {
			t.Errorf("dead letter %d has no DeadAt", dl.ID)
		}
	}
	ids := func(items []DeadLetter) []uint64 {
		var out []uint64
		for _, dl := range items {
			out = append(out, dl.ID)
		}
		return out
	}
	allIDs := ids(all)

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			name   string
			filter DeadLetterFilter
			want   []uint64
		}{
			{"destination", DeadLetterFilter{Destination: "b"}, allIDs[2:]},
			{"reason substring", DeadLetterFilter{Reason: "400"}, allIDs[:2]},
			{"since", DeadLetterFilter{Since: mark}, allIDs[2:]},
			{"until", DeadLetterFilter{Until: mark}, allIDs[:2]},
			{"destination and reason", DeadLetterFilter{Destination: "a", Reason: "attempts"}, nil},
			{"unknown destination", DeadLetterFilter{Destination: "nope"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, next, err := q.ListDeadLetters(ctx, tt.filter, 0, 100)
				if err != nil || next != 0 || !slices.Equal(ids(got), tt.want) {
					t.Errorf("ListDeadLetters(%+v) = %v, next %d, %v; want %v, 0, nil", tt.filter, ids(got), next, err, tt.want)
				}
			})
		}
	})

	t.Run("paging", func(t *testing.T) {
		var pages [][]uint64
		after := uint64(0)
		for range 10 {
			items, next, err := q.ListDeadLetters(ctx, DeadLetterFilter{}, after, 2)
			if err != nil {
				t.Fatalf("ListDeadLetters(after %d): %v", after, err)
			}
			pages = append(pages, ids(items))
			if next == 0 {
				break
			}
			after = next
		}
		want := [][]uint64{allIDs[0:2], allIDs[2:4], allIDs[4:5]}
		if !slices.EqualFunc(pages, want, slices.Equal) {
			t.Errorf("pages = %v, want %v", pages, want)
		}
		items, next, err := q.ListDeadLetters(ctx, DeadLetterFilter{Destination: "b"}, allIDs[2], 2)
		if err != nil || next != 0 || !slices.Equal(ids(items), allIDs[3:]) {
			t.Errorf("filtered page after %d = %v, next %d, %v; want %v, 0", allIDs[2], ids(items), next, err, allIDs[3:])
		}
	})

	t.Run("get", func(t *testing.T) {
		got, err := q.GetDeadLetter(ctx, all[3].ID)
		if err != nil {
			t.Fatalf("GetDeadLetter: %v", err)
		}
		if diff := sameJob(got.Job, all[3].Job); diff != "" || got.ID != all[3].ID || got.Reason != all[3].Reason || !got.DeadAt.Equal(all[3].DeadAt) {
			t.Errorf("GetDeadLetter = %+v, want %+v (%s)", got, all[3], diff)
		}
		for _, id := range []uint64{0, allIDs[4] + 100} {
			if _, err := q.GetDeadLetter(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetDeadLetter(%d) error = %v, want ErrNotFound", id, err)
			}
		}
	})

	t.Run("count", func(t *testing.T) {
		for d, want := range map[string]int{"": 5, "a": 2, "b": 3, "c": 0} {
			if n, err := q.DeadLetterCount(ctx, d); err != nil || n != want {
				t.Errorf("DeadLetterCount(%q) = %d, %v; want %d", d, n, err, want)
			}
		}
	})

	t.Run("replay", func(t *testing.T) {
		replayed := all[2]
		before := time.Now()
		if err := q.ReplayDeadLetter(ctx, replayed.ID); err != nil {
			t.Fatalf("ReplayDeadLetter: %v", err)
		}
		if _, err := q.GetDeadLetter(ctx, replayed.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("dead letter still there after replay: %v", err)
		}
		if err := q.ReplayDeadLetter(ctx, replayed.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("second ReplayDeadLetter error = %v, want ErrNotFound", err)
		}
		var r recorder
		consume(t, q, "b", 1, r.handle)
		fanouttest.WaitFor(t, waitTimeout, "the replayed job", func() bool { return r.count() == 1 && pending(t, q, "b") == 0 })
		got := r.deliveries()[0]
		// A replay is a new series of attempts: its max_age counts from the replay.
		if since := got.job.AttemptsSince(); since.Before(before) || !got.job.ReceivedAt.Equal(replayed.ReceivedAt) {
			t.Errorf("replayed job: AttemptsSince %v, ReceivedAt %v; want the replay time (after %v) and the original %v",
				since, got.job.ReceivedAt, before, replayed.ReceivedAt)
		}
		got.job.Since = time.Time{}
		if diff := sameJob(got.job, replayed.Job); diff != "" {
			t.Errorf("replayed job: %s", diff)
		}
		if got.attempt != 1 {
			t.Errorf("replayed job Attempt() = %d, want 1", got.attempt)
		}
		if n, _ := q.DeadLetterCount(ctx, "b"); n != 2 {
			t.Errorf("DeadLetterCount(b) after replay = %d, want 2", n)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := q.DeleteDeadLetter(ctx, all[0].ID); err != nil {
			t.Fatalf("DeleteDeadLetter: %v", err)
		}
		if _, err := q.GetDeadLetter(ctx, all[0].ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetDeadLetter after delete error = %v, want ErrNotFound", err)
		}
		if err := q.DeleteDeadLetter(ctx, all[0].ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("second DeleteDeadLetter error = %v, want ErrNotFound", err)
		}
		got, _, err := q.ListDeadLetters(ctx, DeadLetterFilter{}, 0, 100)
		if want := []uint64{allIDs[1], allIDs[3], allIDs[4]}; err != nil || !slices.Equal(ids(got), want) {
			t.Errorf("ListDeadLetters after replay and delete = %v, %v; want %v", ids(got), err, want)
		}
	})
}

func TestDeadLetterTwiceIsStoredOnce(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	enqueueN(t, q, "d", 1)
	var attempts atomic.Int64
	// The first DeadLetter is stored but its message is left unacknowledged,
	// as after a crash between the two steps; the redelivery dead-letters again.
	consume(t, q, "d", 1, func(ctx context.Context, m *Message) {
		attempts.Add(1)
		if m.Attempt() == 1 {
			if err := q.publishDeadLetter(ctx, &m.Job, m.seq, DeadLetterInfo{Reason: "first"}); err != nil {
				t.Errorf("publishDeadLetter: %v", err)
			}
			m.msg.Nak() // left to JetStream, like a copy whose handler died
			return
		}
		if err := q.DeadLetter(ctx, m, DeadLetterInfo{Reason: "second"}); err != nil {
			t.Errorf("DeadLetter: %v", err)
		}
	})
	fanouttest.WaitFor(t, waitTimeout, "the job to leave the queue", func() bool { return attempts.Load() == 2 && pending(t, q, "d") == 0 })
	items, _, err := q.ListDeadLetters(ctx, DeadLetterFilter{}, 0, 10)
	if err != nil || len(items) != 1 || items[0].Reason != "first" {
		t.Errorf("dead letters = %+v, %v; want the first one only", items, err)
	}
}

func TestUndecodableJobIsDeadLettered(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	if _, err := q.js.Publish(ctx, jobsSubjectPrefix+"d", []byte("not a job frame")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	var r recorder
	var admitted atomic.Int32 // what Admit reserves is the handler's to release: none runs
	c, err := q.Consume(context.Background(), "d", ConsumeOptions{Window: 1, AckWait: 30 * time.Second,
		Admit: func(context.Context) error { admitted.Add(1); return nil }}, r.handle)
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	t.Cleanup(c.Stop)
	fanouttest.WaitFor(t, waitTimeout, "the dead letter", func() bool {
		n, err := q.DeadLetterCount(ctx, "d")
		return err == nil && n == 1
	})
	items, _, err := q.ListDeadLetters(ctx, DeadLetterFilter{Reason: "undecodable job"}, 0, 10)
	if err != nil || len(items) != 1 || string(items[0].Body) != "not a job frame" {
		t.Errorf("dead letters = %+v, %v; want the raw message", items, err)
	}
	fanouttest.WaitFor(t, waitTimeout, "the ack", func() bool { return pending(t, q, "d") == 0 })
	if r.count() != 0 || admitted.Load() != 0 {
		t.Errorf("the handler got %d undecodable messages, %d admitted", r.count(), admitted.Load())
	}
}

func TestPending(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	var jobs []Job
	for i := range 3 {
		j := testJob(fmt.Sprint(i), "d")
		j.ReceivedAt = jobClock.Add(time.Duration(i) * time.Second)
		jobs = append(jobs, j)
	}
	jobs = append(jobs, testJob("other", "other"))
	if err := q.Enqueue(ctx, jobs); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}

	check := func(destination string, wantN int, wantOldest time.Time) {
		t.Helper()
		n, oldest, err := q.Pending(ctx, destination)
		if err != nil || n != wantN || !oldest.Equal(wantOldest) {
			t.Errorf("Pending(%q) = %d, %v, %v; want %d, %v", destination, n, oldest, err, wantN, wantOldest)
		}
	}
	check("d", 3, jobClock)
	check("other", 1, jobClock)
	check("none", 0, time.Time{})

	// A job in flight is still pending; once acknowledged the next is oldest.
	held := make(chan *Message, 3)
	consume(t, q, "d", 1, func(_ context.Context, m *Message) { held <- m })
	m := <-held
	check("d", 3, jobClock)
	if err := m.Ack(); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	fanouttest.WaitFor(t, waitTimeout, "the ack", func() bool { return pending(t, q, "d") == 2 })
	check("d", 2, jobClock.Add(time.Second))
}

func TestRemoveDestination(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	enqueueN(t, q, "gone", 3)
	enqueueN(t, q, "stay", 1)
	// "idle" has a consumer and no job.
	c := consume(t, q, "idle", 1, (&recorder{}).handle)
	c.Stop()
	// "gone" had a consumer, which holds one job unacknowledged when it stops.
	held := make(chan *Message, 1)
	c = consume(t, q, "gone", 1, func(_ context.Context, m *Message) { held <- m })
	<-held
	c.Stop()

	dests, err := q.QueuedDestinations(ctx)
	if want := []string{"gone", "idle", "stay"}; err != nil || !slices.Equal(dests, want) {
		t.Fatalf("QueuedDestinations = %v, %v; want %v", dests, err, want)
	}

	moved, err := q.RemoveDestination(ctx, "gone", "destination removed", nil)
	if err != nil || moved != 3 {
		t.Fatalf("RemoveDestination = %d, %v; want 3, nil", moved, err)
	}
	if n := pending(t, q, "gone"); n != 0 {
		t.Errorf("Pending(gone) = %d after removal, want 0", n)
	}
	items, _, err := q.ListDeadLetters(ctx, DeadLetterFilter{Destination: "gone", Reason: "destination removed"}, 0, 10)
	if err != nil || len(items) != 3 {
		t.Fatalf("dead letters of gone = %d, %v; want 3", len(items), err)
	}
	for i, dl := range items {
		if diff := sameJob(dl.Job, testJob(fmt.Sprint(i), "gone")); diff != "" {
			t.Errorf("dead letter %d: %s", i, diff)
		}
	}
	if _, err := q.RemoveDestination(ctx, "idle", "destination removed", nil); err != nil {
		t.Fatalf("RemoveDestination(idle): %v", err)
	}
	dests, err = q.QueuedDestinations(ctx)
	if want := []string{"stay"}; err != nil || !slices.Equal(dests, want) {
		t.Errorf("QueuedDestinations after removal = %v, %v; want %v", dests, err, want)
	}
	if n := pending(t, q, "stay"); n != 1 {
		t.Errorf("Pending(stay) = %d, want 1: another destination is untouched", n)
	}
}

func TestJobsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir)
	enqueueN(t, q, "d", 3)
	held := make(chan *Message, 3)
	c := consume(t, q, "d", 1, func(_ context.Context, m *Message) { held <- m })
	acked := <-held
	if err := acked.Ack(); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	<-held // in flight, never acknowledged
	c.Stop()
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	q = openTest(t, dir)
	var r recorder
	// The job left in flight comes back after the ack wait, kept short here.
	consumeAckWait(t, q, "d", 2, 500*time.Millisecond, r.handle)
	fanouttest.WaitFor(t, waitTimeout, "the jobs left", func() bool { return pending(t, q, "d") == 0 })
	var got []string
	for _, d := range r.deliveries() {
		got = append(got, d.job.EventID)
	}
	slices.Sort(got)
	if want := []string{"ev-1", "ev-2"}; !slices.Equal(got, want) {
		t.Errorf("after restart got %v, want %v (the acknowledged ev-0 gone)", got, want)
	}
}

func TestAfterClose(t *testing.T) {
	q := openTest(t, "")
	if !q.Connected() {
		t.Fatal("Connected() = false on an open embedded queue")
	}
	c := consume(t, q, "d", 1, (&recorder{}).handle)
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c.Stop() // already stopped by Close
	if err := q.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if q.Connected() {
		t.Error("Connected() = true after Close")
	}
	ctx := testContext(t)
	if err := q.Enqueue(ctx, []Job{testJob("1", "d")}); err == nil {
		t.Error("Enqueue after Close succeeded")
	}
	if _, err := q.Consume(ctx, "d", ConsumeOptions{Window: 1, AckWait: time.Second}, (&recorder{}).handle); err == nil {
		t.Error("Consume after Close succeeded")
	}
	if _, _, err := q.Pending(ctx, "d"); err == nil {
		t.Error("Pending after Close succeeded")
	}
}

func TestOpenRejects(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"neither dir nor url", Options{}},
		{"both dir and url", Options{Dir: t.TempDir(), URL: "nats://127.0.0.1:4222"}},
		{"replicas without a cluster", Options{Dir: t.TempDir(), Replicas: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if q, err := Open(testContext(t), tt.o); err == nil {
				q.Close()
				t.Fatal("Open succeeded, want an error")
			}
		})
	}
}

func TestConcurrentEnqueue(t *testing.T) {
	q := openTest(t, "")
	const writers, perWriter = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				ev := fmt.Sprintf("%d-%d", w, i)
				if err := q.Enqueue(context.Background(), []Job{testJob(ev, "a"), testJob(ev, "b")}); err != nil {
					t.Errorf("Enqueue: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, d := range []string{"a", "b"} {
		if n := pending(t, q, d); n != writers*perWriter {
			t.Errorf("Pending(%q) = %d, want %d", d, n, writers*perWriter)
		}
	}
}

// TestBacklogBound: past its bound, a destination's new jobs are stored as dead letters
// with reason "backlog full", counted; other destinations are not affected; and once the
// backlog drains below the bound, new jobs are queued again.
func TestBacklogBound(t *testing.T) {
	var mu sync.Mutex
	diverted := map[string]int{}
	q := openWith(t, Options{Dir: t.TempDir(), BacklogFull: func(d string) {
		mu.Lock()
		diverted[d]++
		mu.Unlock()
	}})
	ctx := testContext(t)
	q.SetBacklogLimits(map[string]BacklogLimit{"bounded": {Jobs: 3}})
	for i := range 3 {
		if err := q.Enqueue(ctx, []Job{testJob(fmt.Sprint(i), "bounded"), testJob(fmt.Sprint(i), "free")}); err != nil {
			t.Fatalf("Enqueue %d: %v", i, err)
		}
	}
	fanouttest.WaitFor(t, waitTimeout, "the bound to be seen", func() bool { return q.BacklogFull("bounded") })
	if q.BacklogFull("free") {
		t.Error(`BacklogFull("free") = true, want false: it has no bound`)
	}
	for i := 3; i < 5; i++ {
		if err := q.Enqueue(ctx, []Job{testJob(fmt.Sprint(i), "bounded"), testJob(fmt.Sprint(i), "free")}); err != nil {
			t.Fatalf("Enqueue %d: %v", i, err)
		}
	}
	if n := pending(t, q, "bounded"); n != 3 {
		t.Errorf("bounded: pending %d, want 3", n)
	}
	if n := pending(t, q, "free"); n != 5 {
		t.Errorf("free: pending %d, want 5", n)
	}
	items, _, err := q.ListDeadLetters(ctx, DeadLetterFilter{Destination: "bounded"}, 0, 10)
	if err != nil || len(items) != 2 {
		t.Fatalf("dead letters of bounded = %d, %v; want 2", len(items), err)
	}
	for _, dl := range items {
		if dl.Reason != ReasonBacklogFull || dl.EventID != "ev-3" && dl.EventID != "ev-4" {
			t.Errorf("dead letter %s: reason %q, want %q for ev-3 and ev-4", dl.EventID, dl.Reason, ReasonBacklogFull)
		}
	}
	mu.Lock()
	if diverted["bounded"] != 2 || diverted["free"] != 0 {
		t.Errorf("BacklogFull told %v, want bounded: 2", diverted)
	}
	mu.Unlock()

	// Drained: new jobs are queued again.
	var r recorder
	consume(t, q, "bounded", 1, r.handle)
	fanouttest.WaitFor(t, waitTimeout, "the backlog to drain and be counted", func() bool { return pending(t, q, "bounded") == 0 && !q.BacklogFull("bounded") })
	if err := q.Enqueue(ctx, []Job{testJob("5", "bounded")}); err != nil {
		t.Fatalf("Enqueue after the drain: %v", err)
	}
	fanouttest.WaitFor(t, waitTimeout, "the new job delivered", func() bool { return r.count() == 4 })
}

// TestStoreBound: an embedded store at its size bound refuses writes (the callback is
// answered 503), and takes them again once deliveries free space.
func TestStoreBound(t *testing.T) {
	q := openWith(t, Options{Dir: t.TempDir(), MaxBytes: 1 << 20})
	ctx := testContext(t)
	big := testJob("big", "d")
	big.Body = []byte(`{"Text":"` + strings.Repeat("x", 64<<10) + `"}`)
	var refused error
	stored := 0
	for i := range 64 { // 64 x 64 KiB is four times the bound
		j := big
		j.EventID = fmt.Sprint("big-", i)
		if refused = q.Enqueue(ctx, []Job{j}); refused != nil {
			break
		}
		stored++
	}
	if refused == nil {
		t.Fatalf("stored %d jobs of 64 KiB in a 1 MiB store, want a refusal", stored)
	}
	t.Logf("refused after %d jobs: %v", stored, refused)
	var r recorder
	consume(t, q, "d", 4, r.handle)
	fanouttest.WaitFor(t, waitTimeout, "the stored jobs delivered", func() bool { return r.count() == stored && pending(t, q, "d") == 0 })
	j := big
	j.EventID = "after"
	fanouttest.WaitFor(t, waitTimeout, "a write to be taken again", func() bool { return q.Enqueue(ctx, []Job{j}) == nil })
}

// TestReplayAndPurgeDeadLetters replays and purges selections of dead letters: by filter
// and by ids, dry runs first, with ids that do not exist, a destination that may not be
// replayed, and a dead letter gone meanwhile.
func TestReplayAndPurgeDeadLetters(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	var jobs []Job
	for i := range 3 {
		jobs = append(jobs, testJob(fmt.Sprint("a", i), "a"))
	}
	for i := range 2 {
		jobs = append(jobs, testJob(fmt.Sprint("b", i), "b"))
	}
	if err := q.Enqueue(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "b"} {
		if _, err := q.RemoveDestination(ctx, d, "gone "+d, nil); err != nil {
			t.Fatal(err)
		}
	}
	all, _, err := q.ListDeadLetters(ctx, DeadLetterFilter{}, 0, 100)
	if err != nil || len(all) != 5 {
		t.Fatalf("ListDeadLetters = %d, %v; want 5", len(all), err)
	}
	a0, a1, b0 := all[0].ID, all[1].ID, all[3].ID
	count := func() int {
		t.Helper()
		n, err := q.DeadLetterCount(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	notB := func(destination string) error {
		if destination == "b" {
			return errors.New("b may not be replayed")
		}
		return nil
	}

	res, err := q.ReplayDeadLetters(ctx, Selection{Filter: DeadLetterFilter{Destination: "a"}}, true, notB)
	if err != nil || res.Matched != 3 || len(res.WouldReplay) != 3 || res.Replayed != nil || count() != 5 || pending(t, q, "a") != 0 {
		t.Errorf("dry run: %+v, %v; %d dead letters", res, err, count())
	}

	res, err = q.ReplayDeadLetters(ctx, Selection{IDs: []uint64{a0, b0, 999999, a0}}, false, notB)
	if err != nil || res.Matched != 2 || !slices.Equal(res.Replayed, []uint64{a0}) || len(res.Errors) != 2 ||
		res.Errors[0].ID != 999999 || !errors.Is(res.Errors[0].Err, ErrNotFound) ||
		res.Errors[1].ID != b0 || res.Errors[1].Err.Error() != "b may not be replayed" {
		t.Errorf("replay by ids: %+v, %v", res, err)
	}
	if pending(t, q, "a") != 1 || count() != 4 {
		t.Errorf("after the replay: %d pending for a, %d dead letters; want 1 and 4", pending(t, q, "a"), count())
	}

	p, err := q.PurgeDeadLetters(ctx, Selection{}, true)
	if err != nil || p.Matched != 4 || p.Deleted != 0 || count() != 4 {
		t.Errorf("purge dry run: %+v, %v", p, err)
	}
	p, err = q.PurgeDeadLetters(ctx, Selection{Filter: DeadLetterFilter{Reason: "gone b"}}, false)
	if err != nil || p.Matched != 2 || p.Deleted != 2 || count() != 2 {
		t.Errorf("purge by reason: %+v, %v; %d left", p, err, count())
	}
	p, err = q.PurgeDeadLetters(ctx, Selection{IDs: []uint64{a0, a1}}, false)
	if err != nil || p.Matched != 1 || p.Deleted != 1 || len(p.Errors) != 1 || p.Errors[0].ID != a0 || count() != 1 {
		t.Errorf("purge by ids: %+v, %v; %d left", p, err, count())
	}
}
