package tencentim

import (
	"strconv"
	"strings"
	"time"
)

// Resign returns rawQuery with Sign and RequestTime made for token at now, for forwarding a
// callback to a downstream that verifies Tencent's Sign with its own token. Every other
// parameter keeps its bytes and its order; any Sign and RequestTime pairs are removed and the
// new ones appended at the end, where Tencent puts them. With token "" the result carries
// neither, as Tencent sends it when callback authentication is off.
func Resign(rawQuery, token string, now time.Time) string {
	var b strings.Builder
	b.Grow(len(rawQuery) + len("&Sign=&RequestTime=") + 64 + 20)
	first := true
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		key, _, _ := strings.Cut(pair, "=")
		// A key that does not decode is kept: it cannot be Sign or RequestTime.
		if k, err := unescape(key); err == nil && (k == "Sign" || k == "RequestTime") {
			continue
		}
		if !first {
			b.WriteByte('&')
		}
		b.WriteString(pair)
		first = false
	}
	if token == "" {
		return b.String()
	}
	requestTime := strconv.FormatInt(now.Unix(), 10)
	if !first {
		b.WriteByte('&')
	}
	b.WriteString("Sign=")
	b.WriteString(Sign(token, requestTime))
	b.WriteString("&RequestTime=")
	b.WriteString(requestTime)
	return b.String()
}
