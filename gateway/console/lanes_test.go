package console_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// lanesConfig has an ordered destination whose lanes wait for an operator when a delivery
// gives up after two quick attempts, and an unordered one.
const lanesConfig = `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: ` + consoleToken + `}
tencent:
  apps: [{sdkappid: ` + testApp + `, token: ` + lanesAppToken + `}]
queue: {dir: %QUEUE%}
defaults:
  retry: {max_attempts: 2, backoff: {initial: 10ms, max: 20ms, multiplier: 2, jitter: 0}}
destinations:
  ordered:
    url: "%ORDERED%/im/callback"
    order_by: From_Account
    on_exhausted: block
  audit: {url: "%AUDIT%/events"}
routes:
  - name: all
    to: [ordered, audit]
`

const lanesAppToken = "lanes-callback-token"

// accountReceiver answers 500 to the callbacks of the accounts it fails (From_Account; ""
// for a callback without one) and 200 to the others.
type accountReceiver struct {
	*fanouttest.Receiver
	mu      sync.Mutex
	failing map[string]bool
}

func newAccountReceiver(t *testing.T, failing ...string) *accountReceiver {
	rc := &accountReceiver{failing: map[string]bool{}}
	for _, a := range failing {
		rc.failing[a] = true
	}
	rc.Receiver = fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.failing[fromAccount(r.Body)] {
			return fanouttest.Answer{Status: http.StatusInternalServerError, Body: "account on hold"}
		}
		return fanouttest.Answer{}
	})
	return rc
}

// accept makes the receiver answer 200 to account from now on.
func (rc *accountReceiver) accept(account string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	delete(rc.failing, account)
}

// accepted is the MsgKeys of account's callbacks the receiver answered 2xx, in order.
func (rc *accountReceiver) accepted(account string) []string {
	var keys []string
	for _, r := range rc.Requests() {
		if r.Status >= 200 && r.Status <= 299 && fromAccount(r.Body) == account {
			keys = append(keys, fanouttest.MsgKey(r.Body))
		}
	}
	return keys
}

func fromAccount(body []byte) string {
	var m struct{ From_Account string }
	_ = json.Unmarshal(body, &m)
	return m.From_Account
}

// messageFrom is Tencent's C2C message from account (none when account is ""), whose
// MsgKey is key.
func messageFrom(t *testing.T, account, key string) []byte {
	var m map[string]any
	if err := json.Unmarshal(fanouttest.Payload(t, "C2C.CallbackAfterSendMsg"), &m); err != nil {
		t.Fatal(err)
	}
	m["MsgKey"] = key
	if account == "" {
		delete(m, "From_Account")
	} else {
		m["From_Account"] = account
	}
	b, _ := json.Marshal(m)
	return b
}

type blockedLane struct {
	Destination string `json:"destination"`
	Key         string `json:"key"`
	EventID     string `json:"event_id"`
	LastStatus  int    `json:"last_status"`
}

func (gw *testGateway) blockedLanes() []blockedLane {
	gw.t.Helper()
	var l struct{ Blocked []blockedLane }
	gw.api(http.MethodGet, "/api/v1/lanes", &l)
	return l.Blocked
}

