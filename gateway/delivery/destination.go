package delivery

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fanout-gw/fanout/gateway/webhook"
)

// Limiter paces the attempts of one destination (RateLimit is the one Fanout uses). Send
// calls Wait before every HTTP attempt; an error (the context ended) stops the round like a
// cancellation.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Destination is one downstream webhook as delivery needs it: config already expanded and
// compiled by the gateway. Build it with NewDestination, which validates it and decodes the
// signing secrets once; do not change its fields afterwards (a reload builds a new one).
type Destination struct {
	Name           string
	URL            string            // absolute http(s) URL; its userinfo and query are secrets
	URLSecret      bool              // the whole URL is a secret (a chat-bot hook): shown as scheme://host/<secret>
	Headers        map[string]string // sent as is; the values are secrets and are never logged
	SigningSecrets []string          // Standard Webhooks secrets, "whsec_" + base64 key; several allow rotation
	Timeout        time.Duration     // of one HTTP attempt, reading the answer included
	Policy         Policy
	ForwardQuery   bool   // append the callback's original query to URL
	TIMToken       string // recompute Sign and RequestTime for this token; "" removes them
	// Transform makes the body sent from the callback's raw query and body; nil sends the
	// original bytes.
	// Its error dead-letters the job (reason "transform"): the same input fails every time.
	Transform func(rawQuery string, body []byte) ([]byte, error)
	// Success, when set, decides from the answer whether an attempt delivered
	// (success_when): false, or an error, makes the attempt a failure that is retried
	// (reason "success_when"), whatever its status. nil: a 2xx status is a success.
	Success   func(status int, header http.Header, body []byte) (bool, error)
	RateLimit Limiter // nil = unlimited
	// Slots bound the requests in flight (concurrency); nil = unbounded. Like RateLimit they
	// belong to the destination's name, kept across reloads.
	Slots *Slots
	// BlockExhausted (on_exhausted: block): an ordered job that gives up (its retries
	// exhausted, or an answer that will not change) blocks its lane until an operator
	// retries or skips it, instead of being dead-lettered.
	BlockExhausted bool

	target   *url.URL     // URL parsed
	redacted string       // URL with its credentials redacted, for logs
	keys     [][]byte     // SigningSecrets decoded
	replaced *atomic.Bool // a reload built a new Destination for this name
}

// MarkReplaced tells rounds still running on d that a reload replaced it: they end before
// their next in-process attempt, and the job is redelivered at once on the new settings
// (URL, headers, secrets, policy), so that a change applies from the next attempt.
func (d *Destination) MarkReplaced() { d.replaced.Store(true) }

// NewDestination validates d and returns a copy ready for Send. Every problem is reported,
// each naming the field; header values, secrets and the URL's query never appear in the
// error (a bad signing secret is named by its index).
func NewDestination(d Destination) (*Destination, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if err := webhook.CheckDestinationName(d.Name); err != nil {
		add("name: %w", err)
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL, query and userinfo included
		}
		add("url: %w", err)
	} else if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		add("url: must be an absolute http:// or https:// URL")
	}
	if d.Timeout <= 0 {
		add("timeout %s: must be positive", d.Timeout)
	}
	if err := d.Policy.validate(); err != nil {
		add("retry: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(d.Headers)) {
		if err := webhook.CheckHeaderName(name); err != nil {
			add("header %q: %w", name, err)
		} else if err := webhook.CheckHeaderValue(d.Headers[name]); err != nil {
			add("header %q: %w", name, err)
		}
	}
	keys := make([][]byte, 0, len(d.SigningSecrets))
	for i, s := range d.SigningSecrets {
		key, err := webhook.DecodeSecret(s)
		if err != nil {
			add("signing_secret[%d]: %w", i, err)
			continue
		}
		keys = append(keys, key)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("destination %q: %w", d.Name, errors.Join(errs...))
	}

	d.target = u
	d.redacted = webhook.Redact(u)
	if d.URLSecret {
		d.redacted = webhook.RedactWhole(u)
	}
	d.keys = keys
	d.replaced = new(atomic.Bool)
	return &d, nil
}

// RedactedURL is the destination URL with its credentials redacted (webhook.Redact): what
// logs and errors show.
func (d *Destination) RedactedURL() string { return d.redacted }

// signature is the webhook-signature header value: one "v1,<base64 HMAC-SHA256>" over
// id.timestamp.body per key, space-separated, so a receiver holding either the old or the new
// secret verifies during a rotation.
func signature(keys [][]byte, id, timestamp string, body []byte) string {
	sigs := make([]string, len(keys))
	for i, key := range keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(timestamp))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return strings.Join(sigs, " ")
}
