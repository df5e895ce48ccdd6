package delivery

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// Outcomes of Respond, as fanout_respond_total labels them.
const (
	RespondAnswered    = "answered"     // the destination's answer is returned verbatim
	RespondPaused      = "paused"       // the destination is paused: not asked
	RespondTimeout     = "timeout"      // no answer within the rule's timeout
	RespondUnreachable = "unreachable"  // no HTTP answer at all
	RespondErrorStatus = "error_status" // an answer other than 200
	RespondBadAnswer   = "bad_answer"   // a 200 that is not a Tencent decision
)

// RespondOutcomes are every outcome of Respond.
func RespondOutcomes() []string {
	return []string{RespondAnswered, RespondPaused, RespondTimeout, RespondUnreachable, RespondErrorStatus, RespondBadAnswer}
}

// Responder answers the "before" callbacks a respond rule matches, synchronously, from the
// rule's destination. The gateway builds one per respond rule and config.
type Responder struct {
	Sender      *Sender
	Destination *Destination
	Timeout     time.Duration // of the whole exchange: it must leave Tencent time to read the answer
	OnFailure   int           // the decision (ErrorCode) answered when no usable answer comes
	// Paused reports whether the destination is paused (nil: never). A paused destination
	// is not asked: the decision is answered at once rather than after the whole timeout.
	Paused func() bool
}

// RespondResult is how one Respond went.
type RespondResult struct {
	Answer  []byte // what Tencent gets: the destination's answer, or the on_failure decision
	Outcome string // a Respond* constant
	Status  int    // the destination's HTTP status; 0 when none came back
	Err     error  // why the exchange failed, when it did
}

// Respond asks the destination for the answer to a "before" callback, in one attempt made
// as Send makes them (headers, signature, forwarded query). A 200 answer that Tencent reads
// as a decision (tencentim.IsDecision) is returned verbatim; anything else (paused, timeout,
// unreachable, an error status, not a decision) returns the OnFailure decision.
func (r *Responder) Respond(ctx context.Context, job queue.Job) RespondResult {
	if r.Paused != nil && r.Paused() {
		return r.failed(RespondPaused, 0, nil)
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	status, answer, err := r.Sender.Ask(ctx, r.Destination, job)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return r.failed(RespondTimeout, status, err)
	case err != nil:
		return r.failed(RespondUnreachable, status, err)
	case status != http.StatusOK:
		return r.failed(RespondErrorStatus, status, nil)
	case !tencentim.IsDecision(answer):
		return r.failed(RespondBadAnswer, status, nil)
	}
	return RespondResult{Answer: answer, Outcome: RespondAnswered, Status: status}
}

func (r *Responder) failed(outcome string, status int, err error) RespondResult {
	return RespondResult{Answer: tencentim.Decision(r.OnFailure), Outcome: outcome, Status: status, Err: err}
}
