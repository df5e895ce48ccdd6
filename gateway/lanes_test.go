package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// convMessage is a C2C message from from to to, whose MsgKey is key.
func convMessage(from, to, key string) []byte {
	return fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":%q,"To_Account":%q,`+
		`"MsgKey":%q,"SendMsgResult":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`, from, to, key)
}

// conversationOf reads From_Account:To_Account from a delivered body.
func conversationOf(body []byte) string {
	var m struct{ From_Account, To_Account any }
	_ = json.Unmarshal(body, &m)
	return fmt.Sprintf("%v:%v", m.From_Account, m.To_Account)
}

// acceptedInOrder returns, by conversation, the MsgKeys rc answered 2xx, in arrival order.
func acceptedInOrder(rc *fanouttest.Receiver) map[string][]string {
	out := map[string][]string{}
	for _, r := range rc.Requests() {
		if r.Status >= 200 && r.Status <= 299 {
			c := conversationOf(r.Body)
			out[c] = append(out[c], fanouttest.MsgKey(r.Body))
		}
	}
	return out
}

// adminDo calls g's admin API and decodes a JSON answer into out (when not nil).
func adminDo(t *testing.T, g *Gateway, method, path string, wantStatus int, out any) {
	t.Helper()
	a := send(t, method, "http://"+g.AdminAddr()+path, nil, nil)
	if a.Status != wantStatus {
		t.Fatalf("%s %s: %d %s, want %d", method, path, a.Status, a.Body, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(a.Body, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, a.Body)
		}
	}
}

