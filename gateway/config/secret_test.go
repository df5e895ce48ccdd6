package config

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// plum is a secret distinctive enough to search for; plumKey is a Standard Webhooks key
// made of it (base64 of plum twice), searched for too.
const (
	plum    = "PLUMtree7781"
	plumKey = "UExVTXRyZWU3NzgxUExVTXRyZWU3Nzgx"
)

// assertNoSecret fails when out shows plum or plumKey.
func assertNoSecret(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range []string{plum, plumKey} {
		if strings.Contains(out, s) {
			t.Errorf("%s shows a secret:\n%s", what, out)
		}
	}
}

// printings are the ways a value can end up in a log line, an error or the admin API.
func printings(t *testing.T, v any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%s", "%q", "%#v", "%x", "%d", "%t"} {
		out[verb] = fmt.Sprintf(verb, v)
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%T): %v", v, err)
	}
	out["json"] = string(data)
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("loaded", "value", v)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("loaded", "value", v)
	out["slog text"], out["slog json"] = text.String(), js.String()
	return out
}

// readable undoes the encodings of printings' %x and JSON forms, so that they can be
// searched for <secret>.
func readable(how, out string) string {
	if how == "%x" {
		b, _ := hex.DecodeString(out)
		return string(b)
	}
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">").Replace(out)
}

func TestSecretPrinting(t *testing.T) {
	s := Secret(plum)
	if s.Value() != plum {
		t.Fatalf("Value() = %q", s.Value())
	}
	for how, out := range printings(t, s) {
		assertNoSecret(t, how, out)
		if !strings.Contains(readable(how, out), "<secret>") {
			t.Errorf("%s: %q does not say <secret>", how, out)
		}
	}
	if text, _ := s.MarshalText(); string(text) != "<secret>" {
		t.Errorf("MarshalText = %q", text)
	}
	var empty Secret
	if empty.String() != "" || fmt.Sprintf("%v", empty) != "" {
		t.Errorf("an empty secret prints %q", empty.String())
	}
	if data, _ := json.Marshal(empty); string(data) != `""` {
		t.Errorf("an empty secret marshals as %s", data)
	}
}

// TestURLRedaction checks the URL type as Parse makes it: printed redacted everywhere (the
// redaction itself is webhook.RedactURL's, tested there), Value intact.
func TestURLRedaction(t *testing.T) {
	yaml := minimal + "routes: [{name: r, to: [a]}]\ndestinations:\n  a: {url: 'https://bot:" + plum + "@hooks.example.com/x?access_token=" + plum + "'}\n"
	c := mustParse(t, yaml, nil)
	u := c.Destination("a").URL
	if u.Value() != "https://bot:"+plum+"@hooks.example.com/x?access_token="+plum {
		t.Fatalf("Value() = %q", u.Value())
	}
	if p, _ := u.Parsed().User.Password(); p != plum {
		t.Errorf("Parsed() lost the password")
	}
	for how, out := range printings(t, u) {
		assertNoSecret(t, how, out)
		if !strings.Contains(readable(how, out), "hooks.example.com/x?access_token=<secret>") {
			t.Errorf("%s: %q does not show the redacted URL", how, out)
		}
	}
	if (URL{}).String() != "" {
		t.Errorf("the zero URL prints %q", URL{}.String())
	}
}

