package config

import (
	"encoding/json"
	"net/url"
)

// Secret is a configured value that must never be shown: tokens, signing secrets, header
// values. Every way of printing it prints <secret> (or nothing when it is empty); Value
// returns the real thing for the code that uses it.
type Secret string

const redacted = "<secret>"

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
}

// Value returns the URL itself.
func (u URL) Value() string { return u.raw }

// Parsed returns the parsed URL (nil for the zero URL).
func (u URL) Parsed() *url.URL { return u.u }

// String returns the URL with credentials redacted.
func (u URL) String() string {
	if u.u == nil {
		return u.raw
	}
	c := *u.u
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), redacted)
		} else {
			c.User = url.User(redacted)
		}
	}
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			q[k] = []string{redacted}
		}
		c.RawQuery = q.Encode()
	}
	s := c.String()
	if r, err := url.PathUnescape(s); err == nil {
		return r // keep <secret> readable
	}
	return s
}

// GoString keeps %#v from printing credentials.
func (u URL) GoString() string { return u.String() }

// MarshalJSON writes the redacted URL.
func (u URL) MarshalJSON() ([]byte, error) { return json.Marshal(u.String()) }

// MarshalText writes the redacted URL.
func (u URL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }
