package gateway

import (
	"bytes"
	"context"
	"encoding/json"
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
	case !decisionJSON(answer):
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

// decisionJSON reports whether b is one JSON object with an integer ErrorCode, as Tencent
// reads it (PROTOCOL.md §1.4). A quoted "1" or a null is not one: Tencent would take the
// answer as a failed callback, outside the rule's on_failure.
func decisionJSON(b []byte) bool {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(b), &m); err != nil {
		return false
	}
	var code *int64
	return json.Unmarshal(m["ErrorCode"], &code) == nil && code != nil
}
