package webhook

import (
	"net/url"
	"strings"
)

// Redacted is what a secret prints as.
const Redacted = "<secret>"

// RedactURL shows a URL with its credentials replaced by <secret>: the password (or a user
// name given alone, which is then a token) and every query value, as in
// https://bot:<secret>@hooks.example.com/send?access_token=<secret>. It is how Fanout
// shows any URL that may carry credentials: a destination's, in logs, errors, check and the
// admin API, and a NATS server's. A URL that does not parse is not shown at all, since
// where its credentials are cannot be known.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable>"
	}
	return Redact(u)
}

// Redact is RedactURL for a URL already parsed.
func Redact(u *url.URL) string {
	c := *u
	if c.Host == "" {
		// Without an authority (a forgotten scheme or //: user:pass@host, nats//u:p@h),
		// the userinfo is in the opaque part or the path.
		c.Opaque = redactUserinfo(c.Opaque)
		if p := redactUserinfo(c.Path); p != c.Path {
			c.Path, c.RawPath = p, ""
		}
	}
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), Redacted)
		} else {
			c.User = url.User(Redacted)
		}
	}
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			q[k] = []string{Redacted}
		}
		c.RawQuery = q.Encode()
	}
	s := c.String()
	if r, err := url.PathUnescape(s); err == nil {
		return r // keep <secret> readable
	}
	return s
}

// RedactWhole shows only the scheme and host of u: for a URL whose path is itself a
// credential (a chat-bot hook: https://hooks.slack.com/services/T0/B0/XXXX), as in
// https://hooks.slack.com/<secret>.
func RedactWhole(u *url.URL) string {
	return u.Scheme + "://" + u.Host + "/" + Redacted
}

// secretPathHosts are the hosts of chat-bot webhooks whose URL path (or query) is the
// credential: whoever has the URL can post to the channel.
var secretPathHosts = []string{
	"hooks.slack.com",     // Slack incoming webhooks: /services/T.../B.../token
	"open.feishu.cn",      // Feishu custom bots: /open-apis/bot/v2/hook/<token>
	"open.larksuite.com",  // Lark custom bots: the same
	"oapi.dingtalk.com",   // DingTalk robots: ?access_token=
	"qyapi.weixin.qq.com", // WeCom group robots: ?key=
	"discord.com",         // Discord: /api/webhooks/<id>/<token>
	"discordapp.com",
	"chat.googleapis.com", // Google Chat: ?key=&token=
}

// IsSecretHookHost reports whether host (a URL's host, with or without port) is a known
// chat-bot webhook host whose URL is a credential as a whole, or a subdomain of
// webhook.office.com (Microsoft Teams incoming webhooks).
func IsSecretHookHost(host string) bool {
	if h, _, found := strings.Cut(host, ":"); found {
		host = h
	}
	host = strings.ToLower(host)
	for _, s := range secretPathHosts {
		if host == s {
			return true
		}
	}
	return strings.HasSuffix(host, ".webhook.office.com")
}

// redactUserinfo replaces what s has before its last @, back to the previous /, with
// <secret>.
func redactUserinfo(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := strings.LastIndex(s[:at], "/") + 1
	return s[:start] + Redacted + s[at:]
}
