package delivery

import (
	"context"
	"net/http"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// A reload replaces the destination while a round is retrying in-process: the round ends
// before its next attempt, as a retry without delay, so that the job is redelivered at once
// on the new settings instead of making its quick retries at the old URL.
func TestReplacedDestinationEndsTheRound(t *testing.T) {
	var d *Destination
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if r.N == 1 {
			d.MarkReplaced() // the reload happens while the first attempt is answered
		}
		return fanouttest.Answer{Status: http.StatusServiceUnavailable}
	})
	d = testDestination(t, rc.URL(), nil)
	res := NewSender(SenderOptions{}).Send(context.Background(), d, testJob(), Round{})
	if res.Outcome != Retry || res.Delay != 0 || res.Attempts != 1 {
		t.Fatalf("got %s after %d attempts with delay %s, want Retry after 1 attempt with no delay", res.Outcome, res.Attempts, res.Delay)
	}
	if n := len(rc.Requests()); n != 1 {
		t.Fatalf("the old URL got %d requests, want 1", n)
	}

	// Not replaced: the same failures are retried in-process up to MaxAttempts.
	rc2 := fanouttest.NewReceiver(t, status(http.StatusServiceUnavailable, ""))
	res = NewSender(SenderOptions{}).Send(context.Background(), testDestination(t, rc2.URL(), nil), testJob(), Round{})
	if res.Attempts != quickPolicy.MaxAttempts {
		t.Fatalf("not replaced: %d attempts, want %d", res.Attempts, quickPolicy.MaxAttempts)
	}
}
