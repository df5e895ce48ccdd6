package intake

import "github.com/fanout-gw/fanout/rules"

// FallbackKey is the lane of the callbacks whose order_by failed at run time (a field of
// the wrong type, a value that is neither a string nor a number): they are delivered in
// order among themselves, in the lane whose key is the empty string.
const FallbackKey = ""

// orderKey computes the key of the callback's lane at destination. A failure sends it to
// the fallback lane, counted in fanout_order_key_errors_total and logged (rate-limited).
func (in *Intake) orderKey(c *call, destination string, k *rules.Key, ev *rules.Event) string {
	key, err := k.Eval(ev)
	if err == nil {
		return key
	}
	if in.metrics.OrderKeyErrors != nil {
		in.metrics.OrderKeyErrors.WithLabelValues(destination).Inc()
	}
	if suppressed, ok := in.logLimit.allow("order_by " + destination); ok {
		in.log.Warn("order_by failed at run time: the callback goes to the fallback lane", "destination", destination,
			"request_id", c.RequestID, "command", c.command, "err", err, "suppressed", suppressed)
	}
	return FallbackKey
}
