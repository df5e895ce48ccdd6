// Package tencentim owns the Tencent IM third-party callback protocol as Fanout receives it:
// reading the query string Tencent adds (SdkAppid, CallbackCommand, Sign, RequestTime, ...),
// the checks a callback must pass before anything is queued (known SdkAppid, source IP,
// Sign and clock skew), the JSON answers Tencent expects (OK, FAIL, before-callback
// decisions), the event id used for de-duplication, and re-signing a query for a downstream
// that verifies Tencent's Sign itself.
//
// It is pure protocol: it imports no Gin, no NATS and no net/http server code, so the Gin
// handler in gateway/httpapi can call it and tests can exercise it without a listener. It
// knows nothing of callback commands and their bodies; the rules package does.
package tencentim
