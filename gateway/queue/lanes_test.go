package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// orderedJob is testJob in the lane of key.
func orderedJob(event, destination, key string) Job {
	j := testJob(event, destination)
	j.Ordered, j.Key = true, key
	return j
}

// laneLog records, per key, the events a lane handler acknowledged, in order, and what it
// saw of each handling.
type laneLog struct {
	mu       sync.Mutex
	acked    map[string][]string // key -> event ids
	handled  map[string]int      // event id -> handlings
	attempts map[string][]int    // event id -> Attempt() of each handling
	running  int
	most     int // handlers running at once, at most
}

func newLaneLog() *laneLog {
	return &laneLog{acked: map[string][]string{}, handled: map[string]int{}, attempts: map[string][]int{}}
}

// handler returns a lane handler that records each handling, then does act (Ack when act
// returns false).
func (l *laneLog) handler(t testing.TB, act func(ctx context.Context, m *Message) bool) Handler {
	return func(ctx context.Context, m *Message) {
		l.mu.Lock()
		l.handled[m.Job.EventID]++
		l.attempts[m.Job.EventID] = append(l.attempts[m.Job.EventID], m.Attempt())
		l.running++
		l.most = max(l.most, l.running)
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.running--
			l.mu.Unlock()
		}()
		if !m.Ordered() {
			t.Errorf("event %s: Ordered() = false for a lane's job", m.Job.EventID)
		}
		if act != nil && act(ctx, m) {
			return
		}
		if err := m.Ack(); err != nil {
			t.Errorf("Ack %s: %v", m.Job.EventID, err)
			return
		}
		l.mu.Lock()
		l.acked[m.Job.Key] = append(l.acked[m.Job.Key], m.Job.EventID)
		l.mu.Unlock()
	}
}

func (l *laneLog) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, evs := range l.acked {
		n += len(evs)
	}
	return n
}

func (l *laneLog) ackedOf(key string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked[key])
}

func (l *laneLog) handledOf(event string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.handled[event]
}

func (l *laneLog) attemptsOf(event string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.attempts[event])
}

func consumeLanes(t testing.TB, q *Queue, destination string, h Handler) Lanes {
	t.Helper()
	ls, err := q.ConsumeLanes(context.Background(), destination, LaneOptions{}, h)
	if err != nil {
		t.Fatalf("ConsumeLanes(%q): %v", destination, err)
	}
	t.Cleanup(ls.Stop)
	return ls
}

// enqueueLanes stores n jobs per key, round robin over keys, each call holding one job of
// every key: the stream order of a key's jobs is their number. It returns each key's event
// ids in that order.
func enqueueLanes(t testing.TB, q *Queue, destination string, keys []string, n int, prefix string) map[string][]string {
	t.Helper()
	want := map[string][]string{}
	for i := range n {
		var jobs []Job
		for _, k := range keys {
			ev := fmt.Sprintf("%s%s-%03d", prefix, k, i)
			jobs = append(jobs, orderedJob(ev, destination, k))
			want[k] = append(want[k], "ev-"+ev)
		}
		if err := q.Enqueue(testContext(t), jobs); err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
	return want
}

// failsNow is a failure decided by the event and attempt: the same in every run.
func failsNow(event string, attempt int, percent uint32) bool {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", event, attempt)
	return h.Sum32()%100 < percent
}

// keysInPartition returns n keys of partition p.
func keysInPartition(p, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if k := fmt.Sprintf("k%d", i); LaneOf(k) == p {
			out = append(out, k)
		}
	}
	return out
}

