package tencentim

import (
	"fmt"
	"net/url"
	"strings"
)

// Query is the part of a callback's query string that the protocol defines. Tencent always
// sends SdkAppid and CallbackCommand; contenttype, ClientIP and OptPlatform are optional
// (push callbacks omit the last two); Sign and RequestTime are present only when callback
// authentication is enabled in the console. A missing key leaves its field empty; a key
// given twice is an error.
type Query struct {
	SdkAppID        string // SdkAppid
	CallbackCommand string // CallbackCommand, e.g. "C2C.CallbackAfterSendMsg"
	ContentType     string // contenttype, normally "json"
	ClientIP        string // ClientIP: the IM user's address, not Tencent's egress address
	OptPlatform     string // OptPlatform, free-form ("RESTAPI", "iOS", "IOS", "Web", ...)
	Sign            string // Sign: hex SHA-256 of token + RequestTime
	RequestTime     string // RequestTime: Unix seconds, kept as sent because Sign covers the text
	Raw             string // the query string exactly as received, without the leading '?'
}

// ParseQuery reads the protocol's keys from a raw query string such as r.URL.RawQuery.
//
// It scans the string once instead of building url.ParseQuery's map, because it runs for
// every callback and needs seven known keys. Keys and values are percent-decoded with the
// same rules as url.ParseQuery ('+' is a space), but only when they contain '%' or '+', so
// the usual all-ASCII query costs no allocation. Key names are case-sensitive, as Tencent
// sends them ("SdkAppid", "contenttype"). An empty value counts as missing.
//
// The error reports a malformed percent-escape in one of the protocol's keys, or one of them
// given more than once (even empty, even spelled with escapes): Tencent sends each once, and
// a repeat is a forgery's way to have Fanout check one value while the raw query, forwarded
// and re-signed for a destination, carries another that its reader may take. The receiver
// answers it with 400 and Fail(err.Error()) and counts it as ReasonBadQuery. Unknown keys'
// values are not decoded, and a key that cannot be decoded cannot be one of ours, so neither
// can make a callback fail.
func ParseQuery(raw string) (Query, error) {
	q := Query{Raw: raw}
	var given [7]bool
	for rest := raw; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		key, value, _ := strings.Cut(pair, "=")
		key, err := unescape(key)
		if err != nil {
			continue
		}
		i := fieldIndex(key)
		if i < 0 {
			continue
		}
		if given[i] {
			return Query{Raw: raw}, fmt.Errorf("query parameter %s: given more than once", key)
		}
		given[i] = true
		if *q.field(key), err = unescape(value); err != nil {
			return Query{Raw: raw}, fmt.Errorf("query parameter %s: %w", key, err)
		}
	}
	return q, nil
}

// fieldIndex numbers the keys the protocol defines, -1 for any other.
func fieldIndex(key string) int {
	switch key {
	case "SdkAppid":
		return 0
	case "CallbackCommand":
		return 1
	case "contenttype":
		return 2
	case "ClientIP":
		return 3
	case "OptPlatform":
		return 4
	case "Sign":
		return 5
	case "RequestTime":
		return 6
	}
	return -1
}

// Values returns the parameters the protocol defines, by their names in the query, leaving
// out those that are empty: the query as rules see it (query.SdkAppid, query.ClientIP).
func (q Query) Values() map[string]string {
	m := make(map[string]string, 7)
	for k, v := range map[string]string{
		"SdkAppid": q.SdkAppID, "CallbackCommand": q.CallbackCommand, "contenttype": q.ContentType,
		"ClientIP": q.ClientIP, "OptPlatform": q.OptPlatform, "Sign": q.Sign, "RequestTime": q.RequestTime,
	} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// field returns where the value of key belongs, or nil for a key the protocol does not define.
func (q *Query) field(key string) *string {
	switch key {
	case "SdkAppid":
		return &q.SdkAppID
	case "CallbackCommand":
		return &q.CallbackCommand
	case "contenttype":
		return &q.ContentType
	case "ClientIP":
		return &q.ClientIP
	case "OptPlatform":
		return &q.OptPlatform
	case "Sign":
		return &q.Sign
	case "RequestTime":
		return &q.RequestTime
	}
	return nil
}

// unescape decodes s only when it holds an escape, so plain text is returned without allocating.
func unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}
