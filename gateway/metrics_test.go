package gateway

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// mtConfig sends C2C.CallbackAfterSendMsg to three destinations, one route each, plus a
// route whose when fails at run time on every callback it sees (SendMsgResult is a number).
const mtConfig = `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
defaults:
  concurrency: 1
  retry: {max_attempts: 5, backoff: {initial: 10ms, max: 20ms, multiplier: 2, jitter: 0}}
destinations:
  ok: {url: %q}
  flaky: {url: %q}
  bad: {url: %q}
routes:
  - name: to-ok
    commands: [C2C.CallbackAfterSendMsg]
    to: [ok]
  - name: to-flaky
    commands: [C2C.CallbackAfterSendMsg]
    to: [flaky]
  - name: to-bad
    commands: [C2C.CallbackAfterSendMsg]
    to: [bad]
  - name: broken
    commands: [C2C.CallbackAfterSendMsg]
    when: SendMsgResult > From_Account
    to: [ok]
`

// TestMetricsAfterScriptedMix sends a known mix of accepted and rejected callbacks and
// checks the exact values of the fanout_* series once every delivery has finished.
func TestMetricsAfterScriptedMix(t *testing.T) {
	const n = 5
	const cmd = "C2C.CallbackAfterSendMsg"

	okRc := fanouttest.NewReceiver(t, nil)
	var mu sync.Mutex
	seen := map[string]bool{}
	// flaky fails the first attempt of each delivery: webhook-id is stable per event and
	// destination, so a retry carries the same one.
	flaky := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		id := r.Header.Get("webhook-id")
		mu.Lock()
		first := id == "" || !seen[id]
		seen[id] = true
		mu.Unlock()
		status := http.StatusOK
		if first {
			status = http.StatusServiceUnavailable
		}
		return fanouttest.Answer{Status: status}
	})
	bad := fanouttest.NewReceiver(t, fanouttest.Statuses(http.StatusBadRequest))

	cfg := fmt.Sprintf(mtConfig, fanouttest.App, filepath.Join(t.TempDir(), "queue"),
		okRc.URL()+"/ok", flaky.URL()+"/flaky", bad.URL()+"/bad")
	g := startGateway(t, fanouttest.WriteConfig(t, cfg))

	q := fanouttest.CallbackQuery(fanouttest.App, cmd)
	var first []byte
	for i := range n {
		body := fanouttest.C2CMessage(fmt.Sprintf("mt-key-%d", i))
		if i == 0 {
			first = body
		}
		accept(t, g, q, body)
	}
	accept(t, g, q, first) // a duplicate is answered OK too
	for range 2 {
		if a := callback(t, g, fanouttest.CallbackQuery("1400000999", cmd), fanouttest.C2CMessage("mt-unknown")); a.Status == http.StatusOK {
			t.Fatalf("unknown SdkAppid answered %d %s", a.Status, a.Body)
		}
	}
	if a := callback(t, g, q, []byte(`{"CallbackCommand":`)); a.Status != http.StatusBadRequest {
		t.Fatalf("broken JSON answered %d %s, want 400", a.Status, a.Body)
	}

	// Wait for every round to end and the queue to settle.
	waitMetric(t, g, "fanout_deliveries_total", map[string]string{"destination": "ok", "outcome": "delivered"}, n)
	waitMetric(t, g, "fanout_deliveries_total", map[string]string{"destination": "flaky", "outcome": "delivered"}, n)
	waitMetric(t, g, "fanout_deliveries_total", map[string]string{"destination": "bad", "outcome": "dead"}, n)
	waitMetric(t, g, "fanout_dead_letters", map[string]string{"destination": "bad"}, n)
	for _, d := range []string{"ok", "flaky", "bad"} {
		waitMetric(t, g, "fanout_queue_pending", map[string]string{"destination": d}, 0)
	}

	check := func(name string, labels map[string]string, want float64) {
		t.Helper()
		if got := scrapeMetrics(t, g).Sum(name, labels); got != want {
			t.Errorf("%s%v = %g, want %g", name, labels, got, want)
		}
	}
	l := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	// Callbacks: every outcome, and no other series (the totals add up).
	check("fanout_callbacks_total", l("app", fanouttest.App, "command", cmd, "outcome", "ok"), n)
	check("fanout_callbacks_total", l("app", fanouttest.App, "command", cmd, "outcome", "duplicate"), 1)
	check("fanout_callbacks_total", l("app", "other", "command", cmd, "outcome", "unknown_app"), 2)
	check("fanout_callbacks_total", l("app", fanouttest.App, "command", cmd, "outcome", "bad_json"), 1)
	check("fanout_callbacks_total", nil, n+1+2+1)
	// Every answered callback is timed, rejected ones included.
	check("fanout_callback_duration_seconds_count", nil, n+1+2+1)

	// A route match is counted once per callback: the duplicate matched its routes again
	// but is no new match. Rejected callbacks never reach matching.
	for _, r := range []string{"to-ok", "to-flaky", "to-bad"} {
		check("fanout_route_matches_total", l("route", r), n)
	}
	check("fanout_route_matches_total", l("route", "broken"), 0)
	check("fanout_route_matches_total", nil, 3*n)
	// The broken when fails on every callback that reaches matching, duplicate included.
	check("fanout_rule_errors_total", l("route", "broken"), n+1)
	check("fanout_rule_errors_total", nil, n+1)

	check("fanout_delivery_attempts_total", l("destination", "ok", "result", "2xx"), n)
	check("fanout_delivery_attempts_total", l("destination", "ok"), n)
	check("fanout_delivery_attempts_total", l("destination", "flaky", "result", "5xx"), n)
	check("fanout_delivery_attempts_total", l("destination", "flaky", "result", "2xx"), n)
	check("fanout_delivery_attempts_total", l("destination", "flaky"), 2*n)
	check("fanout_delivery_attempts_total", l("destination", "bad", "result", "4xx"), n)
	check("fanout_delivery_attempts_total", l("destination", "bad"), n)
	check("fanout_delivery_duration_seconds_count", nil, 4*n)

	check("fanout_deliveries_total", l("destination", "ok", "outcome", "delivered"), n)
	check("fanout_deliveries_total", l("destination", "flaky", "outcome", "delivered"), n)
	check("fanout_deliveries_total", l("destination", "bad", "outcome", "dead"), n)
	check("fanout_deliveries_total", nil, 3*n)

	for _, d := range []string{"ok", "flaky", "bad"} {
		check("fanout_queue_pending", l("destination", d), 0)
	}
	check("fanout_dead_letters", l("destination", "ok"), 0)
	check("fanout_dead_letters", l("destination", "flaky"), 0)
	check("fanout_dead_letters", l("destination", "bad"), n)

	check("fanout_config_last_reload_successful", nil, 1)
	if h := scrapeMetrics(t, g).Sum("fanout_config_hash", nil); h == 0 {
		t.Error("fanout_config_hash = 0, want the hash of the config")
	}
	if ts := scrapeMetrics(t, g).Sum("fanout_config_last_reload_success_timestamp_seconds", nil); ts <= 0 {
		t.Errorf("fanout_config_last_reload_success_timestamp_seconds = %g, want a time", ts)
	}

	// The receivers agree: nothing more was sent than the metrics say.
	if c := okRc.Count(); c != n {
		t.Errorf("ok received %d requests, want %d", c, n)
	}
	if c := flaky.Count(); c != 2*n {
		t.Errorf("flaky received %d requests, want %d", c, 2*n)
	}
	if c := bad.Count(); c != n {
		t.Errorf("bad received %d requests, want %d", c, n)
	}
}
