package delivery

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// laneJob is a job of key's lane whose body carries its MsgKey, event.
func laneJob(dest, key, event string) queue.Job {
	j := jobFor(dest, 0)
	j.EventID, j.Ordered, j.Key = event, true, key
	j.Body = fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":%q,"MsgKey":%q}`, key, event)
	return j
}

// consumeLanes runs w on the destination's lanes until the end of the test.
func consumeLanes(t *testing.T, q *queue.Queue, w *Worker, dest string) queue.Lanes {
	t.Helper()
	ls, err := q.ConsumeLanes(context.Background(), dest, queue.LaneOptions{Admit: w.Admit}, w.Handle)
	if err != nil {
		t.Fatalf("ConsumeLanes: %v", err)
	}
	t.Cleanup(ls.Stop)
	return ls
}

// accepted returns, per key (From_Account), the MsgKeys the receiver answered 2xx, in the
// order it received them.
func accepted(rc *fanouttest.Receiver) map[string][]string {
	out := map[string][]string{}
	for _, r := range rc.Requests() {
		if r.Status >= 200 && r.Status <= 299 {
			var key string
			if _, err := fmt.Sscanf(string(r.Body), `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":%q`, &key); err != nil {
				continue
			}
			out[key] = append(out[key], fanouttest.MsgKey(r.Body))
		}
	}
	return out
}

// TestWorkerLanes: a receiver that answers 503 to a third of the attempts (by their body
// and number) receives each key's deliveries in order, at most concurrency at once; every
// delivery's Fanout-Attempt goes 1, 2, 3, ...
func TestWorkerLanes(t *testing.T) {
	t.Parallel()
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s/%s", r.Body, r.Header.Get("Fanout-Attempt"))
		if h.Sum32()%3 == 0 {
			return fanouttest.Answer{Status: http.StatusServiceUnavailable}
		}
		return fanouttest.Answer{Delay: time.Millisecond}
	})
	q := openQueue(t)
	d := testDestination(t, rc.URL(), func(d *Destination) {
		d.Policy = Policy{MaxAttempts: 50, Initial: time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2}
		d.Slots = NewSlots(3)
	})
	cur, _ := current(d)
	w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur, Logger: slog.New(slog.DiscardHandler)}
	consumeLanes(t, q, w, "audit")

	keys := []string{"a", "b", "c", "d", "e", "f"}
	want := map[string][]string{}
	for i := range 15 {
		var jobs []queue.Job
		for _, k := range keys {
			ev := k + "-" + strconv.Itoa(i)
			jobs = append(jobs, laneJob("audit", k, ev))
			want[k] = append(want[k], ev)
		}
		enqueue(t, q, jobs...)
	}
	fanouttest.WaitFor(t, waitTimeout, "every delivery", func() bool {
		n := 0
		for _, evs := range accepted(rc) {
			n += len(evs)
		}
		return n == len(keys)*15 && pending(t, q, "audit") == 0
	})
	got := accepted(rc)
	for _, k := range keys {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("key %s: the receiver accepted %v, want %v", k, got[k], want[k])
		}
	}
	attempts := map[string][]string{}
	for _, r := range rc.Requests() {
		ev := fanouttest.MsgKey(r.Body)
		attempts[ev] = append(attempts[ev], r.Header.Get("Fanout-Attempt"))
	}
	for ev, as := range attempts {
		for i, a := range as {
			if a != strconv.Itoa(i+1) {
				t.Fatalf("%s: Fanout-Attempt %v, want 1, 2, 3, ...", ev, as)
			}
		}
	}
	if most := rc.MaxInFlight(); most > 3 {
		t.Errorf("%d requests in flight at once, want at most concurrency 3", most)
	}
}

