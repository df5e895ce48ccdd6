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
	// AckWait is the ack wait of every destination's queue consumer: how long a job handed
	// out may go without a word before JetStream hands it out again. The queue keeps a job
	// in hand alive every third of it (a long round of quick retries, a pause), so it only
	// decides how soon, after a crash, another replica or the restarted process takes over
	// the jobs the crashed one had in hand.
	AckWait = 15 * time.Second

	// storeTimeout bounds writing a job back (a retry, a hand-back) or a dead letter once
	// the round is over; a dead letter is written even when the handler's context has
	// ended, so that a finished round is not redone.
	storeTimeout = 10 * time.Second
)

// Worker delivers the jobs of one destination as they come from its queue consumer: Admit
// and Handle are the queue.ConsumeOptions.Admit and queue.Handler given to Queue.Consume.
//
// Attempts are numbered from the number stored with the job (queue.Message.Attempt): a
// round makes attempts n, n+1, ... and a job that must wait longer than QuickRetryMax is
// stored again with the number of its next attempt and the time it is due, holding no slot
// meanwhile. A round cut short by a stop stores the job back at once with the number of the
// attempt it did not make.
type Worker struct {
	Queue  *queue.Queue
	Sender *Sender
	// Current returns the live Destination, so that a reload swaps it without restarting
	// the consumer. nil means the destination was removed: the message is left
	// unacknowledged, to be redelivered (or dead-lettered by whoever removed it).
	Current func() *Destination
	// Breaker pauses the destination while it keeps failing (nil: never paused).
	Breaker *Breaker
	Logger  *slog.Logger // nil = slog.Default()
	// Done, when set, is told how each round ended, before the queue is: for metrics, the
	// admin API and the event log.
	Done func(End)
}

// End is how one round of attempts ended, as Worker.Done is told.
type End struct {
	Result
	Job     queue.Job // the job, Attempt being the number of the round's first attempt
	Attempt int       // the number of the last attempt made
	// Due is when a Retry's next attempt is due; HandedBack marks a Retry cut short by a
	// stop, stored back at once for this or another replica to continue.
	Due        time.Time
	HandedBack bool
	DeadReason string // Dead: the reason stored with the dead letter
}

// Admit waits for a free slot of the destination, which the job's first attempt then
// holds: the queue hands out a job only when it can be sent.
func (w *Worker) Admit(ctx context.Context) error {
	if d := w.Current(); d != nil && d.Slots != nil {
		return d.Slots.Acquire(ctx)
	}
	return nil
}