// TestConsoleBlockedLanes: an ordered destination's card shows its lanes and the lanes
// blocked behind a delivery that gave up, a key with a slash and the fallback lane (whose
// key is empty) among them; the Overview counts them. Skip dead-letters the head of one
// and its lane goes on; Retry delivers the head of the other, then the callbacks held
// behind it, in order. The unordered destination's card has no lanes.
func TestConsoleBlockedLanes(t *testing.T) {
	rc := newAccountReceiver(t, "carol/ops", "")
	audit, bot := newDownstream(t, http.StatusOK), newDownstream(t, http.StatusOK)
	gw := startGatewayWith(t, strings.ReplaceAll(lanesConfig, "%ORDERED%", rc.URL()), audit, audit, bot)
	for _, m := range []struct{ account, key string }{
		{"carol/ops", "carol-1"}, {"dave", "dave-1"}, {"", "nokey-1"},
		{"carol/ops", "carol-2"}, {"", "nokey-2"}, {"dave", "dave-2"}, {"", "nokey-3"},
	} {
		gw.signedCallback(messageFrom(t, m.account, m.key), lanesAppToken)
	}
	var blocked []blockedLane
	waitUntil(t, "two blocked lanes", func() bool { blocked = gw.blockedLanes(); return len(blocked) == 2 })
	waitUntil(t, "dave's callbacks, whose lane is not blocked", func() bool { return len(rc.accepted("dave")) == 2 })
	var fallback blockedLane
	for _, l := range blocked {
		if l.Key == "" {
			fallback = l
		}
	}
	if fallback.EventID == "" || fallback.LastStatus != http.StatusInternalServerError {
		t.Fatalf("blocked lanes: %+v, want the fallback lane's, blocked on a 500", blocked)
	}

	tb := openConsole(t, gw)
	tb.login()
	tb.waitText("#blocked-lanes-tile", "2")
	tb.waitText("#blocked-lanes-tile", "ordered")

	tb.show("#/destinations", "Destinations")
	card := `[data-destination="ordered"]`
	slash := card + ` .lane[data-key="carol/ops"]`
	empty := card + ` .lane[data-key=""]`
	tb.waitText(slash, "status 500")
	tb.waitText(slash, "account on hold")
	tb.waitText(empty, "Fallback lane")
	tb.waitText(card+" .lanes", "From_Account")
	tb.waitText(card+" .lanes", "block")
	tb.waitText(card+" .lanes", "all 16 consumed by this process")
	if href := eval[string](tb, `document.querySelector('`+empty+` a[href^="#/events"]')?.getAttribute('href') ?? ''`); href != "#/events?id="+url.QueryEscape(fallback.EventID) {
		t.Errorf("the fallback lane's head links to %q, want its trace, #/events?id=%s", href, fallback.EventID)
	}
	if n := eval[int](tb, `document.querySelectorAll('[data-destination="audit"] .lanes').length`); n != 0 {
		t.Errorf("the unordered destination's card shows %d lanes sections, want none", n)
	}

	// Skip: carol's receiver is back, yet the operator gives up carol-1: it is dead-lettered
	// and carol-2 is delivered.
	rc.accept("carol/ops")
	tb.do("clicking Skip", chromedp.Click(chromedp.CSS(slash+` button[data-action="skip"]`)))
	tb.confirm("dead-lettered")
	tb.waitFor("carol's lane to go", `!document.querySelector('`+slash+`')`)
	tb.waitText(".toast", "Lane carol/ops of ordered: skipped")
	waitUntil(t, "carol-2, after the skip", func() bool { return slices.Equal(rc.accepted("carol/ops"), []string{"carol-2"}) })
	waitUntil(t, "carol-1's dead letter", func() bool { return gw.destination("ordered").DeadLetters == 1 })
	tb.waitText(card+` a[href="#/dead-letters?destination=ordered"]`, "1")

	// Retry: the receiver takes the callbacks without From_Account again; nokey-1 is
	// delivered, then the two held behind it, in order.
	rc.accept("")
	tb.do("clicking Retry", chromedp.Click(chromedp.CSS(empty+` button[data-action="retry"]`)))
	tb.confirm("new series of attempts")
	tb.waitFor("the fallback lane to go", `!document.querySelector('`+empty+`')`)
	tb.waitText(".toast", "The fallback lane of ordered: retried")
	waitUntil(t, "the fallback lane's callbacks", func() bool { return len(rc.accepted("")) == 3 })
	if got, want := rc.accepted(""), []string{"nokey-1", "nokey-2", "nokey-3"}; !slices.Equal(got, want) {
		t.Errorf("the fallback lane delivered %v, want %v", got, want)
	}
	if n := len(gw.blockedLanes()); n != 0 {
		t.Errorf("%d lanes still blocked", n)
	}
	tb.waitText(card+" .lanes", fmt.Sprintf("Blocked%d", 0))
	tb.show("#/overview", "Overview")
	tb.waitFor("the Overview's tiles", `document.querySelectorAll('#overview-tiles .tile').length >= 7`)
	if eval[bool](tb, `!!document.getElementById('blocked-lanes-tile')`) {
		t.Error("the Overview still shows blocked lanes")
	}
}
