package queue

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestMaxBody: the embedded server takes EmbeddedMaxPayload, and a body of MaxBody bytes
// is stored as a job and as a dead letter; a body whose dead letter would not fit fails
// the whole Enqueue with ErrTooLarge, storing nothing.
func TestMaxBody(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	if got := q.MaxPayload(); got != EmbeddedMaxPayload {
		t.Fatalf("MaxPayload() = %d, want %d", got, EmbeddedMaxPayload)
	}
	if got, want := q.MaxBody(), MaxBodyFor(EmbeddedMaxPayload); got != want || want != 6242304 {
		t.Fatalf("MaxBody() = %d, MaxBodyFor(%d) = %d, want 6242304", got, EmbeddedMaxPayload, want)
	}

	big := testJob("big", "a")
	big.Body = bytes.Repeat([]byte("x"), int(q.MaxBody()))
	big.Query += "&ClientIP=" + strings.Repeat("1", 1000) // a long query still fits
	if err := q.Enqueue(ctx, []Job{big}); err != nil {
		t.Fatalf("Enqueue of a %d-byte body: %v", len(big.Body), err)
	}
	longError := strings.Repeat("é", maxTextStored) // clipped when stored, at a character
	var dead atomic.Bool
	c := consume(t, q, "a", 1, func(ctx context.Context, m *Message) {
		if err := q.DeadLetter(ctx, m, DeadLetterInfo{Reason: "max attempts", LastError: longError}); err != nil {
			t.Errorf("DeadLetter of a %d-byte body: %v", len(m.Job.Body), err)
		}
		dead.Store(true)
	})
	fanouttest.WaitFor(t, waitTimeout, "the dead letter", dead.Load)
	c.Stop()
	all, _, err := q.ListDeadLetters(ctx, DeadLetterFilter{}, 0, 10)
	if err != nil || len(all) != 1 {
		t.Fatalf("ListDeadLetters: %d, %v", len(all), err)
	}
	if dl := all[0]; !bytes.Equal(dl.Body, big.Body) || dl.LastError != strings.Repeat("é", maxTextStored/2)+"..." {
		t.Errorf("dead letter: body of %d bytes, last error of %d bytes", len(dl.Body), len(dl.LastError))
	}

	// One byte more than MaxBody, though it would fit with this short query.
	over := testJob("over", "b")
	over.Body = bytes.Repeat([]byte("x"), int(q.MaxBody())+1)
	if err := q.Enqueue(ctx, []Job{over}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Enqueue of MaxBody+1 bytes = %v, want ErrTooLarge", err)
	}

	// A body whose job fits in a message, but whose dead letter (base64) would not.
	small, huge := testJob("small", "b"), testJob("huge", "b")
	huge.Body = bytes.Repeat([]byte("x"), 7<<20)
	err = q.Enqueue(ctx, []Job{small, huge})
	want := `queue: enqueue event ev-huge to "b": body of 7340032 bytes: larger than the queue stores in one message (the JetStream server takes messages up to 8388608 bytes, which holds bodies up to 6242304 bytes)`
	if !errors.Is(err, ErrTooLarge) || err.Error() != want {
		t.Fatalf("Enqueue = %v\nwant %s", err, want)
	}
	if p := pending(t, q, "b"); p != 0 {
		t.Errorf("Pending(b) = %d after ErrTooLarge, want 0: nothing of the call is stored", p)
	}
}
