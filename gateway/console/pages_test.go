package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/dryrun"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestConsolePages sends Tencent's payloads through a gateway whose audit refuses them,
// then loads every page and checks that it shows the gateway's state: the token prompt,
// the Overview's tiles and charts, a card per destination, the dead letters, the routes.
func TestConsolePages(t *testing.T) {
	app, audit, bot := newDownstream(t, 200), newDownstream(t, 400), newDownstream(t, 200)
	gw := startGateway(t, app, audit, bot)
	for _, f := range fanouttest.PayloadFiles(t) {
		name := strings.TrimSuffix(f[strings.LastIndex(f, "/")+1:], ".json")
		gw.callback(withKey(t, name, "pages-"+name))
	}
	waitUntil(t, "the group callbacks to be dead-lettered at audit", func() bool { return gw.destination("audit").DeadLetters >= 6 })

	tb := openConsole(t, gw)
	tb.login()
	if got := eval[string](tb, `sessionStorage.getItem('fanout.admin-token')`); got != consoleToken {
		t.Errorf("sessionStorage holds %q, want the token", got)
	}
	if n := eval[int](tb, `localStorage.length`); n != 0 {
		t.Errorf("localStorage has %d items: the token must stay in the tab", n)
	}

	// Overview: four charts, the callbacks' outcome in the legend, the dead letters counted.
	tb.waitFor("four charts", `document.querySelectorAll('#overview-charts svg').length === 4`)
	tb.waitText(`[data-series="callbacks"] .legend`, "ok")
	tb.waitText(`[data-series="deliveries"] .legend`, "app-backend")
	tb.waitText("#overview-tiles", "Dead letters")
	tb.waitText("#config-tile", "last reload ok")
	tb.waitText("#overview-errors", "audit")

	// Destinations: a card each, the URL's secret redacted.
	tb.show("#/destinations", "Destinations")
	tb.waitFor("three cards", `document.querySelectorAll('#destination-cards .card').length === 3`)
	tb.waitText(`[data-destination="audit"] .url`, "token=<secret>")
	tb.waitText(`[data-destination="audit"]`, "Dead letters")
	tb.waitText(`[data-destination="oncall-bot"]`, "body transform")

	// Dead letters: the list, and one opened.
	tb.show("#/dead-letters", "Dead letters")
	tb.waitFor("dead letters listed", `document.querySelectorAll('#dlq-table tbody tr[data-id]').length >= 6`)
	tb.do("opening the first dead letter", chromedp.Click(chromedp.CSS("#dlq-table tbody tr[data-id] td:nth-child(4)")))
	tb.waitText("#dlq-detail", "status 400")
	tb.waitText("#dlq-body", "CallbackCommand")

	// Events: this gateway's event log is off (the default), and the page says how to turn
	// it on instead of failing.
	tb.show("#/events", "Events")
	tb.waitText("#events-off", "The event log is off")
	tb.waitText("#events-off", "enabled: true")
	tb.show("#/dead-letters", "Dead letters")
	tb.waitFor("dead letters listed", `document.querySelectorAll('#dlq-table tbody tr[data-id]').length >= 6`)
	tb.do("opening a dead letter", chromedp.Click(chromedp.CSS("#dlq-table tbody tr[data-id] td:nth-child(4)")))
	tb.do("opening its trace", chromedp.Click(chromedp.ID("dlq-trace")))
	tb.waitFor("a trace's address", `location.hash.startsWith('#/events?id=')`)
	tb.waitText("#events-off", "The event log is off")

	// Rules: the live routes with their match counts.
	tb.show("#/rules", "Rules")
	tb.waitFor("three routes", `document.querySelectorAll('#routes-table tbody tr').length === 3`)
	tb.waitText(`#routes-table tr[data-route="all-to-app"]`, "17")

	// The page holds no secret of the config.
	if html := eval[string](tb, `document.documentElement.outerHTML`); strings.Contains(html, "audit-SECRET-123456") || strings.Contains(html, consoleToken) {
		t.Error("the page shows a secret")
	}

	// Readable on a phone: nothing wider than the screen.
	tb.do("a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	for _, page := range []struct{ hash, title string }{{"#/overview", "Overview"}, {"#/destinations", "Destinations"},
		{"#/dead-letters", "Dead letters"}, {"#/events", "Events"}, {"#/rules", "Rules"}} {
		tb.show(page.hash, page.title)
		tb.waitFor(page.title+" without sideways scrolling", `document.documentElement.scrollWidth <= window.innerWidth`)
	}
}

