package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// respond asks the respond rule's destination for the answer to a "before" callback. A 200
// answer with a JSON object carrying ErrorCode is returned verbatim; anything else
// (timeout, error status, not JSON, unreachable) returns the rule's on_failure decision.
func (g *Gateway) respond(ctx context.Context, rt *runtime, index int, q tencentim.Query, body []byte, requestID string) []byte {
	rule := rt.cfg.Respond[index]
	dest := rt.dests[rule.From]
	ctx, cancel := context.WithTimeout(ctx, rule.Timeout)
	defer cancel()
	job := queue.Job{EventID: tencentim.EventID(q.SdkAppID, q.CallbackCommand, body), Destination: rule.From,
		Query: q.Raw, Body: body, ReceivedAt: time.Now(), RequestID: requestID}
	var status int
	var answer []byte
	var err error
	paused := g.destinationHealth(rule.From).Paused
	if !paused {
		status, answer, err = g.sender.Ask(ctx, dest, job)
	}
	outcome := "answered"
	switch {
	case paused: // failing for a while: answer now rather than after the whole timeout
		outcome = "paused"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		outcome = "timeout"
	case err != nil:
		outcome = "unreachable"
	case status != http.StatusOK:
		outcome = "error_status"
	case !tencentim.IsDecision(answer):
		outcome = "bad_answer"
	}
	g.metrics.respond.WithLabelValues(rule.From, outcome).Inc()
	if outcome == "answered" {
		return answer
	}
	g.log.Warn("respond: no usable answer, returning the on_failure decision", "request_id", requestID,
		"destination", rule.From, "outcome", outcome, "status", status, "on_failure", rule.OnFailure, "err", err)
	return tencentim.Decision(rule.OnFailureCode())
}
