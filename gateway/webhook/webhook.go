// Package webhook holds, once, the rules about a destination's webhook that several
// packages apply: what a destination may be called, which headers it may set, what a Standard
// Webhooks signing secret looks like, and how a URL that may carry credentials is shown.
// config applies them while loading (so that a problem has a position), delivery when it
// builds a destination, queue to the names it turns into subjects, and the admin API to
// the names it is asked about: one rule, one message, wherever it is checked.
//
// It imports nothing of Fanout's, so every other package may import it.
package webhook

import (
	"errors"
	"strings"
)

// CheckDestinationName checks a destination's name: letters, digits, '-' and '_'. The
// name is one token of the queue's subjects (fanout.jobs.<name>) and part of webhook-id.
func CheckDestinationName(name string) error {
	if name == "" {
		return errDestinationName
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return errDestinationName
		}
	}
	return nil
}

var errDestinationName = errors.New("invalid destination name: use letters, digits, - and _")

// reservedHeaders are set by Fanout on every attempt; a configured header must not hide
// them, or a receiver could no longer deduplicate or verify.
var reservedHeaders = []string{"Fanout-Route", "Fanout-Attempt", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"}

// CheckHeaderName checks the name of a header a destination sets: an RFC 9110 token
// (net/http refuses a request with anything else, and the job would be retried until it
// dies) that is not one of the headers Fanout sets itself.
func CheckHeaderName(name string) error {
	if name == "" {
		return errHeaderName
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || isTokenPunct(c)) {
			return errHeaderName
		}
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return errors.New("set by Fanout on every request, cannot be configured")
		}
	}
	return nil
}

var errHeaderName = errors.New("invalid header name")

func isTokenPunct(c byte) bool {
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// CheckHeaderValue checks the value of a header a destination sets: no control character
// but tab, so that a value cannot inject a header of its own. The error never shows the
// value, which may be a secret.
func CheckHeaderValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return errors.New("the value holds a control character")
		}
	}
	return nil
}