// TestConsoleEvents searches the event log for a signed callback by its MsgKey, among
// others, opens its trace from the result, opens it again by its address, and replays it
// to another destination after the dry run's count.
func TestConsoleEvents(t *testing.T) {
	const tencentToken = "tencent-SECRET-0a1b2c"
	cfg := strings.Replace(testConfig, "apps: [{sdkappid: "+testApp+"}]", "apps: [{sdkappid: "+testApp+", token: "+tencentToken+"}]", 1) +
		"log: {enabled: true}\n"
	app, audit, bot := newDownstream(t, 200), newDownstream(t, 200), newDownstream(t, 200)
	gw := startGatewayWith(t, cfg, app, audit, bot)
	gw.signedCallback(withKey(t, "C2C.CallbackAfterSendMsg", "events-other"), tencentToken)
	gw.signedCallback(withKey(t, "C2C.CallbackAfterSendMsg", "events-trace-me"), tencentToken)
	gw.signedCallback(withKey(t, "Group.CallbackAfterSendMsg", "events-group"), tencentToken)
	waitUntil(t, "the callback at app-backend", func() bool { return app.got("events-trace-me") == 1 })
	var found struct {
		Items []struct{ ID, Outcome string }
	}
	waitUntil(t, "the delivery in the event log", func() bool {
		gw.api(http.MethodGet, "/api/v1/events?field="+url.QueryEscape("MsgKey=events-trace-me"), &found)
		return len(found.Items) == 1 && found.Items[0].Outcome == "delivered"
	})
	id := found.Items[0].ID
	waitUntil(t, "the three callbacks in the event log", func() bool {
		gw.api(http.MethodGet, "/api/v1/events", &found)
		return len(found.Items) == 3
	})

	tb := openConsole(t, gw)
	tb.login()
	tb.show("#/events", "Events")
	tb.waitFor("the three callbacks listed", `document.querySelectorAll('#events-table tbody tr[data-id]').length === 3`)
	// A field the log does not index: the API's reason, where the results would be.
	tb.do("searching by a field not indexed",
		chromedp.SetValue(chromedp.CSS(`#events-filter input[name="field-name"]`), "Nickname"),
		chromedp.SetValue(chromedp.CSS(`#events-filter input[name="field-value"]`), "jared"),
		chromedp.Click(chromedp.ID("events-search")))
	tb.waitText("#events-table", `"Nickname" is not an indexed field`)
	tb.do("searching by MsgKey",
		chromedp.SetValue(chromedp.CSS(`#events-filter input[name="field-name"]`), "MsgKey"),
		chromedp.SetValue(chromedp.CSS(`#events-filter input[name="field-value"]`), "events-trace-me"),
		chromedp.Click(chromedp.ID("events-search")))
	tb.waitFor("that callback alone", `document.querySelectorAll('#events-table tbody tr[data-id]').length === 1 && `+
		`document.querySelector('#events-table tbody tr[data-id]').textContent.includes('events-trace-me')`)
	row := fmt.Sprintf(`#events-table tbody tr[data-id=%q]`, id)
	tb.waitText(row+" td.outcome", "delivered")
	tb.waitText(row, "C2C.CallbackAfterSendMsg")

	// Its trace: the destination delivered at the first attempt, with a 2xx status.
	tb.do("opening its trace", chromedp.Click(chromedp.CSS(row+" td:nth-child(2)")))
	dest := `#trace-deliveries tr[data-destination="app-backend"]`
	tb.waitText(dest, "delivered")
	tb.waitText(dest+" td:nth-child(3)", "1")
	tb.waitText(dest+" td:nth-child(4)", "200 2xx")
	attempt := `#trace-timeline tr[data-kind="attempt"][data-destination="app-backend"]`
	tb.waitText(attempt, "attempt 1")
	tb.waitText(attempt, "200 2xx")
	tb.waitText(`#trace-timeline tr[data-kind="received"]`, "+0 ms")
	tb.waitText("#trace-query", "SdkAppid="+testApp)
	tb.waitText("#trace-body", "events-trace-me")
	if html := eval[string](tb, `document.documentElement.outerHTML`); strings.Contains(html, tencentToken) ||
		strings.Contains(html, "Sign=") || strings.Contains(html, "audit-SECRET-123456") {
		t.Error("the trace shows a secret, or the callback's Sign")
	}

	// Its address opens it again, in a new load of the console.
	hash := eval[string](tb, `location.hash`)
	if !strings.Contains(hash, "id="+id) || !strings.Contains(hash, "field=MsgKey") {
		t.Errorf("the trace's address is %q: want its id and the search's filter", hash)
	}
	tb.do("loading the trace's address", chromedp.Navigate("about:blank"), chromedp.Navigate(tb.base+"#/events?id="+id))
	tb.waitText(dest, "delivered")
	tb.waitText("#page h1", "Events")

	// Replay it to audit: the dry run's count, then the delivery.
	tb.do("choosing audit", chromedp.SetValue(chromedp.ID("replay-to"), "to:audit"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('replay-to').dispatchEvent(new Event('change'))`),
		chromedp.Click(chromedp.ID("replay-event")))
	tb.confirm("would queue 1 delivery (audit 1)")
	waitUntil(t, "the replayed callback at audit", func() bool { return audit.got("events-trace-me") == 1 })
	waitUntil(t, "the replay and its delivery in the event log", func() bool {
		type delivery struct {
			Destination, State string
			Replayed           int
		}
		var trace struct{ Deliveries []delivery }
		gw.api(http.MethodGet, "/api/v1/events/"+id, &trace)
		return slices.Contains(trace.Deliveries, delivery{"audit", "delivered", 1})
	})
	tb.do("refreshing the trace", chromedp.Click(chromedp.ID("trace-refresh")))
	tb.waitText(`#trace-deliveries tr[data-destination="audit"]`, "delivered")
	tb.waitFor("the replay in the timeline", `!!document.querySelector('#trace-timeline tr[data-kind="replayed"][data-destination="audit"]')`)

	// A webhook-id, as a receiver logs it, opens the trace too.
	tb.do("back to the search", chromedp.Click(chromedp.ID("trace-back")))
	tb.do("opening a webhook-id",
		chromedp.SetValue(chromedp.CSS("#events-open input"), "msg_"+id+"_app-backend"),
		chromedp.Click(chromedp.CSS("#events-open button")))
	tb.waitText(dest, "delivered")

	// Readable on a phone: the search and the trace.
	tb.do("a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	tb.waitFor("the trace without sideways scrolling", `document.documentElement.scrollWidth <= window.innerWidth`)
	tb.do("back to the search", chromedp.Click(chromedp.ID("trace-back")))
	tb.waitFor("the search", `document.querySelectorAll('#events-table tbody tr[data-id]').length >= 1`)
	tb.waitFor("the search without sideways scrolling", `document.documentElement.scrollWidth <= window.innerWidth`)
}

// TestConsoleReplayDeadLetter dead-letters a callback, fixes the receiver, and replays the
// dead letter from the Dead letters page: the dry run's count is shown before confirming,
// and the callback reaches the receiver.
func TestConsoleReplayDeadLetter(t *testing.T) {
	app, audit, bot := newDownstream(t, 200), newDownstream(t, 503), newDownstream(t, 200)
	gw := startGateway(t, app, audit, bot)
	gw.callback(withKey(t, "Group.CallbackAfterSendMsg", "replay-me"))
	waitUntil(t, "the dead letter", func() bool { return gw.destination("audit").DeadLetters == 1 })
	audit.status.Store(200)

	tb := openConsole(t, gw)
	tb.login()
	tb.show("#/dead-letters?destination=audit", "Dead letters")
	tb.waitFor("the dead letter listed", `document.querySelectorAll('#dlq-table tbody tr[data-id]').length === 1`)
	tb.do("selecting it", chromedp.Click(chromedp.CSS(`#dlq-table tbody tr[data-id] input[type=checkbox]`)))
	tb.waitText("#replay-selected", "Replay selected (1)")
	tb.do("replaying the selection", chromedp.Click(chromedp.ID("replay-selected")))
	tb.confirm("1 would be queued again")
	waitUntil(t, "the replayed callback at audit", func() bool { return audit.got("replay-me") == 1 })
	tb.waitText("#dlq-table", "No dead letter matches")

	// Replay by filter: the dry run counts what the filter selects.
	audit.status.Store(400)
	gw.callback(withKey(t, "Group.CallbackAfterSendMsg", "replay-by-filter"))
	waitUntil(t, "the second dead letter", func() bool { return gw.destination("audit").DeadLetters == 1 })
	audit.status.Store(200)
	tb.do("refreshing", chromedp.Click(chromedp.ID("dlq-refresh")))
	tb.waitFor("it listed", `document.querySelectorAll('#dlq-table tbody tr[data-id]').length === 1`)
	tb.do("replaying what the filter selects", chromedp.Click(chromedp.ID("replay-matching")))
	tb.confirm("destination = audit")
	waitUntil(t, "the callback replayed by filter", func() bool { return audit.got("replay-by-filter") == 1 })
}

// TestConsolePlayground runs Tencent's payloads through the Rules page's playground and
// compares what it shows with dryrun.Route, the code of `fanout route`, on the same config;
// then checks an edited config and routes with it.
func TestConsolePlayground(t *testing.T) {
	app, audit, bot := newDownstream(t, 200), newDownstream(t, 200), newDownstream(t, 200)
	gw := startGateway(t, app, audit, bot)
	cfg, probs := config.Load(gwConfigPath(t, gw))
	if cfg == nil {
		t.Fatal(probs)
	}
	failed := strings.Replace(string(fanouttest.Payload(t, "C2C.CallbackAfterSendMsg")), `"SendMsgResult": 0`, `"SendMsgResult": 20006`, 1)

	tb := openConsole(t, gw)
	tb.login()
	tb.show("#/rules", "Rules")
	for _, payload := range []string{failed, string(fanouttest.Payload(t, "Group.CallbackAfterSendMsg")), string(fanouttest.Payload(t, "State.StateChange"))} {
		want := dryrun.Route(cfg, "payload", []byte(payload), url.Values{"OptPlatform": {"iOS"}})
		tb.do("pasting a payload",
			chromedp.SetValue(chromedp.ID("payload"), payload),
			chromedp.SetValue(chromedp.ID("query"), "OptPlatform=iOS"),
			chromedp.Click(chromedp.ID("route-run")))
		tb.waitText("#route-result", want.Command)
		tb.waitFor("the deliveries", fmt.Sprintf(`document.querySelectorAll('#route-result .delivery').length === %d`, len(want.Deliveries)))
		if got := eval[[]string](tb, `[...document.querySelectorAll('#matched-routes .pill')].map(e => e.textContent)`); strings.Join(got, ",") != strings.Join(want.Routes, ",") {
			t.Errorf("%s: the page shows routes %v, fanout route %v", want.Command, got, want.Routes)
		}
		for _, d := range want.Deliveries {
			sel := fmt.Sprintf(`#route-result .delivery[data-destination=%q]`, d.Destination)
			if got := eval[string](tb, `document.querySelector('`+sel+` .url').textContent`); got != "POST "+d.URL {
				t.Errorf("%s to %s: the page shows %q, fanout route %q", want.Command, d.Destination, got, "POST "+d.URL)
			}
			if got := eval[string](tb, `document.querySelector('`+sel+` pre.body').textContent`); got != string(d.Body) {
				t.Errorf("%s to %s: the page shows the body\n%s\nfanout route\n%s", want.Command, d.Destination, got, d.Body)
			}
		}
	}
	if got := eval[string](tb, `document.querySelector('#route-result .delivery[data-destination="oncall-bot"]')?.textContent ?? ''`); got != "" {
		t.Errorf("the last payload should not reach oncall-bot: %s", got)
	}

	// A sample from the picker.
	tb.do("picking a sample", chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById('sample-pick');
		s.value = [...s.options].find(o => o.textContent === 'Group.CallbackAfterSendMsg').value; s.dispatchEvent(new Event('change')); })()`))
	tb.waitFor("the sample in the payload box", `document.getElementById('payload').value.includes('@TGS#2J4SZEAEL')`)

	// Check an edited config: a misspelled key and a bad expression, with their positions.
	broken := strings.Replace(gwConfigText(t, gw), "    when: SendMsgResult != 0", "    when: SendMsgResult !=\n    tos: [audit]", 1)
	tb.do("checking a broken config", chromedp.SetValue(chromedp.ID("config-text"), broken), chromedp.Click(chromedp.ID("check-run")))
	tb.waitText("#check-status", "invalid")
	_, wantProbs := config.Parse(cfg.File, []byte(broken), func(string) (string, bool) { return "", false })
	for _, p := range wantProbs {
		tb.waitText("#check-result", fmt.Sprintf("%d:%d: ", p.Line, p.Column))
	}
	tb.waitText("#check-result", `unknown key "tos"`)

	// Route with an edited config that sends State.StateChange to audit as well.
	edited := gwConfigText(t, gw) + "  - name: presence\n    commands: [State.StateChange]\n    to: [audit]\n"
	tb.do("checking the edited config", chromedp.SetValue(chromedp.ID("config-text"), edited), chromedp.Click(chromedp.ID("check-run")))
	tb.waitText("#check-status", "valid")
	tb.do("routing with it",
		chromedp.SetValue(chromedp.ID("payload"), string(fanouttest.Payload(t, "State.StateChange"))),
		chromedp.Click(chromedp.ID("use-edited")),
		chromedp.Click(chromedp.ID("route-run")))
	tb.waitText("#matched-routes", "presence")
	tb.waitText("#route-result", "Edited config")
}

// TestConsolePauseResume pauses a destination from its card: callbacks wait in the queue
// until it is resumed, then arrive.
func TestConsolePauseResume(t *testing.T) {
	app, audit, bot := newDownstream(t, 200), newDownstream(t, 200), newDownstream(t, 200)
	gw := startGateway(t, app, audit, bot)
	tb := openConsole(t, gw)
	tb.login()
	tb.show("#/destinations", "Destinations")
	card := `[data-destination="app-backend"]`
	tb.waitText(card, "running")
	tb.do("pausing app-backend", chromedp.Click(chromedp.CSS(card+` button[data-action="pause"]`)))
	tb.confirm("No delivery to app-backend starts until you resume it")
	tb.waitText(card, "paused by an operator")
	if d := gw.destination("app-backend"); !d.Paused || d.PausedBy != "operator" {
		t.Fatalf("after Pause: %+v", d)
	}

	gw.callback(withKey(t, "C2C.CallbackAfterSendMsg", "held"))
	waitUntil(t, "the callback queued for app-backend", func() bool { return gw.destination("app-backend").Pending == 1 })
	if app.got("held") != 0 {
		t.Fatal("a paused destination received a delivery")
	}
	tb.waitText(card, "Backlog")
	tb.do("resuming app-backend", chromedp.Click(chromedp.CSS(card+` button[data-action="resume"]`)))
	waitUntil(t, "the held callback at app-backend", func() bool { return app.got("held") == 1 })
	tb.waitText(card, "running")
	if d := gw.destination("app-backend"); d.Paused {
		t.Errorf("after Resume: %+v", d)
	}
}

func gwConfigPath(_ *testing.T, gw *testGateway) string { return gw.cfgPath }

// gwConfigText is the config file of a test gateway.
func gwConfigText(t *testing.T, gw *testGateway) string {
	t.Helper()
	b, err := os.ReadFile(gw.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConsoleTokenPrompt refuses a wrong token, takes the right one, and forgets it.
func TestConsoleTokenPrompt(t *testing.T) {
	app, audit, bot := newDownstream(t, 200), newDownstream(t, 200), newDownstream(t, 200)
	gw := startGateway(t, app, audit, bot)
	tb := openConsole(t, gw)
	tb.do("loading the console", chromedp.Navigate(tb.base+"#/destinations"))
	tb.waitFor("the token prompt", `document.getElementById('token-dialog').open`)
	tb.do("typing a wrong token",
		chromedp.SendKeys(chromedp.ID("token-input"), "not-the-token"),
		chromedp.Click(chromedp.CSS("#token-form button[type=submit]")))
	tb.waitFor("the prompt again, saying why", `document.getElementById('token-dialog').open && !document.getElementById('token-error').hidden`)
	tb.do("typing the token",
		chromedp.SendKeys(chromedp.ID("token-input"), consoleToken),
		chromedp.Click(chromedp.CSS("#token-form button[type=submit]")))
	tb.waitFor("the destinations", `document.querySelectorAll('#destination-cards .card').length === 3`)

	tb.do("forgetting the token", chromedp.Click(chromedp.ID("forget")))
	tb.waitFor("the token prompt after forgetting", `document.getElementById('token-dialog').open`)
	if got := eval[string](tb, `sessionStorage.getItem('fanout.admin-token') ?? ''`); got != "" {
		t.Errorf("sessionStorage still holds %q", got)
	}
}
