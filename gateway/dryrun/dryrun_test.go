package dryrun_test

import (
	"net/url"
	"slices"
	"testing"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/dryrun"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

const testConfig = `
tencent: {apps: [{sdkappid: 1400000000}]}
destinations:
  app: {url: "http://app.example/im?key=k-123", forward_query: true, tim_token: t-456}
  bot: {url: "http://bot.example/send", body: '{"text": From_Account + " -> " + To_Account}'}
  broken: {url: "http://broken.example/", body: 'MsgBody[9].MsgType'}
routes:
  - name: all
    to: [app]
  - name: c2c
    commands: ["C2C.*"]
    to: [bot, app]
  - name: broken
    when: From_Account == "nobody"
    to: [broken]
respond:
  - commands: [C2C.CallbackBeforeSendMsg]
    from: app
    timeout: 1s
    on_failure: deny
`

func load(t *testing.T) *config.Config {
	t.Helper()
	cfg, probs := config.Parse("fanout.yaml", []byte(testConfig), func(string) (string, bool) { return "", false })
	if cfg == nil {
		t.Fatal(probs)
	}
	return cfg
}

// TestRoute runs a real Tencent payload through a config with forwarding, re-signing and a
// body transform, and checks every part of the answer.
func TestRoute(t *testing.T) {
	cfg := load(t)
	body := fanouttest.Payload(t, "C2C.CallbackBeforeSendMsg")
	r := dryrun.Route(cfg, "before.json", body, url.Values{"OptPlatform": {"iOS"}, "Sign": {"abc"}})
	if r.Error != "" || len(r.RuleErrors) > 0 {
		t.Fatalf("error %q, rule errors %q", r.Error, r.RuleErrors)
	}
	if r.App != "1400000000" || r.Command != "C2C.CallbackBeforeSendMsg" || !slices.Equal(r.Routes, []string{"all", "c2c"}) {
		t.Errorf("app %q command %q routes %q", r.App, r.Command, r.Routes)
	}
	if r.Respond == nil || r.Respond.From != "app" || r.Respond.OnFailure != "deny" || r.Respond.Timeout != "1s" {
		t.Errorf("respond %+v", r.Respond)
	}
	// app answers synchronously, so it gets no asynchronous copy as well.
	if len(r.Deliveries) != 1 {
		t.Fatalf("deliveries %+v", r.Deliveries)
	}
	for _, d := range r.Deliveries {
		switch d.Destination {
		case "bot":
			if d.URL != "http://bot.example/send" || !d.Transformed || string(d.Body) != `{"text":"jared -> John"}` {
				t.Errorf("bot: url %s, transformed %v, body %s", d.URL, d.Transformed, d.Body)
			}
		default:
			t.Errorf("unexpected delivery to %s", d.Destination)
		}
	}
}

// TestRouteForwardQuery checks the URL a forwarding, re-signing destination is shown with.
func TestRouteForwardQuery(t *testing.T) {
	cfg := load(t)
	r := dryrun.Route(cfg, "state.json", fanouttest.Payload(t, "State.StateChange"), url.Values{"Sign": {"abc"}})
	if len(r.Deliveries) != 1 {
		t.Fatalf("deliveries %+v", r.Deliveries)
	}
	want := "http://app.example/im?key=<secret>&CallbackCommand=State.StateChange&SdkAppid=1400000000&contenttype=json&Sign=<re-signed>&RequestTime=<now>"
	if d := r.Deliveries[0]; d.URL != want {
		t.Errorf("url %s, want %s", d.URL, want)
	}
}

func TestRouteErrors(t *testing.T) {
	cfg := load(t)
	if r := dryrun.Route(cfg, "x.json", []byte(`[1]`), nil); r.Error == "" || len(r.Deliveries) != 0 {
		t.Errorf("a body that is not an object: %+v", r)
	}
	r := dryrun.Route(cfg, "x.json", []byte(`{"CallbackCommand":"State.StateChange","From_Account":"nobody"}`), nil)
	var broken *dryrun.Delivery
	for i := range r.Deliveries {
		if r.Deliveries[i].Destination == "broken" {
			broken = &r.Deliveries[i]
		}
	}
	if broken == nil || broken.BodyError == "" || broken.Body != nil {
		t.Errorf("a transform that fails: %+v", r.Deliveries)
	}
}
