// Package delivery owns the way out of Fanout: one HTTP POST of a queued job to one
// destination, the Standard Webhooks signature and Fanout's headers on it, the single
// classification of an attempt's outcome (delivered, retry with a delay, dead), the backoff
// between attempts, the Worker that drives a destination's queue consumer with them, and
// the Responder that asks a respond rule's destination for the answer to a "before"
// callback.
//
// Quick retries (waits of at most QuickRetryMax) happen in-process through
// hashicorp/go-retryablehttp; longer waits go back to the durable queue as a delayed
// redelivery, so a restart or another replica continues them: retry state lives in the
// queue, not in goroutines or timers. The lanes of an ordered destination are the
// exception the queue makes: a failing job waits in hand, its attempt number stored aside,
// so that the later jobs of its key do not pass it (queue.ConsumeLanes).
//
// It knows no rules, no Gin and no YAML: a Destination arrives fully built (headers
// expanded, secrets given as strings, the body transform as a func), and the gateway maps
// the config onto it. It reaches the queue only through gateway/queue's Message and
// DeadLetter, and the Tencent protocol only through gateway/tencentim. It never logs header
// values, signing secrets, the TIM token or the credentials a URL carries (webhook.Redact).
package delivery
