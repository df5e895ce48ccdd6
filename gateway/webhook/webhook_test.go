package webhook

import (
	"net/url"
	"strings"
	"testing"
)

// plum is a secret distinctive enough to search for.
const plum = "PLUMtree7781"

func TestRedactURL(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"no credentials", "https://hooks.example.com/a/b", "https://hooks.example.com/a/b"},
		{"password", "https://bot:" + plum + "@hooks.example.com/a", "https://bot:<secret>@hooks.example.com/a"},
		{"user only (a token)", "https://" + plum + "@hooks.example.com/", "https://<secret>@hooks.example.com/"},
		{"query values", "https://oapi.dingtalk.com/robot/send?access_token=" + plum + "&x=1",
			"https://oapi.dingtalk.com/robot/send?access_token=<secret>&x=<secret>"},
		{"both", "http://u:" + plum + "@h:8000/p?k=" + plum, "http://u:<secret>@h:8000/p?k=<secret>"},
		{"nats list member", "nats://fanout:" + plum + "@n1:4222", "nats://fanout:<secret>@n1:4222"},
		{"forgotten scheme", "fanout:" + plum + "@n1:4222", "fanout:<secret>@n1:4222"},
		{"forgotten colon", "nats//fanout:" + plum + "@n1:4222", "nats//<secret>@n1:4222"},
		{"one slash", "https:/fanout:" + plum + "@n1/x", "https:/<secret>@n1/x"},
		{"no scheme", "fanout:" + plum + "@n1", "fanout:<secret>@n1"},
		{"@ in a path with a host", "https://h/users/@me", "https://h/users/@me"},
		{"bad escape", "https://u:" + plum + "%zz@h/", "<unparsable>"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactURL(tt.raw); got != tt.want {
				t.Errorf("RedactURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckDestinationName(t *testing.T) {
	for name, ok := range map[string]bool{
		"audit": true, "app-backend": true, "crm_2": true, "A-Z_0-9": true,
		"": false, "a b": false, "a.b": false, "a*": false, "a>": false, "crm/x": false, "é": false,
	} {
		err := CheckDestinationName(name)
		if (err == nil) != ok {
			t.Errorf("CheckDestinationName(%q) = %v, want ok %v", name, err, ok)
		}
		if err != nil && err.Error() != "invalid destination name: use letters, digits, - and _" {
			t.Errorf("CheckDestinationName(%q) = %q", name, err)
		}
	}
}

func TestCheckHeaderName(t *testing.T) {
	for name, want := range map[string]string{
		"Authorization":     "",
		"X-Api-Key":         "",
		"x-custom!#$%&'*+.": "",
		"Bad Name":          "invalid header name",
		"":                  "invalid header name",
		"X:Y":               "invalid header name",
		"Ünicode":           "invalid header name",
		"webhook-signature": "set by Fanout on every request, cannot be configured",
		"Fanout-Attempt":    "set by Fanout on every request, cannot be configured",
		"FANOUT-ROUTE":      "set by Fanout on every request, cannot be configured",
		"Webhook-Id":        "set by Fanout on every request, cannot be configured",
		"webhook-timestamp": "set by Fanout on every request, cannot be configured",
	} {
		got := ""
		if err := CheckHeaderName(name); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("CheckHeaderName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestCheckHeaderValue(t *testing.T) {
	for v, ok := range map[string]bool{
		"Bearer " + plum: true, "a\tb": true, "": true,
		"Bearer " + plum + "\r\nX-Injected: 1": false, "a\x00": false, "a\x7f": false,
	} {
		err := CheckHeaderValue(v)
		if (err == nil) != ok {
			t.Errorf("CheckHeaderValue(%q) = %v, want ok %v", v, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), plum) {
			t.Errorf("the error shows the value: %v", err)
		}
	}
}

func TestDecodeSecret(t *testing.T) {
	tests := []struct {
		secret, want string
		keyLen       int
	}{
		// The Standard Webhooks reference test vector's secret.
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "", 24},
		{"whsec_AAAAAAAAAAAAAAAAAAAAAA==", "", 16},
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "not a Standard Webhooks secret: want whsec_ followed by base64 (make one with `fanout secret`)", 0},
		{"whsec_not*base64", "not a Standard Webhooks secret: the part after whsec_ is not valid base64", 0},
		{"whsec_c2hvcnQ=", "signing secret too short: 5 bytes of key, want at least 16 (make one with `fanout secret`)", 0},
		{"whsec_", "signing secret too short: 0 bytes of key, want at least 16 (make one with `fanout secret`)", 0},
	}
	for _, tt := range tests {
		key, err := DecodeSecret(tt.secret)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want || len(key) != tt.keyLen {
			t.Errorf("DecodeSecret(%q) = %d bytes, %q; want %d bytes, %q", tt.secret, len(key), got, tt.keyLen, tt.want)
		}
	}
}

func TestSecretHookURLs(t *testing.T) {
	for host, want := range map[string]bool{
		"hooks.slack.com": true, "open.feishu.cn": true, "open.larksuite.com": true, "oapi.dingtalk.com": true,
		"qyapi.weixin.qq.com": true, "discord.com:443": true, "OAPI.DingTalk.com": true,
		"acme.webhook.office.com": true, "chat.googleapis.com": true,
		"hooks.example.com": false, "slack.com": false, "evilhooks.slack.com.example": false, "webhook.office.com": false,
	} {
		if got := IsSecretHookHost(host); got != want {
			t.Errorf("IsSecretHookHost(%q) = %v, want %v", host, got, want)
		}
	}
	u, _ := url.Parse("https://user:pw@hooks.slack.com/services/T0/B0/XXXX?x=1")
	if got, want := RedactWhole(u), "https://hooks.slack.com/<secret>"; got != want {
		t.Errorf("RedactWhole = %q, want %q", got, want)
	}
}
