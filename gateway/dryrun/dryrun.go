// Package dryrun says what a loaded config does with one callback, without sending
// anything: the routes that match, the respond rule that would answer, and the exact body
// each destination would receive. `fanout route` and the admin port's rules playground
// both call it, so that the two cannot disagree. It evaluates through package rules, as
// the receiver does; it serves no HTTP and knows nothing of NATS or the running gateway.
package dryrun

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/intake"
	"github.com/fanout-gw/fanout/rules"
)

// Result is what a dry run says about one payload. Its JSON is `fanout route --format
// json`'s, one element per payload.
type Result struct {
	Payload string `json:"payload"`
	App     string `json:"sdkappid"`
	Command string `json:"command"`
	// Status is the HTTP status serve answers with (filled by a caller that checks the
	// callback as serve does: fanout route): 200 when accepted; for a refused one, Reason
	// is the refusal's and Answer serve's FAIL answer.
	Status     int             `json:"status,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Answer     json.RawMessage `json:"answer,omitempty"`
	Unchecked  []string        `json:"unchecked,omitempty"` // checks serve makes that the caller could not
	Routes     []string        `json:"routes"`
	Respond    *Respond        `json:"respond,omitempty"`
	Deliveries []Delivery      `json:"deliveries"`
	RuleErrors []string        `json:"rule_errors,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// Respond is the respond rule that would answer the callback synchronously.
type Respond struct {
	From      string `json:"from"`
	Timeout   string `json:"timeout"`
	OnFailure string `json:"on_failure"`
}

// Delivery is what one destination would receive.
type Delivery struct {
	Destination string          `json:"destination"`
	Routes      []string        `json:"routes"`
	URL         string          `json:"url"` // redacted, with the forwarded query when forward_query is set
	Body        json.RawMessage `json:"body,omitempty"`
	BodyError   string          `json:"body_error,omitempty"`
	Transformed bool            `json:"transformed"`
	// Key is the lane of a destination with order_by; KeyError says why the fallback lane
	// (the empty key) was taken.
	Key      *string `json:"key,omitempty"`
	KeyError string  `json:"key_error,omitempty"`
}

// Route evaluates one payload exactly as the receiver would after its checks. name labels
// the payload in the result and its error. The query is the first configured app and the
// body's CallbackCommand, with contenttype=json, overridden by extra's parameters.
func Route(cfg *config.Config, name string, body []byte, extra url.Values) Result {
	r := Result{Payload: name, Routes: []string{}, Deliveries: []Delivery{}}
	fields, err := rules.ParseBody(body)
	if err != nil {
		r.Error = fmt.Sprintf("%s: %v", name, err)
		return r
	}
	q := url.Values{}
	if len(cfg.Tencent.Apps) > 0 {
		q.Set("SdkAppid", cfg.Tencent.Apps[0].SdkAppID)
	}
	if cmd, ok := fields["CallbackCommand"].(string); ok {
		q.Set("CallbackCommand", cmd)
	}
	q.Set("contenttype", "json")
	for k, v := range extra {
		q[k] = v
	}
	query := map[string]string{}
	for k, v := range q {
		query[k] = v[0]
	}
	ev := rules.NewEvent(q.Get("SdkAppid"), q.Get("CallbackCommand"), query, fields)
	return Evaluate(cfg, r, ev, q, body)
}

// Evaluate runs cfg's rules on ev, the callback of r (its payload name set) with query q and
// raw body, as the intake does once the callback passed its checks: the routes, the respond
// rule and what each destination would receive.
func Evaluate(cfg *config.Config, r Result, ev *rules.Event, q url.Values, body []byte) Result {
	if r.Routes == nil {
		r.Routes = []string{}
	}
	if r.Deliveries == nil {
		r.Deliveries = []Delivery{}
	}
	r.App, r.Command = ev.AppID, ev.Command
	m := cfg.Rules.Match(ev, func(kind, name string, err error) {
		r.RuleErrors = append(r.RuleErrors, fmt.Sprintf("%s %s: %v (counts as no match)", kind, name, err))
	})
	r.Routes = append(r.Routes, m.Routes...)
	if m.Respond != nil {
		rr := cfg.Respond[m.RespondIndex]
		r.Respond = &Respond{From: rr.From, Timeout: rr.Timeout.String(), OnFailure: rr.OnFailure}
	}
	for _, d := range m.Deliveries {
		dest := cfg.Destination(d.Destination)
		rd := Delivery{Destination: d.Destination, Routes: d.Routes, URL: dest.URL.String()}
		if dest.ForwardQuery {
			rd.URL += sep(rd.URL) + redactedQuery(q, dest.TIMToken != "")
		}
		sent := body
		if dest.Transform != nil {
			rd.Transformed = true
			var err error
			sent, err = dest.Transform.Render(ev)
			if err != nil {
				rd.BodyError = err.Error()
				sent = nil
			}
		}
		rd.Body = sent
		rd.Key, rd.KeyError = laneKey(dest, ev)
		r.Deliveries = append(r.Deliveries, rd)
	}
	return r
}

func sep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

// redactedQuery shows the forwarded query: Sign and RequestTime are re-signed (shown as
// placeholders) with tim_token, removed without.
func redactedQuery(q url.Values, resign bool) string {
	c := url.Values{}
	for k, v := range q {
		if k != "Sign" && k != "RequestTime" {
			c[k] = v
		}
	}
	s := c.Encode()
	if resign {
		s += "&Sign=<re-signed>&RequestTime=<now>"
	}
	return s
}

// laneKey is the lane a callback takes at dest: nil without order_by; the fallback lane,
// and why, when the key cannot be computed (as the intake decides).
func laneKey(dest *config.Destination, ev *rules.Event) (*string, string) {
	if dest.Order == nil {
		return nil, ""
	}
	key, err := dest.Order.Eval(ev)
	if err != nil {
		fallback := intake.FallbackKey
		return &fallback, err.Error()
	}
	return &key, ""
}