// TestLanesKeepOrderPerKey: jobs of ten keys, a third of whose attempts fail and wait a few
// milliseconds in hand: each key's jobs are acknowledged in the order they were stored,
// while keys are handled in parallel.
func TestLanesKeepOrderPerKey(t *testing.T) {
	q := openTest(t, "")
	log := newLaneLog()
	consumeLanes(t, q, "conv", log.handler(t, func(_ context.Context, m *Message) bool {
		if failsNow(m.Job.EventID, m.Attempt(), 33) {
			if err := m.Later(context.Background(), m.Attempt()+1, time.Now().Add(5*time.Millisecond)); err != nil {
				t.Errorf("Later: %v", err)
			}
			return true
		}
		return false
	}))
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	want := enqueueLanes(t, q, "conv", keys, 40, "")
	fanouttest.WaitFor(t, waitTimeout, "every job acknowledged", func() bool { return log.ackedCount() == len(keys)*40 })
	for _, k := range keys {
		if got := log.ackedOf(k); !slices.Equal(got, want[k]) {
			t.Errorf("key %s: acknowledged %v\nwant %v", k, got, want[k])
		}
	}
	// A retried job's attempts are numbered 1, 2, 3, ...
	for _, evs := range want {
		for _, ev := range evs {
			got := log.attemptsOf(ev)
			for i, a := range got {
				if a != i+1 {
					t.Fatalf("event %s: attempts %v, want 1, 2, 3, ...", ev, got)
				}
			}
		}
	}
	if log.most < 2 {
		t.Errorf("at most %d handler at once: the keys were not handled in parallel", log.most)
	}
	fanouttest.WaitFor(t, waitTimeout, "nothing pending", func() bool { return pending(t, q, "conv") == 0 })
}

// TestLanesOneKeyDoesNotHoldOthers: the first job of one key waits an hour for its next
// attempt; the key's later jobs wait with it, while the other keys of its partition, and
// of the others, are all delivered.
func TestLanesOneKeyDoesNotHoldOthers(t *testing.T) {
	q := openTest(t, "")
	log := newLaneLog()
	keys := keysInPartition(3, 4) // the stuck key and three of its partition
	keys = append(keys, "x", "y")
	stuck := keys[0]
	consumeLanes(t, q, "conv", log.handler(t, func(_ context.Context, m *Message) bool {
		if m.Job.Key == stuck {
			if err := m.Later(context.Background(), m.Attempt()+1, time.Now().Add(time.Hour)); err != nil {
				t.Errorf("Later: %v", err)
			}
			return true
		}
		return false
	}))
	want := enqueueLanes(t, q, "conv", keys, 10, "")
	fanouttest.WaitFor(t, waitTimeout, "every job of the other keys", func() bool { return log.ackedCount() == (len(keys)-1)*10 })
	for _, k := range keys[1:] {
		if got := log.ackedOf(k); !slices.Equal(got, want[k]) {
			t.Errorf("key %s: acknowledged %v, want %v", k, got, want[k])
		}
	}
	if n := log.handledOf(want[stuck][0]); n != 1 {
		t.Errorf("the stuck job was handled %d times, want once", n)
	}
	for _, ev := range want[stuck][1:] {
		if n := log.handledOf(ev); n != 0 {
			t.Errorf("%s, behind the stuck job, was handled %d times", ev, n)
		}
	}
	if n := pending(t, q, "conv"); n != 10 {
		t.Errorf("Pending = %d, want the stuck key's 10 jobs", n)
	}
}

