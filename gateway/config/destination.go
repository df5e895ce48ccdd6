package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/webhook"
	"github.com/fanout-gw/fanout/rules"
)

// DestinationSettings are the keys a destination inherits from defaults.
type DestinationSettings struct {
	Timeout     time.Duration
	Concurrency int
	Retry       Retry
	RateLimit   Rate
	Headers     map[string]Secret
	MaxBacklog  Backlog
}

// Backlog bounds a destination's pending deliveries, by count or by size: past it, new ones
// are dead-lettered with reason "backlog full". Written as a count (100000) or a size
// (2GiB); the zero value is no bound.
type Backlog struct {
	Jobs  int
	Bytes int64
}

// String formats the bound as written (a count, or a size in bytes).
func (b Backlog) String() string {
	switch {
	case b.Jobs > 0:
		return strconv.Itoa(b.Jobs)
	case b.Bytes > 0:
		return strconv.FormatInt(b.Bytes, 10) + "B"
	}
	return "none"
}

// MarshalText writes the bound as String does.
func (b Backlog) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// Retry is a destination's retry policy.
type Retry struct {
	MaxAttempts int
	Backoff     Backoff
	MaxAge      time.Duration
}

// Backoff is the wait between attempts: Initial, times Multiplier after each failure, at
// most Max, randomised by +/- Jitter.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

// Rate is a rate limit: N per Per.
type Rate struct {
	N   int
	Per time.Duration
}

// IsZero reports an unset rate (unlimited).
func (r Rate) IsZero() bool { return r.N == 0 }

// String formats the rate as written (200/s).
func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[r.Per]
	return fmt.Sprintf("%d/%s", r.N, unit)
}

// MarshalText writes the rate as written.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Destination is one downstream webhook.
type Destination struct {
	Name string
	URL  URL
	DestinationSettings
	SigningSecrets []Secret // Standard Webhooks whsec_ secrets, several for rotation
	Body           string   // expr transform; empty sends the original bytes
	ForwardQuery   bool
	TIMToken       Secret
	SuccessWhen    string // expr over the answer; empty: a 2xx status is a success
	// OrderBy is an expr over the callback naming its lane: callbacks with the same key are
	// delivered one after the other, in the order they were accepted. Empty: no order.
	OrderBy string
	// OnExhausted is what a lane does with a delivery that gives up: OnExhaustedDeadLetter
	// (the default: dead-letter it and move on) or OnExhaustedBlock (wait for an operator).
	OnExhausted string

	// Transform is the compiled Body (nil without one).
	Transform *rules.Body
	// Success is the compiled SuccessWhen (nil without one).
	Success *rules.Answer
	// Order is the compiled OrderBy (nil without one).
	Order *rules.Key
}

// The values of on_exhausted.
const (
	OnExhaustedDeadLetter = "dead_letter"
	OnExhaustedBlock      = "block"
)

// destNodes is where a destination's keys were written.
type destNodes struct {
	self, body, tim, success, order, exhausted *yaml.Node
	path                                       string
}

// settingFields decodes the keys a destination shares with defaults onto s.
func (d *decoder) settingFields(s *DestinationSettings) map[string]field {
	return map[string]field{
		"timeout":     d.setDuration(&s.Timeout, true),
		"concurrency": d.setInt(&s.Concurrency, 1, 4096),
		"rate_limit":  d.setRate(&s.RateLimit),
		"headers":     func(n *yaml.Node, p string) { d.headers(n, p, s) },
		"retry":       func(n *yaml.Node, p string) { d.retry(n, p, &s.Retry) },
		"max_backlog": d.setBacklog(&s.MaxBacklog),
	}
}

// setBacklog accepts a count of deliveries (100000) or a size (2GiB).
func (d *decoder) setBacklog(dst *Backlog) field {
	return func(n *yaml.Node, path string) {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		if jobs, err := strconv.Atoi(s); err == nil && jobs > 0 {
			*dst = Backlog{Jobs: jobs}
			return
		}
		if strings.IndexFunc(s, unicode.IsLetter) < 0 {
			d.errorf(n, path, "invalid max_backlog %q: want a count of deliveries (100000) or a size (2GiB)", s)
			return
		}
		size, ok := parseSize(s)
		if !ok {
			d.errorf(n, path, "invalid max_backlog %q: want a count of deliveries (100000) or a size (2GiB)", s)
			return
		}
		*dst = Backlog{Bytes: size}
	}
}

func (d *decoder) settings(n *yaml.Node, p string, s *DestinationSettings) {
	d.mapping(n, p, d.settingFields(s))
}

