package delivery

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
)

const (
	// ackWaitMargin is added to the longest round in AckWait: the message may have waited in
	// the client's buffer before Handle ran, and the acknowledgement takes a round trip.
	ackWaitMargin = 30 * time.Second

	// deadLetterTimeout bounds writing a dead letter once the round is over; the write runs
	// even when the handler's context has ended, so that a finished round is not redone.
	deadLetterTimeout = 10 * time.Second
)

// AckWait is the ack wait to give the queue consumer of d: the longest round a delivery can
// run (every quick attempt timing out, every quick wait at its longest, Retry-After
// included), plus a margin. A shorter one would let JetStream redeliver a message while its
// round is still running, and the receiver would get it twice at the same time. Later rounds
// are never longer than the first one, since a wait that is not quick is followed only by
// longer ones.
func AckWait(d *Destination) time.Duration {
	n := d.Policy.quickRound(1)
	longestWait := time.Duration(float64(QuickRetryMax) * (1 + d.Policy.Jitter))
	return time.Duration(n)*d.Timeout + time.Duration(n-1)*longestWait + ackWaitMargin
}

// Worker delivers the jobs of one destination as they come from its queue consumer: Handle
// is the queue.Handler given to Queue.Consume.
//
// Attempts are numbered from the JetStream delivery count, without storing anything: the
// first delivery makes attempts 1..n, the quick ones of the policy (those whose backoff is at
// most QuickRetryMax), and delivery k > 1 makes attempt n+k-1, capped at MaxAttempts. The
// number can skip: a redelivery after a crash or an expired ack wait, or a round that a long
// Retry-After ended early, uses up a delivery without making the attempts it stands for.
// A job then reaches MaxAttempts a little sooner; it never gets more attempts than that.
type Worker struct {
	Queue  *queue.Queue
	Sender *Sender
	// Current returns the live Destination, so that a reload swaps it without restarting
	// the consumer. nil means the destination was removed: the message is left
	// unacknowledged, to be redelivered (or dead-lettered by whoever removed it).
	Current func() *Destination
	Logger  *slog.Logger // nil = slog.Default()
	// Done, when set, is told how each delivery finished (Delivered or Dead), for metrics.
	Done func(Outcome)
}

// Handle makes one round of attempts for m and ends it: Ack when delivered, Retry with the
// delay Send chose, or a dead letter. It logs one warning per failed round.
func (w *Worker) Handle(ctx context.Context, m *queue.Message) {
	job := m.Job
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("destination", job.Destination, "event_id", job.EventID, "request_id", job.RequestID)

	d := w.Current()
	if d == nil {
		log.Warn("destination is no longer configured, leaving the delivery in the queue")
		return
	}
	first := d.Policy.firstAttempt(m.Attempt())
	if d.Policy.quickRound(first) > 1 {
		// Restart the ack wait, which has run since JetStream sent the message: AckWait
		// counts on a full one for a round of several attempts.
		if err := m.InProgress(); err != nil {
			log.Warn("cannot extend the ack wait", "error", err)
		}
	}

	// A replayed dead letter is stored anew and starts again at attempt 1: its max_age counts
	// from then, or it would die again at its first failure.
	sent := job
	if stored := m.StoredAt(); stored.After(sent.ReceivedAt) {
		sent.ReceivedAt = stored
	}
	res := w.Sender.Send(ctx, d, sent, first)
	log = log.With("attempt", first+res.Attempts-1, "url", d.RedactedURL())
	switch res.Outcome {
	case Delivered:
		log.Debug("delivered", "attempts", res.Attempts, "status", res.Status)
		w.done(Delivered)
		if err := m.Ack(); err != nil {
			log.Error("cannot acknowledge a delivered job; it will be delivered again", "error", err)
		}
	case Retry:
		if res.Reason == ReasonCanceled {
			log.Debug("delivery interrupted, giving it back to the queue", "error", res.Err)
		} else {
			log.Warn("delivery failed, will retry", "reason", res.Reason, "status", res.Status,
				"retry_in", res.Delay, "error", res.Err)
		}
		if err := m.Retry(res.Delay); err != nil {
			log.Error("cannot schedule the retry; the queue redelivers after the ack wait", "error", err)
		}
	case Dead:
		msg := "delivery failed, dead-lettering"
		if res.Gone {
			msg = "endpoint is gone (410), dead-lettering: the receiver says this URL was removed"
		}
		log.Warn(msg, "reason", res.Reason, "status", res.Status, "error", res.Err)
		info := queue.DeadLetterInfo{
			Reason:       deadLetterReason(res),
			LastStatus:   res.Status,
			BodyExcerpt:  res.BodyExcerpt,
			Attempts:     max(first+res.Attempts-1, 0),
			FirstAttempt: job.ReceivedAt,
			LastAttempt:  res.LastAttempt,
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
		defer cancel()
		if err := w.Queue.DeadLetter(dctx, m, info); err != nil {
			log.Error("cannot store the dead letter; the queue redelivers after the ack wait", "error", err)
			return
		}
		w.done(Dead)
	}
}

func (w *Worker) done(o Outcome) {
	if w.Done != nil {
		w.Done(o)
	}
}

// deadLetterReason is the reason stored with a dead letter: "status 400" for an answer that
// will not change, the transform's error, or the exhausted limit ("max attempts", "max age").
func deadLetterReason(res Result) string {
	switch res.Reason {
	case Reason3xx, Reason4xx, Reason410, ReasonStatus:
		return "status " + strconv.Itoa(res.Status)
	case ReasonTransform:
		if inner := errors.Unwrap(res.Err); inner != nil {
			return ReasonTransform + ": " + inner.Error()
		}
	}
	return res.Reason
}