// TestLanesRestart: a process stops with jobs in hand, one of which waits for its fifth
// attempt. The next process gets every job not acknowledged, in order, the waiting one
// numbered 5; those acknowledged do not come again.
func TestLanesRestart(t *testing.T) {
	dir := t.TempDir()
	q1 := openTest(t, dir)
	log1 := newLaneLog()
	hold := make(chan struct{})
	ls := consumeLanes(t, q1, "conv", log1.handler(t, func(ctx context.Context, m *Message) bool {
		switch {
		case m.Job.Key == "a":
			if err := m.Later(context.Background(), 5, time.Now().Add(time.Hour)); err != nil {
				t.Errorf("Later: %v", err)
			}
			return true
		case m.Job.EventID == "ev-b-003":
			<-ctx.Done() // in flight until the process stops: no decision
			close(hold)
			return true
		}
		return false
	}))
	want := enqueueLanes(t, q1, "conv", []string{"a", "b"}, 6, "")
	fanouttest.WaitFor(t, waitTimeout, "b's first three jobs, and b-003 in flight", func() bool {
		return len(log1.ackedOf("b")) == 3 && log1.handledOf("ev-b-003") == 1 && log1.handledOf("ev-a-000") == 1
	})
	if st := ls.State(); len(st.Partitions) != LanePartitions || st.Oldest.IsZero() {
		t.Errorf("State = %+v, want every partition and an oldest job", st)
	}
	if err := q1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	<-hold

	q2 := openTest(t, dir)
	log2 := newLaneLog()
	consumeLanes(t, q2, "conv", log2.handler(t, nil))
	fanouttest.WaitFor(t, waitTimeout, "the rest, after the restart", func() bool { return log2.ackedCount() == 6+3 })
	if got := log2.ackedOf("a"); !slices.Equal(got, want["a"]) {
		t.Errorf("a after the restart: %v, want %v", got, want["a"])
	}
	if got := log2.ackedOf("b"); !slices.Equal(got, want["b"][3:]) {
		t.Errorf("b after the restart: %v, want %v", got, want["b"][3:])
	}
	if got := log2.attemptsOf("ev-a-000"); !slices.Equal(got, []int{5}) {
		t.Errorf("a-000's attempts after the restart: %v, want [5] (stored when it was put off)", got)
	}
	fanouttest.WaitFor(t, waitTimeout, "its attempt record deleted with it", func() bool {
		entries, err := q2.records(testContext(t), "a.conv.>")
		return err == nil && len(entries) == 0
	})
}