// TestWorkerLaneWaitsInHand: a delivery whose next attempt is due later than QuickRetryMax
// (a Retry-After) waits in hand: its key's next delivery waits with it, the other keys go.
func TestWorkerLaneWaitsInHand(t *testing.T) {
	t.Parallel()
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if fanouttest.MsgKey(r.Body) == "a-0" && r.Header.Get("Fanout-Attempt") == "1" {
			return fanouttest.Answer{Status: http.StatusServiceUnavailable, Header: http.Header{"Retry-After": {"3"}}}
		}
		return fanouttest.Answer{}
	})
	q := openQueue(t)
	d := testDestination(t, rc.URL(), func(d *Destination) {
		d.Policy = Policy{MaxAttempts: 5, Initial: time.Millisecond, Max: 5 * time.Second, Multiplier: 2}
	})
	cur, _ := current(d)
	w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur, Logger: slog.New(slog.DiscardHandler)}
	consumeLanes(t, q, w, "audit")
	enqueue(t, q, laneJob("audit", "a", "a-0"), laneJob("audit", "a", "a-1"), laneJob("audit", "b", "b-0"))

	fanouttest.WaitFor(t, waitTimeout, "b-0 while a-0 waits", func() bool { return len(accepted(rc)["b"]) == 1 })
	if got := accepted(rc)["a"]; len(got) != 0 {
		t.Fatalf("a delivered %v while a-0 waits for its second attempt", got)
	}
	fanouttest.WaitFor(t, waitTimeout, "a-0 then a-1", func() bool { return len(accepted(rc)["a"]) == 2 })
	if got := accepted(rc)["a"]; !slices.Equal(got, []string{"a-0", "a-1"}) {
		t.Errorf("a: %v, want [a-0 a-1]", got)
	}
	var a0 []string
	for _, r := range rc.WithBody(laneJob("audit", "a", "a-0").Body) {
		a0 = append(a0, r.Header.Get("Fanout-Attempt"))
	}
	if !slices.Equal(a0, []string{"1", "2"}) {
		t.Errorf("a-0's Fanout-Attempt: %v, want [1 2]", a0)
	}
}

// TestWorkerLaneBlocks: with BlockExhausted, a delivery that gives up (a 400) blocks its lane
// instead of being dead-lettered; an operator's retry delivers it, then the lane goes on.
func TestWorkerLaneBlocks(t *testing.T) {
	t.Parallel()
	var refuse sync.Mutex
	refusing := true
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		refuse.Lock()
		defer refuse.Unlock()
		if refusing && fanouttest.MsgKey(r.Body) == "a-0" {
			return fanouttest.Answer{Status: http.StatusBadRequest, Body: `{"error":"unknown account"}`}
		}
		return fanouttest.Answer{}
	})
	q := openQueue(t)
	d := testDestination(t, rc.URL(), func(d *Destination) { d.BlockExhausted = true })
	cur, _ := current(d)
	var (
		mu     sync.Mutex
		rounds []string
	)
	w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur, Logger: slog.New(slog.DiscardHandler),
		Done: func(res Result) {
			mu.Lock()
			rounds = append(rounds, fmt.Sprintf("%s %s blocked=%v", res.Outcome, res.Reason, res.Blocked))
			mu.Unlock()
		}}
	ls := consumeLanes(t, q, w, "audit")
	enqueue(t, q, laneJob("audit", "a", "a-0"), laneJob("audit", "a", "a-1"), laneJob("audit", "b", "b-0"))
	fanouttest.WaitFor(t, waitTimeout, "a blocked, b delivered", func() bool {
		return ls.State().Blocked == 1 && len(accepted(rc)["b"]) == 1
	})
	ctx := testContext(t)
	lanes, err := q.BlockedLanes(ctx, "audit")
	if err != nil || len(lanes) != 1 || lanes[0].Key != "a" || lanes[0].Reason != "status 400" || lanes[0].LastStatus != 400 ||
		lanes[0].BodyExcerpt != `{"error":"unknown account"}` || lanes[0].Attempts != 1 {
		t.Fatalf("BlockedLanes = %+v, %v", lanes, err)
	}
	if n, err := q.DeadLetterCount(ctx, "audit"); err != nil || n != 0 {
		t.Errorf("dead letters: %d, %v; want none while the lane is blocked", n, err)
	}

	refuse.Lock()
	refusing = false
	refuse.Unlock()
	if _, applied, err := q.ReleaseLane(ctx, "audit", "a", queue.LaneRetry); err != nil || !applied {
		t.Fatalf("ReleaseLane = %v, %v", applied, err)
	}
	fanouttest.WaitFor(t, waitTimeout, "a-0 then a-1", func() bool { return len(accepted(rc)["a"]) == 2 })
	if got := accepted(rc)["a"]; !slices.Equal(got, []string{"a-0", "a-1"}) {
		t.Errorf("a: %v, want [a-0 a-1]", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(rounds, "dead 4xx blocked=true") {
		t.Errorf("rounds %q: want the 400 reported as blocked", rounds)
	}
}
