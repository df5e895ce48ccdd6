package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Outcome is what becomes of a job after a round of attempts.
type Outcome int

const (
	Delivered Outcome = iota + 1 // acknowledge it
	Retry                        // give it back to the queue, to be redelivered after Result.Delay
	Dead                         // dead-letter it
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Dead:
		return "dead"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Reasons: short, fixed strings usable as metric labels. Those of one attempt come from
// classify and are passed to the Sender's Observe; Result.Reason is the last attempt's, or
// one of the last four when the round ended for another reason than the answer itself.
const (
	Reason2xx         = "2xx"
	Reason3xx         = "3xx" // redirects are not followed: the receiver must be configured with its final URL
	Reason408         = "408"
	Reason410         = "410" // the receiver says the endpoint is gone for good (Result.Gone)
	Reason429         = "429"
	Reason4xx         = "4xx"
	Reason5xx         = "5xx"
	ReasonStatus      = "status" // a status outside 200-599, which no receiver means
	ReasonTimeout     = "timeout"
	ReasonConnection  = "connection"
	ReasonCanceled    = "canceled" // the caller's context ended (shutdown): not the receiver's fault
	ReasonTransform   = "transform"
	ReasonMaxAttempts = "max attempts"
	ReasonMaxAge      = "max age"
	ReasonSuccessWhen = "success_when" // the answer's status was fine, its content said the delivery failed
)

// AttemptReasons are the reasons classify gives an attempt: every result the Sender's
// Observe reports. The gateway makes a fanout_delivery_attempts_total series of each.
func AttemptReasons() []string {
	return []string{Reason2xx, Reason3xx, Reason408, Reason410, Reason429, Reason4xx, Reason5xx,
		ReasonStatus, ReasonTimeout, ReasonConnection, ReasonCanceled}
}

// verdict is classify's answer for one attempt.
type verdict struct {
	outcome Outcome
	reason  string
	gone    bool
}

// classify is the one place that decides what an attempt's answer means:
// delivered on 2xx; retried on a connection error, a timeout, 408, 429 and 5xx, all of which
// a receiver can recover from by itself; dead at once on any other 4xx and on 3xx, which the
// same request would get again. err is the transport error of the attempt (nil when a response
// came back, whatever its status); ctx is the round's context, whose end is a cancellation
// rather than a failure of the receiver.
func classify(ctx context.Context, status int, err error) verdict {
	switch {
	case err != nil && ctx.Err() != nil:
		return verdict{outcome: Retry, reason: ReasonCanceled}
	case err != nil && isTimeout(err):
		return verdict{outcome: Retry, reason: ReasonTimeout}
	case err != nil:
		return verdict{outcome: Retry, reason: ReasonConnection}
	case status >= 200 && status <= 299:
		return verdict{outcome: Delivered, reason: Reason2xx}
	case status == http.StatusRequestTimeout:
		return verdict{outcome: Retry, reason: Reason408}
	case status == http.StatusTooManyRequests:
		return verdict{outcome: Retry, reason: Reason429}
	case status >= 500 && status <= 599:
		return verdict{outcome: Retry, reason: Reason5xx}
	case status == http.StatusGone:
		return verdict{outcome: Dead, reason: Reason410, gone: true}
	case status >= 400 && status <= 499:
		return verdict{outcome: Dead, reason: Reason4xx}
	case status >= 300 && status <= 399:
		return verdict{outcome: Dead, reason: Reason3xx}
	}
	return verdict{outcome: Dead, reason: ReasonStatus}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// attemptError describes a failed attempt for Result.Err: what happened, to which
// destination (`destination "audit": POST: timeout after 10s: ...`). The transport error is
// unwrapped from its url.Error, whose text repeats the URL with its query and userinfo.
func attemptError(d *Destination, status int, err error, v verdict) error {
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if v.reason == ReasonTimeout {
			return fmt.Errorf("destination %q: POST: timeout after %s: %w", d.Name, d.Timeout, err)
		}
		return fmt.Errorf("destination %q: POST: %w", d.Name, err)
	}
	if v.outcome == Delivered {
		return nil
	}
	if v.reason == ReasonSuccessWhen {
		return fmt.Errorf("destination %q: POST: status %d, but success_when is false", d.Name, status)
	}
	return fmt.Errorf("destination %q: POST: status %d", d.Name, status)
}

// retryAfter reads a Retry-After header, in seconds or as an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(min(s, math.MaxInt64/int64(time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// AnswerLimit bounds what is read of an answer that success_when judges.
const AnswerLimit = 64 << 10

// ExcerptLimit is how much of a failed answer's body is kept for the logs and the dead letter.
const ExcerptLimit = 512

// drainLimit is how much of a body is read after the excerpt so that the connection can be
// reused; a longer body closes the connection instead of reading it all.
const drainLimit = 64 << 10

// readExcerpt reads the start of body as valid UTF-8 (a multi-byte character cut at the limit
// or invalid bytes become U+FFFD), so it can go into JSON logs and the dead letter as is. A
// read error keeps what was read: the status already says what happened.
func readExcerpt(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, ExcerptLimit))
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// drainAndClose reads what is left of body, bounded, and closes it, so that the keep-alive
// connection goes back to the pool.
func drainAndClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLimit))
	_ = body.Close()
}