// TestLanesBlock: a job that gives up blocks its lane, also across a restart; the other
// keys go on. An operator's retry starts a new series of attempts; a skip dead-letters the
// job; either way the lane goes on in order.
func TestLanesBlock(t *testing.T) {
	dir := t.TempDir()
	q1 := openTest(t, dir)
	ctx := testContext(t)
	// a-000 and a-002 give up the first time they are handled, by either process.
	var mu sync.Mutex
	gaveUp := map[string]bool{}
	blocks := func(ctx context.Context, m *Message) bool {
		mu.Lock()
		first := !gaveUp[m.Job.EventID]
		gaveUp[m.Job.EventID] = true
		mu.Unlock()
		if (m.Job.EventID == "ev-a-000" || m.Job.EventID == "ev-a-002") && first {
			if err := m.Block(ctx, DeadLetterInfo{Reason: "max attempts", LastStatus: 503, Attempts: 3}); err != nil {
				t.Errorf("Block: %v", err)
			}
			return true
		}
		return false
	}
	log1 := newLaneLog()
	ls1 := consumeLanes(t, q1, "conv", log1.handler(t, blocks))
	want := enqueueLanes(t, q1, "conv", []string{"a", "b"}, 4, "")
	fanouttest.WaitFor(t, waitTimeout, "b's jobs, a blocked", func() bool { return len(log1.ackedOf("b")) == 4 && ls1.State().Blocked == 1 })
	lanes, err := q1.BlockedLanes(ctx, "conv")
	if err != nil || len(lanes) != 1 {
		t.Fatalf("BlockedLanes = %+v, %v; want a's", lanes, err)
	}
	if l := lanes[0]; l.Key != "a" || l.EventID != "ev-a-000" || l.Reason != "max attempts" || l.LastStatus != 503 ||
		l.Attempts != 3 || l.Partition != LaneOf("a") || l.BlockedAt.IsZero() || l.Action != "" {
		t.Errorf("blocked lane = %+v", l)
	}
	if _, _, err := q1.ReleaseLane(ctx, "conv", "zz", LaneRetry); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReleaseLane of a lane not blocked: %v, want ErrNotFound", err)
	}
	if err := q1.Close(); err != nil {
		t.Fatal(err)
	}

	// Still blocked after a restart: a-000 is in hand and is not handled.
	q2 := openTest(t, dir)
	log2 := newLaneLog()
	ls2 := consumeLanes(t, q2, "conv", log2.handler(t, blocks))
	fanouttest.WaitFor(t, waitTimeout, "a blocked after the restart", func() bool { return ls2.State().Blocked == 1 })
	if n := log2.handledOf("ev-a-000"); n != 0 {
		t.Fatalf("the blocked job was handled %d times after the restart", n)
	}

	lane, applied, err := q2.ReleaseLane(ctx, "conv", "a", LaneRetry)
	if err != nil || !applied || lane.EventID != "ev-a-000" || lane.Action != LaneRetry {
		t.Fatalf("ReleaseLane(retry) = %+v, %v, %v", lane, applied, err)
	}
	// a-000 is delivered, numbered 1 again; a-002 gives up and blocks.
	fanouttest.WaitFor(t, waitTimeout, "a-000 and a-001, then a-002 blocked", func() bool {
		return len(log2.ackedOf("a")) == 2 && ls2.State().Blocked == 1
	})
	if got := log2.attemptsOf("ev-a-000"); !slices.Equal(got, []int{1}) {
		t.Errorf("a-000's attempts after the retry: %v, want [1]", got)
	}
	if _, applied, err := q2.ReleaseLane(ctx, "conv", "a", LaneSkip); err != nil || !applied {
		t.Fatalf("ReleaseLane(skip) = %v, %v", applied, err)
	}
	fanouttest.WaitFor(t, waitTimeout, "a-003 after the skip", func() bool { return len(log2.ackedOf("a")) == 3 })
	if got, w := log2.ackedOf("a"), []string{want["a"][0], want["a"][1], want["a"][3]}; !slices.Equal(got, w) {
		t.Errorf("a: %v, want %v", got, w)
	}
	dead, _, err := q2.ListDeadLetters(ctx, DeadLetterFilter{Destination: "conv"}, 0, 10)
	if err != nil || len(dead) != 1 || dead[0].EventID != "ev-a-002" || dead[0].Reason != "max attempts; lane skipped by an operator" ||
		!dead[0].Ordered || dead[0].Key != "a" {
		t.Errorf("dead letters = %+v, %v; want a-002's, skipped", dead, err)
	}
	if lanes, err := q2.BlockedLanes(ctx, ""); err != nil || len(lanes) != 0 {
		t.Errorf("BlockedLanes = %+v, %v; want none", lanes, err)
	}

	// The skipped job, replayed, goes to the end of its lane.
	if err := q2.ReplayDeadLetter(ctx, dead[0].ID); err != nil {
		t.Fatal(err)
	}
	fanouttest.WaitFor(t, waitTimeout, "the replayed job", func() bool { return len(log2.ackedOf("a")) == 4 })
	if got := log2.ackedOf("a")[3]; got != "ev-a-002" {
		t.Errorf("replayed %s, want ev-a-002", got)
	}
}

