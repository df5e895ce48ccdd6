package queue

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

func TestExternalJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a nats-server process")
	}
	srv := fanouttest.StartNATSServer(t, "queue")
	q := openWith(t, Options{URL: " " + srv.URL() + " , " + srv.URL()}) // a list, spaces tolerated
	ctx := testContext(t)
	if !q.Connected() {
		t.Fatal("Connected() = false after Open")
	}

	// Core flow: "ok" is acknowledged, "bad" dead-lettered then replayed.
	var mu sync.Mutex
	received := map[string]int{}
	handler := func(ctx context.Context, m *Message) {
		mu.Lock()
		received[m.Job.EventID+">"+m.Job.Destination]++
		first := received[m.Job.EventID+">"+m.Job.Destination] == 1
		mu.Unlock()
		if m.Job.Destination == "bad" && first {
			if err := q.DeadLetter(ctx, m, DeadLetterInfo{Reason: "status 400", LastStatus: 400, Attempts: m.Attempt()}); err != nil {
				t.Errorf("DeadLetter: %v", err)
			}
			return
		}
		if err := m.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
	}
	seen := func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		return received[key]
	}
	for _, d := range []string{"ok", "bad"} {
		consume(t, q, d, 2, handler)
	}
	if err := q.Enqueue(ctx, []Job{testJob("1", "ok"), testJob("1", "bad")}); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	fanouttest.WaitFor(t, waitTimeout, "the dead letter", func() bool {
		n, err := q.DeadLetterCount(ctx, "bad")
		return err == nil && n == 1 && seen("ev-1>ok") == 1
	})
	items, _, err := q.ListDeadLetters(ctx, DeadLetterFilter{Reason: "400"}, 0, 10)
	if err != nil || len(items) != 1 || sameJob(items[0].Job, testJob("1", "bad")) != "" {
		t.Fatalf("ListDeadLetters = %+v, %v; want the job of bad", items, err)
	}
	if err := q.ReplayDeadLetter(ctx, items[0].ID); err != nil {
		t.Fatalf("ReplayDeadLetter: %v", err)
	}
	fanouttest.WaitFor(t, waitTimeout, "the replayed job", func() bool { return seen("ev-1>bad") == 2 && pending(t, q, "bad") == 0 })
	if n, err := q.DeadLetterCount(ctx, ""); err != nil || n != 0 {
		t.Errorf("DeadLetterCount after replay = %d, %v; want 0", n, err)
	}

	// The server goes away: writes fail within their deadline, and come
	// back with it.
	srv.Kill(t)
	fanouttest.WaitFor(t, waitTimeout, "Connected() to turn false", func() bool { return !q.Connected() })
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = q.Enqueue(short, []Job{testJob("2", "ok")})
	cancel()
	if err == nil {
		t.Fatal("Enqueue succeeded with the server down")
	}

	srv.Start(t)
	fanouttest.WaitFor(t, waitTimeout, "Connected() to turn true", q.Connected)
	fanouttest.WaitFor(t, waitTimeout, "Enqueue to work again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return q.Enqueue(ctx, []Job{testJob("3", "ok")}) == nil
	})
	// The consumption that ran before the outage delivers it.
	fanouttest.WaitFor(t, waitTimeout, "the job enqueued after the restart", func() bool { return seen("ev-3>ok") == 1 })
	if n := seen("ev-2>ok"); n != 0 {
		t.Errorf("the job refused while down was delivered %d times", n)
	}
}