func (d *decoder) headers(n *yaml.Node, p string, s *DestinationSettings) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, p, "want a mapping of header names to values, got %s", kindName(n))
		return
	}
	if s.Headers == nil {
		s.Headers = map[string]Secret{}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, vn := n.Content[i], resolve(n.Content[i+1])
		if err := webhook.CheckHeaderName(k.Value); err != nil {
			d.errorf(k, join(p, k.Value), "%v", err)
			continue
		}
		v, ok := d.str(vn, join(p, k.Value))
		if !ok {
			continue
		}
		if err := webhook.CheckHeaderValue(v); err != nil {
			d.errorf(vn, join(p, k.Value), "%v", err)
			continue
		}
		s.Headers[k.Value] = Secret(v)
	}
}

func (d *decoder) retry(n *yaml.Node, p string, r *Retry) {
	d.mapping(n, p, map[string]field{
		"max_attempts": d.setInt(&r.MaxAttempts, 1, 1000),
		"max_age":      d.setDuration(&r.MaxAge, true),
		"backoff": func(n *yaml.Node, p string) {
			b := &r.Backoff
			d.mapping(n, p, map[string]field{
				"initial":    d.setDuration(&b.Initial, true),
				"max":        d.setDuration(&b.Max, true),
				"multiplier": d.setFloat(&b.Multiplier, 1, 100),
				"jitter":     d.setFloat(&b.Jitter, 0, 1),
			})
			if b.Max < b.Initial {
				d.errorf(n, join(p, "max"), "max (%s) is below initial (%s)", b.Max, b.Initial)
			}
		},
	})
}

func (d *decoder) setRate(dst *Rate) field {
	return func(n *yaml.Node, path string) {
		s, ok := d.str(n, path)
		if !ok || s == "" {
			return
		}
		num, unit, found := strings.Cut(s, "/")
		per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
		v, err := strconv.Atoi(num)
		if !found || per == 0 || err != nil || v <= 0 {
			d.errorf(n, path, "invalid rate %q: want N/s, N/m or N/h with N > 0, e.g. 200/s", s)
			return
		}
		*dst = Rate{N: v, Per: per}
	}
}

// checkDestinationsShape reports a destinations section that is not a mapping; its
// entries are decoded after every other section (decodeDestinations).
func checkDestinationsShape(d *decoder, n *yaml.Node, p string) {
	if !isNull(n) && n.Kind != yaml.MappingNode {
		d.errorf(n, p, "want a mapping of destination names to destinations, got %s", kindName(n))
	}
}

// decodeDestinations decodes every destination of the destinations section n, each
// starting from the defaults.
func (c *Config) decodeDestinations(d *decoder, n *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		p := join("destinations", k.Value)
		dest := &Destination{Name: k.Value, DestinationSettings: c.Defaults}
		dest.Headers = cloneHeaders(c.Defaults.Headers)
		dn := d.destination(v, p, dest)
		if err := webhook.CheckDestinationName(k.Value); err != nil {
			d.errorf(k, p, "%v", err)
		}
		if c.Destination(k.Value) != nil {
			d.errorf(k, p, "destination defined twice")
			continue
		}
		dn.self = k
		c.Destinations = append(c.Destinations, dest)
		c.pos.destination[dest] = dn
	}
}

func cloneHeaders(h map[string]Secret) map[string]Secret {
	if h == nil {
		return nil
	}
	out := make(map[string]Secret, len(h))
	for k, v := range h {
		out[k] = v
	}
	return out
}

