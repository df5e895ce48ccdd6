package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/fanout-gw/fanout/gateway/webhook"
)

// Secret is a configured value that must never be shown: tokens, signing secrets, header
// values. Every way of printing it prints <secret> (or nothing when it is empty); Value
// returns the real thing for the code that uses it.
type Secret string

const redacted = webhook.Redacted

// Value returns the secret itself.
func (s Secret) Value() string { return string(s) }

// String returns <secret>, or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// Format prints String for every verb. fmt answers a verb that does not suit a string
// (%d, %t) with the raw value, %!d(config.Secret=...), skipping String.
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprintf(f, fmt.FormatString(f, verb), s.String()) }

// MarshalJSON writes <secret> (or "").
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText writes <secret> (or ""), for encoders that use it (yaml, slog's text handler).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// URL is a configured URL whose userinfo and query may carry credentials
// (https://oapi.dingtalk.com/robot/send?access_token=...). It prints with the password
// and every query value replaced by <secret>.
type URL struct {
	raw string
	u   *url.URL
	// whole: the URL is a credential as a whole (a chat-bot hook): it prints as its scheme
	// and host only (url_secret).
	whole bool
}

// Whole reports whether the URL prints as its scheme and host only (url_secret).
func (u URL) Whole() bool { return u.whole }

// Value returns the URL itself.
func (u URL) Value() string { return u.raw }

// Parsed returns the parsed URL (nil for the zero URL).
func (u URL) Parsed() *url.URL { return u.u }

// String returns the URL with credentials redacted (webhook.Redact).
func (u URL) String() string {
	if u.u == nil {
		return u.raw
	}
	if u.whole {
		return webhook.RedactWhole(u.u)
	}
	return webhook.Redact(u.u)
}

// GoString keeps %#v from printing credentials.
func (u URL) GoString() string { return u.String() }

// Format prints String for every verb (see Secret.Format; a %d would print the fields).
func (u URL) Format(f fmt.State, verb rune) { fmt.Fprintf(f, fmt.FormatString(f, verb), u.String()) }

// MarshalJSON writes the redacted URL.
func (u URL) MarshalJSON() ([]byte, error) { return json.Marshal(u.String()) }

// MarshalText writes the redacted URL.
func (u URL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// Format prints a Destination as %v, %+v or %#v would, and as %v for any other verb. Without
// it, fmt prints a *Destination inside a slice or struct under %s or %q through its bad-verb
// path, which skips String methods: the secrets and URLs would show their values.
func (d Destination) Format(f fmt.State, verb rune) {
	type plain Destination // without methods, so not back here
	formatPlain(f, verb, "config.Destination", plain(d))
}

// Format prints a Config as %v, %+v or %#v would, and as %v for any other verb: see
// Destination.Format. It covers a *Config inside a caller's struct.
func (c Config) Format(f fmt.State, verb rune) {
	type plain Config
	formatPlain(f, verb, "config.Config", plain(c))
}

func formatPlain(f fmt.State, verb rune, typeName string, v any) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, fields, _ := strings.Cut(fmt.Sprintf("%#v", v), "{")
		fmt.Fprint(f, typeName+"{"+fields)
	case verb == 'v' && f.Flag('+'):
		fmt.Fprintf(f, "%+v", v)
	default:
		fmt.Fprintf(f, "%v", v)
	}
}
