package gateway

import (
	"context"
	"time"

	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// respond answers a "before" callback from the respond rule's destination (see
// delivery.Responder), counts the outcome and logs an answer that could not be used.
func (g *Gateway) respond(ctx context.Context, rt *runtime, index int, q tencentim.Query, body []byte, requestID string) []byte {
	rule := rt.cfg.Respond[index]
	job := queue.Job{EventID: tencentim.EventID(q.SdkAppID, q.CallbackCommand, body), Destination: rule.From,
		Query: q.Raw, Body: body, ReceivedAt: time.Now(), RequestID: requestID}
	res := rt.responders[index].Respond(ctx, job)
	g.metrics.respond.WithLabelValues(rule.From, res.Outcome).Inc()
	if res.Outcome != delivery.RespondAnswered {
		g.log.Warn("respond: no usable answer, returning the on_failure decision", "request_id", requestID,
			"destination", rule.From, "outcome", res.Outcome, "status", res.Status, "on_failure", rule.OnFailure, "err", res.Err)
	}
	return res.Answer
}
