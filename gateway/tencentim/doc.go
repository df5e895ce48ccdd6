// Package tencentim owns everything Fanout knows of Tencent IM's third-party callbacks:
// reading the query string Tencent adds (SdkAppid, CallbackCommand, Sign, RequestTime, ...),
// the checks a callback must pass before anything is queued (known SdkAppid, source IP,
// Sign and clock skew), the JSON answers Tencent expects (OK, FAIL, before-callback
// decisions, and what counts as a decision), the event id used for de-duplication,
// re-signing a query for a downstream that verifies Tencent's Sign itself, and the table of
// callback commands: which exist, which are "before" callbacks, which body fields each
// carries.
//
// It is pure protocol: it imports nothing of Fanout's, no Gin, no NATS and no net/http, so
// the receiver, delivery and rules (whose linter reads the command table) can all use it
// and tests can exercise it without a listener. It evaluates no rules and sends nothing.
package tencentim