// TestLanesRemoveDestination: removing an ordered destination dead-letters the jobs of its
// lanes and deletes its lane consumers and records.
func TestLanesRemoveDestination(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	ls := consumeLanes(t, q, "conv", func(ctx context.Context, m *Message) {
		if err := m.Block(ctx, DeadLetterInfo{Reason: "status 400"}); err != nil {
			t.Errorf("Block: %v", err)
		}
	})
	enqueueLanes(t, q, "conv", []string{"a", "b", "c"}, 2, "")
	fanouttest.WaitFor(t, waitTimeout, "three blocked lanes", func() bool { return ls.State().Blocked == 3 })
	if n := pending(t, q, "conv"); n != 6 {
		t.Errorf("Pending = %d, want 6", n)
	}
	if names, err := q.QueuedDestinations(ctx); err != nil || !slices.Contains(names, "conv") {
		t.Errorf("QueuedDestinations = %v, %v; want conv among them", names, err)
	}
	ls.Stop()
	moved, err := q.RemoveDestination(ctx, "conv", "destination removed", nil)
	if err != nil || moved != 6 {
		t.Fatalf("RemoveDestination = %d, %v; want 6 moved", moved, err)
	}
	if n := pending(t, q, "conv"); n != 0 {
		t.Errorf("Pending after removal = %d", n)
	}
	if entries, err := q.records(ctx, ">"); err != nil || len(entries) != 0 {
		t.Errorf("lane records after removal: %d, %v", len(entries), err)
	}
	for ci := range q.jobs.ListConsumers(ctx).Info() {
		if strings.HasPrefix(ci.Name, "lane~") {
			t.Errorf("consumer %s left after removal", ci.Name)
		}
	}
	if names, err := q.QueuedDestinations(ctx); err != nil || slices.Contains(names, "conv") {
		t.Errorf("QueuedDestinations after removal = %v, %v", names, err)
	}
}

// TestLanesShareAcrossReplicas: two queues on one nats-server, as two replicas, share the
// partitions of a destination (eight each), never consume one partition both at once, and
// deliver every key in order; when one stops, the other takes every partition.
func TestLanesShareAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a nats-server process")
	}
	srv := fanouttest.StartNATSServer(t, "lanes")
	q1 := openWith(t, Options{URL: srv.URL()})
	q2 := openWith(t, Options{URL: srv.URL()})
	log := newLaneLog()
	h := log.handler(t, func(_ context.Context, m *Message) bool {
		if failsNow(m.Job.EventID, m.Attempt(), 20) {
			_ = m.Later(context.Background(), m.Attempt()+1, time.Now().Add(5*time.Millisecond))
			return true
		}
		return false
	})
	ls1 := consumeLanes(t, q1, "conv", h)
	ls2 := consumeLanes(t, q2, "conv", h)
	// overlap reads ls1's partitions before and after ls2's: one in all three reads was
	// consumed by both at once (partitions change hands a lease round apart).
	overlap := func() []int {
		var both []int
		before := ls1.State().Partitions
		p2 := ls2.State().Partitions
		after := ls1.State().Partitions
		for _, p := range p2 {
			if slices.Contains(before, p) && slices.Contains(after, p) {
				both = append(both, p)
			}
		}
		return both
	}
	fanouttest.WaitFor(t, waitTimeout, "eight partitions each", func() bool {
		if both := overlap(); len(both) > 0 {
			t.Fatalf("partitions %v consumed by both replicas", both)
		}
		return len(ls1.State().Partitions) == 8 && len(ls2.State().Partitions) == 8
	})
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	want := enqueueLanes(t, q1, "conv", keys, 20, "")
	fanouttest.WaitFor(t, waitTimeout, "every job", func() bool {
		if both := overlap(); len(both) > 0 {
			t.Fatalf("partitions %v consumed by both replicas", both)
		}
		return log.ackedCount() == len(keys)*20
	})
	for _, k := range keys {
		if got := log.ackedOf(k); !slices.Equal(got, want[k]) {
			t.Errorf("key %s: %v, want %v", k, got, want[k])
		}
	}

	ls1.Stop()
	fanouttest.WaitFor(t, waitTimeout, "the other replica consuming every partition", func() bool {
		return len(ls2.State().Partitions) == LanePartitions
	})
	more := enqueueLanes(t, q2, "conv", keys, 5, "more-")
	fanouttest.WaitFor(t, waitTimeout, "the jobs sent after", func() bool { return log.ackedCount() == len(keys)*25 })
	for _, k := range keys {
		if got := log.ackedOf(k); !slices.Equal(got, append(want[k], more[k]...)) {
			t.Errorf("key %s: %v, want %v then %v", k, got, want[k], more[k])
		}
	}
}
