package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// seriesOf lists the label sets of name's series, as "k=v,k=v" sorted, with their values.
func seriesOf(t *testing.T, g *Gateway, name string) []string {
	t.Helper()
	var out []string
	for _, m := range scrapeMetrics(t, g) {
		if m.Name != name {
			continue
		}
		var kv []string
		for k, v := range m.Labels {
			kv = append(kv, k+"="+v)
		}
		slices.Sort(kv)
		out = append(out, fmt.Sprintf("%s %g", strings.Join(kv, ","), m.Value))
	}
	slices.Sort(out)
	return out
}

// TestSeriesFollowTheConfig: the per-route and per-destination series exist at 0 from the
// start, before any callback, and after a reload those of the new routes and destinations
// do too, while those of the removed ones are gone.
func TestSeriesFollowTheConfig(t *testing.T) {
	rc := fanouttest.NewReceiver(t, nil)
	head := fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
tencent: {apps: [{sdkappid: %s}]}
queue: {dir: %q}
`, fanouttest.App, filepath.Join(t.TempDir(), "queue"))
	first := head + fmt.Sprintf(`destinations:
  crm: {url: %q}
  moderator: {url: %q}
routes:
  - {name: to-crm, commands: [C2C.CallbackAfterSendMsg], to: [crm]}
respond:
  - {commands: [C2C.CallbackBeforeSendMsg], from: moderator}
`, rc.URL(), rc.URL())
	path := fanouttest.WriteConfig(t, first)
	g := startGateway(t, path)

	check := func(name string, want ...string) {
		t.Helper()
		slices.Sort(want)
		if got := seriesOf(t, g, name); !slices.Equal(got, want) {
			t.Errorf("%s:\n  %s\nwant\n  %s", name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	attempts := func(dest string) []string {
		var out []string
		for _, r := range []string{"2xx", "3xx", "408", "410", "429", "4xx", "5xx", "status", "timeout", "connection", "canceled"} {
			out = append(out, "destination="+dest+",result="+r+" 0")
		}
		return out
	}
	check("fanout_route_matches_total", "route=to-crm 0")
	check("fanout_rule_errors_total", "route=to-crm 0", "route=respond[0] 0")
	check("fanout_deliveries_total", "destination=crm,outcome=delivered 0", "destination=crm,outcome=dead 0",
		"destination=moderator,outcome=delivered 0", "destination=moderator,outcome=dead 0")
	check("fanout_delivery_attempts_total", append(attempts("crm"), attempts("moderator")...)...)
	check("fanout_delivery_duration_seconds_count", "destination=crm 0", "destination=moderator 0")
	check("fanout_backlog_full_total", "destination=crm 0", "destination=moderator 0")
	check("fanout_destination_paused", "destination=crm 0", "destination=moderator 0")
	check("fanout_respond_total", "destination=moderator,outcome=answered 0", "destination=moderator,outcome=paused 0",
		"destination=moderator,outcome=timeout 0", "destination=moderator,outcome=unreachable 0",
		"destination=moderator,outcome=error_status 0", "destination=moderator,outcome=bad_answer 0")

	// One delivery, so that a removed series had a value.
	accept(t, g, fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg"), fanouttest.C2CMessage("series-1"))
	waitMetric(t, g, "fanout_deliveries_total", map[string]string{"destination": "crm", "outcome": "delivered"}, 1)

	// crm, its route and the respond rule go; audit and its route come.
	second := head + fmt.Sprintf(`destinations:
  moderator: {url: %q}
  audit: {url: %q}
routes:
  - {name: to-audit, to: [audit]}
`, rc.URL(), rc.URL())
	fanouttest.ReplaceFile(t, path, second)
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("fanout_route_matches_total", "route=to-audit 0")
	check("fanout_rule_errors_total", "route=to-audit 0")
	check("fanout_deliveries_total", "destination=audit,outcome=delivered 0", "destination=audit,outcome=dead 0",
		"destination=moderator,outcome=delivered 0", "destination=moderator,outcome=dead 0")
	check("fanout_delivery_attempts_total", append(attempts("audit"), attempts("moderator")...)...)
	check("fanout_delivery_duration_seconds_count", "destination=audit 0", "destination=moderator 0")
	check("fanout_backlog_full_total", "destination=audit 0", "destination=moderator 0")
	check("fanout_destination_paused", "destination=audit 0", "destination=moderator 0")
	check("fanout_respond_total") // moderator answers no respond rule any more
}