// TestOrderedDestination: a destination with order_by, whose receiver answers 503 to a
// fifth of the attempts, gets each conversation's callbacks in the order they were
// accepted; a conversation whose key cannot be computed goes to the fallback lane, counted;
// an unordered destination in the same config gets everything too.
func TestOrderedDestination(t *testing.T) {
	flaky := func(r fanouttest.Request) fanouttest.Answer {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s/%s", r.Body, r.Header.Get("Fanout-Attempt"))
		if h.Sum32()%5 == 0 {
			return fanouttest.Answer{Status: http.StatusServiceUnavailable}
		}
		return fanouttest.Answer{}
	}
	ordered, plain := fanouttest.NewReceiver(t, flaky), fanouttest.NewReceiver(t, flaky)
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
defaults:
  concurrency: 4
  retry: {max_attempts: 50, backoff: {initial: 5ms, max: 50ms, multiplier: 2, jitter: 0}}
destinations:
  ordered:
    url: %q
    order_by: GroupId ?? (From_Account + ":" + To_Account)
  plain:
    url: %q
routes:
  - name: all
    to: [ordered, plain]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "queue")), ordered.URL(), plain.URL())))

	convs := [][2]string{{"u1", "u2"}, {"u2", "u1"}, {"u3", "u4"}, {"u5", "u6"}}
	want := map[string][]string{}
	for i := range 25 {
		for _, c := range convs {
			key := fmt.Sprintf("%s-%s-%02d", c[0], c[1], i)
			accept(t, g, fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg"), convMessage(c[0], c[1], key))
			want[c[0]+":"+c[1]] = append(want[c[0]+":"+c[1]], key)
		}
	}
	// A To_Account that is a number: the key's + fails, the callback takes the fallback lane.
	accept(t, g, fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg"),
		[]byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"u9","To_Account":7,"MsgKey":"odd-1"}`))
	total := len(convs)*25 + 1
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "every delivery to both", func() bool {
		return len(ordered.Delivered()) == total && len(plain.Delivered()) == total
	})
	got := acceptedInOrder(ordered)
	for c, keys := range want {
		if !slices.Equal(got[c], keys) {
			t.Errorf("conversation %s: the ordered receiver accepted %v\nwant %v", c, got[c], keys)
		}
	}
	if n := scrapeMetrics(t, g).Sum("fanout_order_key_errors_total", map[string]string{"destination": "ordered"}); n != 1 {
		t.Errorf("fanout_order_key_errors_total = %g, want 1", n)
	}
	waitMetric(t, g, "fanout_queue_pending", map[string]string{"destination": "ordered"}, 0)
	waitMetric(t, g, "fanout_lanes_blocked", map[string]string{"destination": "ordered"}, 0)

	var lanes struct {
		Consuming []struct {
			Destination string `json:"destination"`
			OrderBy     string `json:"order_by"`
			Partitions  []int  `json:"partitions"`
			Of          int    `json:"of"`
		} `json:"consuming"`
	}
	adminDo(t, g, http.MethodGet, "/api/v1/lanes", http.StatusOK, &lanes)
	if len(lanes.Consuming) != 1 || lanes.Consuming[0].Destination != "ordered" || len(lanes.Consuming[0].Partitions) != 16 ||
		lanes.Consuming[0].Of != 16 {
		t.Errorf("GET /api/v1/lanes: %+v, want the 16 partitions of ordered", lanes.Consuming)
	}
}

// TestBlockedLaneThroughTheAPI: with on_exhausted: block, a delivery refused with 400 blocks
// its lane; the API and the metrics show it; the other lanes go on. A retry through the API
// delivers it, then the rest of its lane; a later refusal skipped through the API is
// dead-lettered and the lane moves on. Keys with a slash and the empty key are addressed in
// the path.
func TestBlockedLaneThroughTheAPI(t *testing.T) {
	refuse := map[string]bool{"a/b-1": true, "a/b-3": true, "fallback-1": true}
	var refusing = make(chan map[string]bool, 1)
	refusing <- refuse
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		m := <-refusing
		defer func() { refusing <- m }()
		if m[fanouttest.MsgKey(r.Body)] {
			return fanouttest.Answer{Status: http.StatusBadRequest, Body: "no"}
		}
		return fanouttest.Answer{}
	})
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
destinations:
  app:
    url: %q
    order_by: From_Account
    on_exhausted: block
routes:
  - name: all
    to: [app]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "queue")), rc.URL())))
	q := fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg")
	for i := range 4 {
		accept(t, g, q, convMessage("a/b", "x", fmt.Sprintf("a/b-%d", i)))
		accept(t, g, q, convMessage("c", "x", fmt.Sprintf("c-%d", i)))
	}
	// No From_Account: the fallback lane, whose key is "".
	accept(t, g, q, []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","MsgKey":"fallback-1"}`))
	accept(t, g, q, []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","MsgKey":"fallback-2"}`))

	waitMetric(t, g, "fanout_lanes_blocked", map[string]string{"destination": "app"}, 2)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "c's four deliveries", func() bool { return len(acceptedInOrder(rc)["c:x"]) == 4 })
	var lanes struct {
		Blocked []struct {
			Key        string `json:"key"`
			EventID    string `json:"event_id"`
			Reason     string `json:"reason"`
			LastStatus int    `json:"last_status"`
			LastError  string `json:"last_error"`
		} `json:"blocked"`
	}
	adminDo(t, g, http.MethodGet, "/api/v1/lanes?destination=app", http.StatusOK, &lanes)
	if len(lanes.Blocked) != 2 || lanes.Blocked[0].Key != "" || lanes.Blocked[1].Key != "a/b" ||
		lanes.Blocked[1].Reason != "status 400" || lanes.Blocked[1].LastStatus != 400 ||
		!strings.Contains(lanes.Blocked[1].LastError, "status 400") {
		t.Fatalf("blocked lanes: %+v", lanes.Blocked)
	}
	if n := scrapeMetrics(t, g).Sum("fanout_deliveries_total", map[string]string{"destination": "app", "outcome": "blocked"}); n != 2 {
		t.Errorf("deliveries blocked: %g, want 2", n)
	}
	adminDo(t, g, http.MethodPost, "/api/v1/lanes/app/nobody/retry", http.StatusNotFound, nil)
	adminDo(t, g, http.MethodPost, "/api/v1/lanes/app/a%2Fb/wait", http.StatusNotFound, nil)

	m := <-refusing
	delete(m, "a/b-1")
	delete(m, "fallback-1")
	refusing <- m
	var rel struct {
		Applied bool   `json:"applied"`
		Action  string `json:"action"`
		Lane    struct {
			EventID string `json:"event_id"`
		} `json:"lane"`
	}
	adminDo(t, g, http.MethodPost, "/api/v1/lanes/app/"+url.PathEscape("a/b")+"/retry", http.StatusOK, &rel)
	if !rel.Applied || rel.Action != "retry" {
		t.Errorf("retry: %+v", rel)
	}
	adminDo(t, g, http.MethodPost, "/api/v1/lanes/app//retry", http.StatusOK, &rel)
	if !rel.Applied {
		t.Errorf("retry of the fallback lane: %+v", rel)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "a/b-1 and a/b-2, then a/b-3 blocked; the fallback lane", func() bool {
		return len(acceptedInOrder(rc)["a/b:x"]) == 3 && len(acceptedInOrder(rc)["<nil>:<nil>"]) == 2 &&
			scrapeMetrics(t, g).Sum("fanout_lanes_blocked", map[string]string{"destination": "app"}) == 1
	})
	adminDo(t, g, http.MethodPost, "/api/v1/lanes/app/a%2Fb/skip", http.StatusOK, &rel)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the lane after the skip", func() bool {
		return scrapeMetrics(t, g).Sum("fanout_lanes_blocked", map[string]string{"destination": "app"}) == 0
	})
	if got, want := acceptedInOrder(rc)["a/b:x"], []string{"a/b-0", "a/b-1", "a/b-2"}; !slices.Equal(got, want) {
		t.Errorf("a/b: %v, want %v (a/b-3 skipped)", got, want)
	}
	var dlq struct {
		Items []struct {
			Reason string `json:"reason"`
		} `json:"items"`
	}
	adminDo(t, g, http.MethodGet, "/api/v1/dlq?destination=app", http.StatusOK, &dlq)
	if len(dlq.Items) != 1 || !strings.HasSuffix(dlq.Items[0].Reason, "; lane skipped by an operator") {
		t.Errorf("dead letters: %+v, want a/b-3's, skipped", dlq.Items)
	}
}