func (d *decoder) destination(n *yaml.Node, p string, dest *Destination) destNodes {
	dn := destNodes{path: p}
	fields := d.settingFields(&dest.DestinationSettings)
	var urlNode *yaml.Node
	var urlSecret *bool
	fields["url"] = func(v *yaml.Node, p string) { urlNode = v; d.setHTTPURL(&dest.URL)(v, p) }
	fields["url_secret"] = func(v *yaml.Node, p string) {
		var b bool
		d.setBool(&b)(v, p)
		urlSecret = &b
	}
	fields["signing_secret"] = func(v *yaml.Node, p string) {
		d.list(v, p, func(i int, v *yaml.Node, p string) {
			s, ok := d.str(v, p)
			if !ok {
				return
			}
			if _, err := webhook.DecodeSecret(s); err != nil {
				d.errorf(v, p, "%v", err)
				return
			}
			dest.SigningSecrets = append(dest.SigningSecrets, Secret(s))
		})
	}
	fields["body"] = func(v *yaml.Node, p string) { dn.body = v; d.setStr(&dest.Body)(v, p) }
	fields["forward_query"] = d.setBool(&dest.ForwardQuery)
	fields["success_when"] = func(v *yaml.Node, p string) { dn.success = v; d.setStr(&dest.SuccessWhen)(v, p) }
	fields["tim_token"] = func(v *yaml.Node, p string) { dn.tim = v; d.setSecret(&dest.TIMToken)(v, p) }
	fields["order_by"] = func(v *yaml.Node, p string) { dn.order = v; d.setStr(&dest.OrderBy)(v, p) }
	fields["on_exhausted"] = func(v *yaml.Node, p string) {
		dn.exhausted = v
		s, ok := d.str(v, p)
		if !ok {
			return
		}
		if s != OnExhaustedDeadLetter && s != OnExhaustedBlock {
			d.errorf(v, p, "invalid on_exhausted %q: want dead_letter or block", s)
			return
		}
		dest.OnExhausted = s
	}
	dest.OnExhausted = OnExhaustedDeadLetter
	if !d.mapping(n, p, fields) {
		return dn
	}
	if urlNode == nil {
		d.errorf(n, p, "url is required")
	}
	if u := dest.URL.Parsed(); u != nil {
		// A chat-bot hook's URL is a credential as a whole unless said otherwise.
		dest.URL.whole = webhook.IsSecretHookHost(u.Host)
		if urlSecret != nil {
			dest.URL.whole = *urlSecret
		}
	}
	return dn
}

// checkDestinations warns about destinations nothing uses and settings without effect,
// and compiles the body transforms.
func (c *Config) checkDestinations(d *decoder, used map[string]bool) {
	for _, dest := range c.Destinations {
		dn := c.pos.destination[dest]
		if !used[dest.Name] {
			d.warnf(dn.self, dn.path, "destination %q is not used by any route or respond rule", dest.Name)
		}
		if dest.TIMToken != "" && !dest.ForwardQuery {
			d.warnf(dn.tim, join(dn.path, "tim_token"), "has no effect without forward_query: true (Sign travels in the query)")
		}
		if dest.Body != "" {
			b, err := rules.CompileBody(dest.Body)
			if err != nil {
				d.exprProblem(dn.body, join(dn.path, "body"), err)
			}
			dest.Transform = b
			for _, w := range rules.LintBody(dest.Body) {
				d.warnf(dn.body, join(dn.path, "body"), "%s", w.Message)
			}
		}
		if dest.SuccessWhen != "" {
			a, err := rules.CompileAnswer(dest.SuccessWhen)
			if err != nil {
				d.exprProblem(dn.success, join(dn.path, "success_when"), err)
			}
			dest.Success = a
		}
		c.checkOrder(d, dest, dn)
	}
}

// checkOrder compiles a destination's order_by and warns about an on_exhausted that has
// no lane to act on.
func (c *Config) checkOrder(d *decoder, dest *Destination, dn destNodes) {
	if strings.TrimSpace(dest.OrderBy) == "" {
		if dn.order != nil {
			d.errorf(dn.order, join(dn.path, "order_by"), "empty: remove it, or give an expression naming the lane (e.g. From_Account)")
		}
		if dn.exhausted != nil {
			d.warnf(dn.exhausted, join(dn.path, "on_exhausted"), "has no effect without order_by: only a lane can wait for an operator")
		}
		return
	}
	k, err := rules.CompileKey(dest.OrderBy)
	if err != nil {
		d.exprProblem(dn.order, join(dn.path, "order_by"), err)
		return
	}
	dest.Order = k
	// A field no callback carries is nil: every callback would take the fallback lane.
	for _, w := range rules.LintBody(dest.OrderBy) {
		d.warnf(dn.order, join(dn.path, "order_by"), "%s", w.Message)
	}
}

// suggestDest is a "did you mean" for an undefined destination name.
func (c *Config) suggestDest(name string) string {
	var names []string
	for _, d := range c.Destinations {
		names = append(names, d.Name)
	}
	if s, ok := rules.Suggest(name, names); ok {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

// fingerprint is what a reload compares to tell whether d changed. It holds secret
// values, so that a rotated secret is a change: compare it, never log it.
func (d *Destination) fingerprint() string {
	var secrets []string
	for _, s := range d.SigningSecrets {
		secrets = append(secrets, s.Value())
	}
	headers := map[string]string{}
	for k, v := range d.Headers {
		headers[k] = v.Value()
	}
	return fmt.Sprint(d.URL.Value(), d.URL.whole, headers, secrets, d.TIMToken.Value(), d.Timeout, d.Concurrency,
		d.Retry, d.RateLimit, d.MaxBacklog, d.Body, d.ForwardQuery, d.SuccessWhen, d.OrderBy, d.OnExhausted)
}