// TestConfigLeaksNoSecret loads a config with a secret in every place one goes and prints
// it every way a log line, the admin API or check could.
func TestConfigLeaksNoSecret(t *testing.T) {
	yaml := `
admin: {listen: "0.0.0.0:9090", token: ` + plum + `}
tencent:
  apps: [{sdkappid: 1400000000, token: "${TIM_TOKEN}"}]
queue:
  url: nats://fanout:` + plum + `@n1:4222,nats://fanout:` + plum + `@n2:4222
destinations:
  a:
    url: https://bot:` + plum + `@hooks.example.com/x?access_token=` + plum + `
    headers: {Authorization: "Bearer ` + plum + `"}
    signing_secret: [whsec_` + plumKey + `]
    forward_query: true
    tim_token: ${APP_TIM_TOKEN}
  slack:
    url: https://hooks.slack.com/services/T0/B0/` + plum + `
  custom:
    url: https://hooks.example.com/hook/` + plum + `
    url_secret: true
defaults:
  headers: {X-Api-Key: ` + plum + `}
routes: [{name: r, to: [a, slack, custom]}]
`
	c := mustParse(t, yaml, map[string]string{"TIM_TOKEN": plum, "APP_TIM_TOKEN": plum})
	d := c.Destination("a")
	// The secrets are there, for the code that uses them.
	held := []string{c.Admin.Token.Value(), c.Tencent.Apps[0].Token.Value(), d.TIMToken.Value(),
		d.Headers["Authorization"].Value(), d.Headers["X-Api-Key"].Value(), d.SigningSecrets[0].Value(),
		c.Queue.URL.Value(), d.URL.Value()}
	for i, v := range held {
		if !strings.Contains(v, plum) && !strings.Contains(v, plumKey) {
			t.Fatalf("secret %d not loaded: %q", i, v)
		}
	}
	for _, name := range []string{"slack", "custom"} {
		if u := c.Destination(name).URL; !u.Whole() || !strings.Contains(u.Value(), plum) {
			t.Errorf("%s: url_secret %v, url %q: want the whole URL secret, and held", name, u.Whole(), u.Value())
		}
	}
	if c.Destination("a").URL.Whole() {
		t.Error("a: a URL on an unknown host is not a secret as a whole unless url_secret says so")
	}
	values := map[string]any{"*Config": c, "Config": *c, "*Destination": d, "Destination": *d,
		"Admin": c.Admin, "Tencent": c.Tencent, "Queue": c.Queue, "Defaults": c.Defaults,
		"Destinations": c.Destinations, "a caller's struct": struct{ C *Config }{c}}
	for name, v := range values {
		for how, out := range printings(t, v) {
			assertNoSecret(t, name+" "+how, out)
		}
	}
}

// TestProblemsLeakNoSecret puts the secret where it makes problems, in a config that has
// other mistakes too, and checks the problems as check prints them, text and JSON.
func TestProblemsLeakNoSecret(t *testing.T) {
	yaml := `
admin: {token: "` + plum + `${"}
tencent:
  apps: [{sdkappid: 0, token: "${TIM_TOKEN}"}]
queue:
  url: nat://fanout:` + plum + `@n1:4222,fanout:` + plum + `@n2:4222,nats//fanout:` + plum + `@n3:4222
destinations:
  a:
    url: ftp://u:` + plum + `@a.example.com/x?token=` + plum + `
    headers: {"Bad Name": "Bearer ` + plum + `", Authorization: "Bearer ` + plum + `${"}
    signing_secret: [whsec_` + plum + `!, ` + plum + `, whsec_UExVTXRyZWU3Nzgx]
    tim_token: ${APP_TIM_TOKEN}
  b:
    url: u:` + plum + `@b.example.com
  c:
    url: https://u:` + plum + `@c.example.com/?access_token=` + plum + `
    body: From_Account +
routes: [{name: r, to: [a, b, c], when: 'From_Account == "` + plum + `" &&'}]
`
	c, probs := Parse("f.yaml", []byte(yaml), mapEnv(map[string]string{"TIM_TOKEN": plum, "APP_TIM_TOKEN": plum}))
	if c != nil {
		t.Fatalf("a bad config loaded")
	}
	assertNoSecret(t, "problems", probs.Error())
	data, err := json.Marshal(probs)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "problems as JSON", string(data))
	for _, p := range probs {
		assertNoSecret(t, "problem %#v", fmt.Sprintf("%#v", p))
	}

	// Each secret-bearing mistake was reported, so the checks above saw them.
	var paths []string
	for _, p := range probs {
		paths = append(paths, p.Path)
	}
	for _, want := range []string{"admin.token", "tencent.apps[0].sdkappid", "queue.url", "destinations.a.url",
		"destinations.a.headers.Bad Name", "destinations.a.headers.Authorization", "destinations.a.signing_secret[0]",
		"destinations.a.signing_secret[1]", "destinations.a.signing_secret[2]", "destinations.a.tim_token",
		"destinations.b.url", "destinations.c.body", "routes[0].when"} {
		if !slices.Contains(paths, want) {
			t.Errorf("no problem at %s; got:\n%v", want, probs)
		}
	}
	if n := strings.Count(probs.Error(), "queue.url: invalid server URL"); n != 3 {
		t.Errorf("%d queue URL problems, want 3:\n%v", n, probs)
	}
}