// TestLanesAcrossReloads: order_by added by a reload puts the next callbacks in lanes; a
// reload of the concurrency keeps them; a reload that removes order_by leaves the lanes
// delivering what they hold (a blocked lane keeps waiting); removing the destination
// dead-letters what its lanes held.
func TestLanesAcrossReloads(t *testing.T) {
	var refuse = make(chan bool, 1)
	refuse <- true
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		on := <-refuse
		refuse <- on
		if on && fanouttest.MsgKey(r.Body) == "b-0" {
			return fanouttest.Answer{Status: http.StatusBadRequest}
		}
		return fanouttest.Answer{}
	})
	other := fanouttest.NewReceiver(t, nil)
	dir := filepath.Join(t.TempDir(), "queue")
	config := func(app string) string {
		return fmt.Sprintf(`
%s
destinations:
  other: {url: %q}
%s
routes:
  - name: all
    to: [other%s]
`, fanouttest.ConfigHeader(dir), other.URL(), app, map[bool]string{true: ", app", false: ""}[app != ""])
	}
	path := fanouttest.WriteConfig(t, config(fmt.Sprintf("  app: {url: %q}", rc.URL())))
	g := startGateway(t, path)
	q := fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg")
	consuming := func() []string {
		var l struct {
			Consuming []struct {
				Destination string `json:"destination"`
			} `json:"consuming"`
		}
		adminDo(t, g, http.MethodGet, "/api/v1/lanes", http.StatusOK, &l)
		var out []string
		for _, c := range l.Consuming {
			out = append(out, c.Destination)
		}
		return out
	}
	if got := consuming(); len(got) != 0 {
		t.Fatalf("lanes consumed without order_by: %v", got)
	}

	fanouttest.ReplaceFile(t, path, config(fmt.Sprintf("  app: {url: %q, order_by: From_Account, on_exhausted: block}", rc.URL())))
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := consuming(); !slices.Equal(got, []string{"app"}) {
		t.Fatalf("lanes consumed after adding order_by: %v", got)
	}
	for i := range 3 {
		accept(t, g, q, convMessage("a", "x", fmt.Sprintf("a-%d", i)))
		accept(t, g, q, convMessage("b", "x", fmt.Sprintf("b-%d", i)))
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "a's deliveries, b blocked", func() bool {
		return len(acceptedInOrder(rc)["a:x"]) == 3 && scrapeMetrics(t, g).Sum("fanout_lanes_blocked", map[string]string{"destination": "app"}) == 1
	})

	fanouttest.ReplaceFile(t, path, config(fmt.Sprintf("  app: {url: %q, order_by: From_Account, on_exhausted: block, concurrency: 3}", rc.URL())))
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	fanouttest.ReplaceFile(t, path, config(fmt.Sprintf("  app: {url: %q}", rc.URL())))
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := consuming(); !slices.Equal(got, []string{"app"}) {
		t.Errorf("lanes consumed after removing order_by: %v, want app's, which still hold b's deliveries", got)
	}
	accept(t, g, q, convMessage("b", "x", "b-3")) // no lane now: delivered at once
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "b-3, outside the lanes", func() bool { return len(acceptedInOrder(rc)["b:x"]) == 1 })
	if n := scrapeMetrics(t, g).Sum("fanout_lanes_blocked", map[string]string{"destination": "app"}); n != 1 {
		t.Errorf("blocked lanes after the reloads: %g, want b's still", n)
	}

	fanouttest.ReplaceFile(t, path, config(""))
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	var dlq struct {
		Items []struct {
			EventID string `json:"event_id"`
			Reason  string `json:"reason"`
		} `json:"items"`
	}
	// The lanes' deliveries move to the dead-letter queue in the background.
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "b-0, b-1 and b-2 dead-lettered (destination removed)", func() bool {
		adminDo(t, g, http.MethodGet, "/api/v1/dlq", http.StatusOK, &dlq)
		return len(dlq.Items) == 3
	})
	for _, d := range dlq.Items {
		if d.Reason != ReasonDestinationRemoved {
			t.Errorf("dead letter %s: reason %q", d.EventID, d.Reason)
		}
	}
	if got := consuming(); len(got) != 0 {
		t.Errorf("lanes consumed after removing the destination: %v", got)
	}
}