// Handle makes one round of attempts for m and ends it: Ack when delivered, Later with the
// delay Send chose, or a dead letter. It logs one warning per round with a failed attempt,
// naming the round's attempts ("1-4") and the last error. It owns the slot that Admit took.
func (w *Worker) Handle(ctx context.Context, m *queue.Message) {
	job := m.Job
	base := w.Logger
	if base == nil {
		base = slog.Default()
	}
	logger := func() *slog.Logger {
		return base.With("destination", job.Destination, "event_id", job.EventID, "request_id", job.RequestID)
	}

	d := w.Current()
	if d == nil {
		logger().Warn("destination is no longer configured, leaving the delivery in the queue")
		return
	}
	held := true
	releaseHeld := func() {
		if held && d.Slots != nil {
			d.Slots.Release()
		}
		held = false
	}

	probe := false
	if w.Breaker != nil {
		var err error
		if probe, err = w.Breaker.Acquire(ctx); err != nil {
			releaseHeld()
			w.handBack(m, m.Attempt(), logger) // stopping: let another worker or replica take it now
			return
		}
	}

	first := m.Attempt()
	sent := job
	sent.Attempt = first
	res := w.Sender.Send(ctx, d, sent, Round{Held: held, Breaker: w.Breaker, Probe: probe})
	held = false // Send gave it back
	if w.Breaker != nil {
		// A round that made no attempt (cut short, or a body transform that failed) says
		// nothing about the endpoint: it must neither resume a paused destination nor
		// reset the count of failed rounds.
		w.Breaker.Done(probe, res.Attempts > 0 && res.Reason != ReasonCanceled, endpointFailed(res))
	}
	// An ordered destination with on_exhausted: block keeps a delivery that gives up at the
	// head of its lane, for an operator, instead of dead-lettering it.
	res.Blocked = res.Outcome == Dead && d.BlockExhausted && m.Ordered()
	attempt := first + res.Attempts - 1 // the last attempt made
	end := End{Result: res, Job: sent, Attempt: attempt}
	switch res.Outcome {
	case Retry:
		end.HandedBack = res.Reason == ReasonCanceled || ctx.Err() != nil
		end.Due = time.Now().Add(res.Delay)
	case Dead:
		end.DeadReason = deadLetterReason(res)
	}
	if w.Done != nil {
		w.Done(end)
	}
	switch res.Outcome {
	case Delivered:
		if res.Attempts > 1 {
			// Every failed attempt is in a warn line: these were retried in the round.
			logger().Warn("delivered after failed attempts", "attempts", attemptRange(first, attempt-1), "url", d.RedactedURL(),
				"delivered_attempt", attempt, "error", res.LastFailure)
		} else if base.Enabled(ctx, slog.LevelDebug) {
			logger().Debug("delivered", "attempt", attempt, "status", res.Status)
		}
		if err := m.Ack(); err != nil {
			logger().Error("cannot acknowledge a delivered job; it will be delivered again", "error", err)
		}
	case Retry:
		if end.HandedBack {
			logger().Debug("delivery interrupted, handing it back to the queue", "error", res.Err)
			// An attempt the stop cut short (reason canceled) may not have reached the
			// receiver: its number is given again rather than skipped.
			next := attempt + 1
			if res.Reason == ReasonCanceled {
				next = attempt
			}
			w.handBack(m, next, logger)
			return
		}
		logger().Warn("delivery failed, will retry", "attempts", attemptRange(first, attempt), "url", d.RedactedURL(), "reason", res.Reason,
			"status", res.Status, "retry_in", res.Delay.Round(10*time.Millisecond).String(), "error", res.Err)
		lctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		if err := m.Later(lctx, attempt+1, end.Due); err != nil {
			logger().Error("cannot store the retry", "error", err)
		}
	case Dead:
		msg := "delivery failed, dead-lettering"
		if res.Blocked {
			msg = "delivery failed, blocking its lane until an operator retries or skips it"
		}
		if res.Gone {
			msg = "endpoint is gone (410), dead-lettering: the receiver says this URL was removed"
		}
		logger().Warn(msg, "attempts", attemptRange(first, attempt), "url", d.RedactedURL(), "reason", res.Reason, "status", res.Status, "error", res.Err)
		info := queue.DeadLetterInfo{
			Reason:       end.DeadReason,
			LastStatus:   res.Status,
			BodyExcerpt:  res.BodyExcerpt,
			LastError:    errorText(res.Err),
			Attempts:     max(attempt, 0),
			FirstAttempt: job.AttemptsSince(),
			LastAttempt:  res.LastAttempt,
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		defer cancel()
		if res.Blocked {
			if err := m.Block(dctx, info); err != nil {
				logger().Error("cannot record the blocked lane; the delivery is handled again", "error", err)
			}
			return
		}
		if err := w.Queue.DeadLetter(dctx, m, info); err != nil {
			logger().Error("cannot store the dead letter; the queue redelivers after the ack wait", "error", err)
		}
	}
}

// attemptRange names the attempts first to last of a round: "3", "1-4", or "none" when
// the round made none (a body transform that failed).
func attemptRange(first, last int) string {
	switch {
	case last < first:
		return "none"
	case last == first:
		return strconv.Itoa(first)
	}
	return strconv.Itoa(first) + "-" + strconv.Itoa(last)
}

// errorText is err's text, "" for nil.
func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// handBack stores m's job back at once, numbered attempt, for this or another replica to
// continue; it runs while stopping, so it does not use the handler's context.
func (w *Worker) handBack(m *queue.Message, attempt int, logger func() *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := m.Later(ctx, attempt, time.Now()); err != nil {
		logger().Warn("cannot hand the delivery back; the queue redelivers it after the ack wait", "error", err)
	}
}

// endpointFailed reports whether a round's outcome says the endpoint itself is failing
// (unreachable, timing out, overloaded or erroring), as opposed to answering.
func endpointFailed(res Result) bool {
	switch res.Reason {
	case ReasonConnection, ReasonTimeout, Reason408, Reason429, Reason5xx:
		return res.Outcome != Delivered
	case ReasonMaxAttempts, ReasonMaxAge:
		return res.Status == 0 || res.Status >= 500 || res.Status == 408 || res.Status == 429
	}
	return false
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
