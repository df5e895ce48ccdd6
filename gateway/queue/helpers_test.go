package queue

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 15 * time.Second

// openTest opens an embedded queue in dir (a fresh directory when dir is "") and closes it
// at the end of the test.
func openTest(t testing.TB, dir string) *Queue {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	return openWith(t, Options{Dir: dir})
}

// openWith opens a queue with o and the tests' dedup window, dead-letter age and silent
// logger, and closes it at the end of the test.
func openWith(t testing.TB, o Options) *Queue {
	t.Helper()
	o.DedupWindow, o.DeadLetterMaxAge, o.Logger = time.Minute, time.Hour, slog.New(slog.DiscardHandler)
	q, err := Open(testContext(t), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

var jobClock = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testJob is a job with every field set, distinct per (event, destination).
func testJob(event, destination string) Job {
	return Job{
		EventID:     "ev-" + event,
		Destination: destination,
		Routes:      []string{"route-" + destination, "all"},
		Query:       "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&OptPlatform=RESTAPI",
		Body:        []byte(fmt.Sprintf(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","Event":%q}`, event)),
		ReceivedAt:  jobClock,
		RequestID:   "req-" + event,
	}
}

// sameJob reports the first difference between two jobs, "" when equal.
func sameJob(got, want Job) string {
	switch {
	case got.EventID != want.EventID:
		return fmt.Sprintf("EventID %q, want %q", got.EventID, want.EventID)
	case got.Destination != want.Destination:
		return fmt.Sprintf("Destination %q, want %q", got.Destination, want.Destination)
	case !slices.Equal(got.Routes, want.Routes):
		return fmt.Sprintf("Routes %q, want %q", got.Routes, want.Routes)
	case got.Query != want.Query:
		return fmt.Sprintf("Query %q, want %q", got.Query, want.Query)
	case string(got.Body) != string(want.Body):
		return fmt.Sprintf("Body %q, want %q", got.Body, want.Body)
	case !got.ReceivedAt.Equal(want.ReceivedAt):
		return fmt.Sprintf("ReceivedAt %v, want %v", got.ReceivedAt, want.ReceivedAt)
	case got.RequestID != want.RequestID:
		return fmt.Sprintf("RequestID %q, want %q", got.RequestID, want.RequestID)
	case !got.AttemptsSince().Equal(want.AttemptsSince()):
		return fmt.Sprintf("AttemptsSince %v, want %v", got.AttemptsSince(), want.AttemptsSince())
	case max(got.Attempt, 1) != max(want.Attempt, 1):
		return fmt.Sprintf("Attempt %d, want %d", max(got.Attempt, 1), max(want.Attempt, 1))
	case got.Ordered != want.Ordered || got.Key != want.Key:
		return fmt.Sprintf("Ordered %v Key %q, want %v %q", got.Ordered, got.Key, want.Ordered, want.Key)
	}
	return ""
}

// recorder is a Handler that keeps what it got and acts as told.
type recorder struct {
	mu   sync.Mutex
	got  []delivery
	act  func(m *Message) // nil: Ack
	errs []error
}

type delivery struct {
	job     Job
	attempt int
	at      time.Time
}

func (r *recorder) handle(_ context.Context, m *Message) {
	r.mu.Lock()
	r.got = append(r.got, delivery{job: m.Job, attempt: m.Attempt(), at: time.Now()})
	act := r.act
	r.mu.Unlock()
	if act != nil {
		act(m)
		return
	}
	if err := m.Ack(); err != nil {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
	}
}

func (r *recorder) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// consume starts a consumption stopped at the end of the test.
func consume(t testing.TB, q *Queue, destination string, maxInFlight int, h Handler) Consumption {
	t.Helper()
	return consumeAckWait(t, q, destination, maxInFlight, 30*time.Second, h)
}

func consumeAckWait(t testing.TB, q *Queue, destination string, maxInFlight int, ackWait time.Duration, h Handler) Consumption {
	t.Helper()
	c, err := q.Consume(context.Background(), destination, ConsumeOptions{Window: maxInFlight, AckWait: ackWait}, h)
	if err != nil {
		t.Fatalf("Consume(%q): %v", destination, err)
	}
	t.Cleanup(c.Stop)
	return c
}

func pending(t testing.TB, q *Queue, destination string) int {
	t.Helper()
	n, _, err := q.Pending(testContext(t), destination)
	if err != nil {
		t.Fatalf("Pending(%q): %v", destination, err)
	}
	return n
}
