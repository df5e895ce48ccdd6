package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// The admin API against a real gateway: an embedded JetStream in t.TempDir(), httptest
// downstreams, and HTTP requests to the admin port.

// adminGateway is a running gateway and what a test needs to talk to it.
type adminGateway struct {
	t       testing.TB
	g       *Gateway
	cfgPath string
	token   string // sent as the bearer token ("" sends none)
	logs    *fanouttest.SyncBuffer
}

// startAdminGateway writes cfg to a fresh directory and runs a gateway on it until the
// test ends. QUEUE_DIR in cfg becomes a queue directory of the test.
func startAdminGateway(t testing.TB, cfg, token string) *adminGateway {
	t.Helper()
	path := writeQueueConfig(t, cfg)
	g, logs := startGatewayWithLog(t, path)
	return &adminGateway{t: t, g: g, cfgPath: path, token: token, logs: logs}
}

// rewrite replaces the config file (for a reload).
func (a *adminGateway) rewrite(cfg string) {
	a.t.Helper()
	fanouttest.ReplaceFile(a.t, a.cfgPath, withQueueDir(filepath.Dir(a.cfgPath), cfg))
}

// do sends one request to the admin port with the gateway's token and returns the answer.
func (a *adminGateway) do(method, path, body string) (int, []byte) {
	return a.doAs(a.token, method, path, body)
}

// doAs sends one request to the admin port with token ("" sends none), and a JSON body
// unless body is "".
func (a *adminGateway) doAs(token, method, path, body string) (int, []byte) {
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	return fanouttest.Do(method, "http://"+a.g.AdminAddr()+path, token, b)
}

// call expects 200 and decodes the answer into out.
func (a *adminGateway) call(method, path, body string, out any) []byte {
	a.t.Helper()
	status, b := a.do(method, path, body)
	if status != http.StatusOK {
		a.t.Fatalf("%s %s: %d %s", method, path, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return b
}

// deadLetters lists every dead letter that query selects (one page of up to 1000).
func (a *adminGateway) deadLetters(query string) []httpapi.DeadLetter {
	a.t.Helper()
	var page httpapi.DeadLetterPage
	a.call(http.MethodGet, "/api/v1/dlq?limit=1000&"+query, "", &page)
	return page.Items
}

// waitDeadLetters waits until query selects n dead letters, and returns them.
func (a *adminGateway) waitDeadLetters(query string, n int) []httpapi.DeadLetter {
	a.t.Helper()
	var items []httpapi.DeadLetter
	fanouttest.WaitFor(a.t, fanouttest.WaitTimeout, fmt.Sprintf("%d dead letters (%s)", n, query), func() bool {
		items = a.deadLetters(query)
		return len(items) == n
	})
	return items
}

// callback sends a C2C or group callback carrying key, signed with tencentToken unless it
// is "", and expects the OK answer.
func (a *adminGateway) callback(command, key, tencentToken string) {
	a.t.Helper()
	q := fanouttest.CallbackQuery(fanouttest.App, command)
	if tencentToken != "" {
		q = fanouttest.SignedCallbackQuery(fanouttest.App, command, tencentToken, time.Now())
	}
	accept(a.t, a.g, q, []byte(adminBody(command, key)))
}

func adminBody(command, key string) string {
	return fmt.Sprintf(`{"CallbackCommand":%q,"From_Account":"alice","To_Account":"bob","GroupId":"g1","MsgKey":%q}`, command, key)
}

// answered is a downstream's answer: status, and a body that says it.
func answered(status int) fanouttest.AnswerFunc {
	return fanouttest.Reply(fanouttest.Answer{Status: status, Body: fmt.Sprintf("answered %d", status)})
}

// dlqConfig has two destinations that both refuse deliveries at first (400 and 422).
const dlqConfig = `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: test-admin-token}
tencent:
  apps: [{sdkappid: 1400000000}]
queue: {dir: QUEUE_DIR}
defaults:
  concurrency: 1
  retry: {max_attempts: 2, backoff: {initial: 10ms, max: 20ms, multiplier: 2, jitter: 0}}
destinations:
  crm: {url: "%CRM%"}
  audit: {url: "%AUDIT%", rate_limit: 100/s}
routes:
  - name: c2c-to-crm
    commands: [C2C.CallbackAfterSendMsg]
    to: [crm]
  - name: groups-to-audit
    commands: [Group.*]
    to: [audit]
`

func dlqSetup(t *testing.T) (*adminGateway, *fanouttest.Receiver, *fanouttest.Receiver) {
	crm, audit := fanouttest.NewReceiver(t, answered(http.StatusBadRequest)), fanouttest.NewReceiver(t, answered(http.StatusUnprocessableEntity))
	cfg := strings.NewReplacer("%CRM%", crm.URL()+"/crm", "%AUDIT%", audit.URL()+"/audit").Replace(dlqConfig)
	return startAdminGateway(t, cfg, "test-admin-token"), crm, audit
}

func ids(items []httpapi.DeadLetter) []uint64 {
	out := make([]uint64, len(items))
	for i, d := range items {
		out[i] = d.ID
	}
	return out
}

func TestAdminDeadLetters(t *testing.T) {
	a, crm, audit := dlqSetup(t)
	const c2c, group = "C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg"

	// Two dead letters, a point in time, then two more: one for each destination.
	a.callback(c2c, "c1", "")
	a.waitDeadLetters("", 1) // one at a time: the ids of dead letters written at once come in either order
	a.callback(c2c, "c2", "")
	a.waitDeadLetters("", 2)
	middle := time.Now()
	a.callback(c2c, "c3", "")
	a.waitDeadLetters("", 3) // the destinations work apart: wait, so that ids follow this order
	a.callback(group, "g1", "")
	all := a.waitDeadLetters("", 4)

	t.Run("list", func(t *testing.T) {
		if !slices.IsSorted(ids(all)) {
			t.Errorf("ids %v: want oldest first", ids(all))
		}
		d := all[0]
		if d.Destination != "crm" || d.Reason != "status 400" || d.LastStatus != 400 || d.Attempts != 1 ||
			d.Command != c2c || d.SdkAppID != fanouttest.App || !slices.Equal(d.Routes, []string{"c2c-to-crm"}) ||
			d.BodySize != len(adminBody(c2c, "c1")) || d.BodyExcerpt != "answered 400" ||
			d.EventID == "" || d.RequestID == "" || d.DeadAt.IsZero() || d.ReceivedAt.IsZero() ||
			d.FirstAttempt.IsZero() || d.LastAttempt.IsZero() {
			t.Errorf("first dead letter: %+v", d)
		}
		g := all[3]
		if g.Destination != "audit" || g.Reason != "status 422" || g.Command != group {
			t.Errorf("last dead letter: %+v", g)
		}
	})

	t.Run("filter", func(t *testing.T) {
		for _, c := range []struct {
			query string
			want  []uint64
		}{
			{"destination=crm", ids(all[:3])},
			{"destination=audit", ids(all[3:])},
			{"destination=nobody", nil},
			{"reason=422", ids(all[3:])},
			{"reason=" + url.QueryEscape("status 400"), ids(all[:3])},
			{"since=" + middle.UTC().Format(time.RFC3339Nano), ids(all[2:])},
			{"until=" + middle.UTC().Format(time.RFC3339Nano), ids(all[:2])},
			{"destination=crm&since=" + middle.UTC().Format(time.RFC3339Nano), ids(all[2:3])},
		} {
			if got := ids(a.deadLetters(c.query)); !slices.Equal(got, c.want) {
				t.Errorf("%s: ids %v, want %v", c.query, got, c.want)
			}
		}
	})

	t.Run("pages", func(t *testing.T) {
		var seen []uint64
		after := uint64(0)
		for range 10 {
			var page httpapi.DeadLetterPage
			a.call(http.MethodGet, fmt.Sprintf("/api/v1/dlq?limit=1&after=%d", after), "", &page)
			if len(page.Items) != 1 {
				t.Fatalf("page after %d: %d items, want 1", after, len(page.Items))
			}
			seen = append(seen, page.Items[0].ID)
			if page.Next == 0 {
				break
			}
			if page.Next != page.Items[0].ID {
				t.Errorf("next %d, want the last id of the page %d", page.Next, page.Items[0].ID)
			}
			after = page.Next
		}
		if !slices.Equal(seen, ids(all)) {
			t.Errorf("paged through %v, want %v", seen, ids(all))
		}
	})

	t.Run("show", func(t *testing.T) {
		var d httpapi.DeadLetterDetail
		a.call(http.MethodGet, fmt.Sprintf("/api/v1/dlq/%d", all[0].ID), "", &d)
		if d.ID != all[0].ID || d.BodyEncoding != "json" || d.Destination != "crm" {
			t.Errorf("show: %+v", d)
		}
		var got, want any
		_ = json.Unmarshal(d.Body, &got)
		_ = json.Unmarshal([]byte(adminBody(c2c, "c1")), &want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("body %s, want %s", d.Body, adminBody(c2c, "c1"))
		}
		if !strings.Contains(d.Query, "CallbackCommand="+c2c) || strings.Contains(d.Query, "Sign") {
			t.Errorf("query %q", d.Query)
		}
		if status, b := a.do(http.MethodGet, "/api/v1/dlq/999999", ""); status != http.StatusNotFound {
			t.Errorf("unknown id: %d %s, want 404", status, b)
		}
	})

	t.Run("destinations and routes", func(t *testing.T) {
		var ds httpapi.Destinations
		a.call(http.MethodGet, "/api/v1/destinations", "", &ds)
		if len(ds.Destinations) != 2 {
			t.Fatalf("destinations: %+v", ds)
		}
		c := ds.Destinations[0]
		if c.Name != "crm" || c.DeadLetters != 3 || c.Pending != 0 || c.Concurrency != 1 ||
			c.Retry.MaxAttempts != 2 || c.Retry.Backoff.Initial != "10ms" || c.URL != crm.URL()+"/crm" ||
			!strings.Contains(c.LastError, "status 400") || c.LastErrorAt.IsZero() || c.Paused || c.QueueError != "" {
			t.Errorf("crm: %+v", c)
		}
		if au := ds.Destinations[1]; au.Name != "audit" || au.DeadLetters != 1 || au.RateLimit != "100/s" {
			t.Errorf("audit: %+v", au)
		}
		var rs httpapi.Routes
		a.call(http.MethodGet, "/api/v1/routes", "", &rs)
		if len(rs.Routes) != 2 || rs.Routes[0].Name != "c2c-to-crm" || rs.Routes[0].Matches != 3 ||
			rs.Routes[1].Matches != 1 || !slices.Equal(rs.Routes[1].Commands, []string{"Group.*"}) ||
			!slices.Equal(rs.Routes[1].To, []string{"audit"}) || rs.ConfigHash == "" {
			t.Errorf("routes: %+v", rs)
		}
	})

	t.Run("dry runs change nothing", func(t *testing.T) {
		var r httpapi.ReplayResult
		a.call(http.MethodPost, "/api/v1/dlq/replay", fmt.Sprintf(`{"ids":[%d,999999],"dry_run":true}`, all[0].ID), &r)
		if !r.DryRun || r.Matched != 1 || len(r.Replayed) != 0 || !slices.Equal(r.WouldReplay, []uint64{all[0].ID}) ||
			len(r.Errors) != 1 || r.Errors[0].ID != 999999 || r.Errors[0].Error != "not found" {
			t.Errorf("replay dry run: %+v", r)
		}
		a.call(http.MethodPost, "/api/v1/dlq/replay", `{"filter":{"destination":"crm"},"dry_run":true}`, &r)
		if r.Matched != 3 || len(r.Replayed) != 0 || len(r.WouldReplay) != 3 {
			t.Errorf("replay by filter dry run: %+v", r)
		}
		var p httpapi.PurgeResult
		a.call(http.MethodDelete, "/api/v1/dlq?destination=crm&dry_run=true", "", &p)
		if !p.DryRun || p.Matched != 3 || p.Deleted != 0 {
			t.Errorf("purge dry run: %+v", p)
		}
		a.call(http.MethodDelete, fmt.Sprintf("/api/v1/dlq/%d?dry_run=true", all[3].ID), "", &p)
		if p.Matched != 1 || p.Deleted != 0 {
			t.Errorf("purge one, dry run: %+v", p)
		}
		if got := ids(a.deadLetters("")); !slices.Equal(got, ids(all)) {
			t.Errorf("after dry runs: %v, want %v unchanged", got, ids(all))
		}
		if crm.Delivered()["c1"]+audit.Delivered()["g1"] != 0 {
			t.Error("a dry run delivered")
		}
	})

	t.Run("replay by id", func(t *testing.T) {
		crm.SetAnswer(answered(http.StatusOK))
		var r httpapi.ReplayResult
		a.call(http.MethodPost, "/api/v1/dlq/replay", fmt.Sprintf(`{"ids":[%d]}`, all[0].ID), &r)
		if r.DryRun || r.Matched != 1 || !slices.Equal(r.Replayed, []uint64{all[0].ID}) || len(r.Errors) != 0 {
			t.Errorf("replay: %+v", r)
		}
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "c1 delivered", func() bool { return crm.Delivered()["c1"] == 1 })
		if status, _ := a.do(http.MethodGet, fmt.Sprintf("/api/v1/dlq/%d", all[0].ID), ""); status != http.StatusNotFound {
			t.Errorf("the replayed dead letter answered %d, want 404", status)
		}
		if got := ids(a.deadLetters("")); !slices.Equal(got, ids(all[1:])) {
			t.Errorf("dead letters %v, want %v", got, ids(all[1:]))
		}
	})

	t.Run("replay by filter", func(t *testing.T) {
		var r httpapi.ReplayResult
		a.call(http.MethodPost, "/api/v1/dlq/replay", `{"filter":{"destination":"crm","reason":"400"}}`, &r)
		if r.Matched != 2 || !slices.Equal(r.Replayed, ids(all[1:3])) || len(r.Errors) != 0 {
			t.Errorf("replay: %+v", r)
		}
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "c2 and c3 delivered", func() bool {
			return crm.Delivered()["c2"] == 1 && crm.Delivered()["c3"] == 1
		})
		if got := ids(a.deadLetters("")); !slices.Equal(got, ids(all[3:])) {
			t.Errorf("dead letters %v, want %v", got, ids(all[3:]))
		}
	})

	t.Run("purge", func(t *testing.T) {
		var p httpapi.PurgeResult
		a.call(http.MethodDelete, fmt.Sprintf("/api/v1/dlq/%d", all[3].ID), "", &p)
		if p.Matched != 1 || p.Deleted != 1 {
			t.Errorf("purge by id: %+v", p)
		}
		if status, b := a.do(http.MethodDelete, fmt.Sprintf("/api/v1/dlq/%d", all[3].ID), ""); status != http.StatusNotFound {
			t.Errorf("purge again: %d %s, want 404", status, b)
		}
		crm.SetAnswer(answered(http.StatusBadRequest))
		a.callback(c2c, "c4", "")
		a.callback(c2c, "c5", "")
		a.callback(group, "g2", "")
		a.waitDeadLetters("", 3)
		a.call(http.MethodDelete, "/api/v1/dlq?destination=crm", "", &p)
		if p.DryRun || p.Matched != 2 || p.Deleted != 2 {
			t.Errorf("purge by filter: %+v", p)
		}
		left := a.deadLetters("")
		if len(left) != 1 || left[0].Destination != "audit" {
			t.Errorf("left: %+v", left)
		}
		a.call(http.MethodDelete, "/api/v1/dlq?all=true", "", &p)
		if p.Deleted != 1 || len(a.deadLetters("")) != 0 {
			t.Errorf("purge all: %+v", p)
		}
	})

	t.Run("replay of a removed destination", func(t *testing.T) {
		a.callback(group, "g3", "")
		dead := a.waitDeadLetters("destination=audit", 1)
		a.rewrite(strings.NewReplacer("%CRM%", crm.URL()+"/crm").Replace(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: test-admin-token}
tencent:
  apps: [{sdkappid: 1400000000}]
queue: {dir: QUEUE_DIR}
defaults:
  concurrency: 1
  retry: {max_attempts: 2, backoff: {initial: 10ms, max: 20ms, multiplier: 2, jitter: 0}}
destinations:
  crm: {url: "%CRM%"}
routes:
  - name: c2c-to-crm
    commands: [C2C.CallbackAfterSendMsg]
    to: [crm]
`))
		a.call(http.MethodPost, "/-/reload", "", nil)
		var r httpapi.ReplayResult
		a.call(http.MethodPost, "/api/v1/dlq/replay", fmt.Sprintf(`{"ids":[%d]}`, dead[0].ID), &r)
		if r.Matched != 1 || len(r.Replayed) != 0 || len(r.Errors) != 1 ||
			!strings.Contains(r.Errors[0].Error, `destination "audit" is not configured`) {
			t.Errorf("replay: %+v", r)
		}
		if len(a.deadLetters("destination=audit")) != 1 {
			t.Error("the dead letter of a removed destination left the DLQ")
		}
	})
}

func TestAdminBadParameters(t *testing.T) {
	a, _, _ := dlqSetup(t)
	for _, c := range []struct {
		method, path, body, param string
	}{
		{"GET", "/api/v1/dlq?limit=0", "", "limit"},
		{"GET", "/api/v1/dlq?limit=1001", "", "limit"},
		{"GET", "/api/v1/dlq?limit=ten", "", "limit"},
		{"GET", "/api/v1/dlq?after=-1", "", "after"},
		{"GET", "/api/v1/dlq?since=yesterday", "", "since"},
		{"GET", "/api/v1/dlq?until=2025-13-01T00:00:00Z", "", "until"},
		{"GET", "/api/v1/dlq?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z", "", "until"},
		{"GET", "/api/v1/dlq?destination=a.b", "", "destination"},
		{"GET", "/api/v1/dlq?destinaton=crm", "", "destinaton"},
		{"GET", "/api/v1/dlq/abc", "", "id"},
		{"GET", "/api/v1/dlq/0", "", "id"},
		{"DELETE", "/api/v1/dlq", "", "all"},
		{"DELETE", "/api/v1/dlq?all=yes", "", "all"},
		{"DELETE", "/api/v1/dlq?reasn=x", "", "reasn"},
		{"DELETE", "/api/v1/dlq?id=x", "", "id"},
		{"DELETE", "/api/v1/dlq?id=1&destination=crm", "", "id"},
		{"DELETE", "/api/v1/dlq?destination=crm&dry_run=maybe", "", "dry_run"},
		{"DELETE", "/api/v1/dlq/1?force=true", "", "force"},
		{"POST", "/api/v1/dlq/replay", "", "body"},
		{"POST", "/api/v1/dlq/replay", "{", "body"},
		{"POST", "/api/v1/dlq/replay", `{}`, "filter"},
		{"POST", "/api/v1/dlq/replay", `{"filter":{}}`, "filter"},
		{"POST", "/api/v1/dlq/replay", `{"ids":[]}`, "ids"},
		{"POST", "/api/v1/dlq/replay", `{"ids":["1"]}`, "ids"},
		{"POST", "/api/v1/dlq/replay", `{"ids":[1],"filter":{"destination":"crm"}}`, "ids"},
		{"POST", "/api/v1/dlq/replay", `{"filter":{"since":"today"}}`, "filter.since"},
		{"POST", "/api/v1/dlq/replay", `{"filter":{"destination":"a*"}}`, "filter.destination"},
		{"POST", "/api/v1/dlq/replay", `{"filter":{"destination":"crm"},"dryrun":true}`, "dryrun"},
		{"POST", "/api/v1/dlq/replay", `{"filter":{"destinaton":"crm"}}`, "filter.destinaton"},
	} {
		status, b := a.do(c.method, c.path, c.body)
		var e struct{ Error, Param string }
		_ = json.Unmarshal(b, &e)
		if status != http.StatusBadRequest || e.Param != c.param || !strings.Contains(e.Error, c.param) {
			t.Errorf("%s %s %s: %d %s, want 400 naming %q", c.method, c.path, c.body, status, b, c.param)
		}
	}
}

// TestReplayUnknownField: a misspelled field of a replay body is named with the fields
// that are known where it was written.
func TestReplayUnknownField(t *testing.T) {
	a, _, _ := dlqSetup(t)
	for body, want := range map[string]string{
		`{"filter":{"destination":"crm"},"dryrun":true}`: `{"error":"parameter dryrun: unknown field (known: ids, filter, all, dry_run)","param":"dryrun"}`,
		`{"filter":{"destinaton":"crm"}}`:                `{"error":"parameter filter.destinaton: unknown field (known: destination, reason, since, until)","param":"filter.destinaton"}`,
	} {
		status, b := a.do(http.MethodPost, "/api/v1/dlq/replay", body)
		if status != http.StatusBadRequest || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s: %d %s\nwant 400 %s", body, status, b, want)
		}
	}
}

func TestAdminAuth(t *testing.T) {
	a, _, _ := dlqSetup(t)
	protected := []struct{ method, path string }{
		{"GET", "/metrics"},
		{"GET", "/api/v1/routes"},
		{"GET", "/api/v1/destinations"},
		{"GET", "/api/v1/dlq"},
		{"GET", "/api/v1/dlq/1"},
		{"POST", "/api/v1/dlq/replay"},
		{"DELETE", "/api/v1/dlq/1"},
		{"DELETE", "/api/v1/dlq?all=true"},
		{"POST", "/-/reload"},
		{"GET", "/debug/pprof/"},
		{"GET", "/api/v1/no-such-endpoint"},
	}
	base := "http://" + a.g.AdminAddr()
	for _, p := range protected {
		for _, token := range []string{"", "wrong-token", "test-admin-token-and-more"} {
			if status, b := a.doAs(token, p.method, p.path, ""); status != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d %s, want 401", p.method, p.path, token, status, b)
			}
		}
	}
	// A token sent as something other than a bearer token is not one.
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/routes", nil)
	req.Header.Set("Authorization", "Basic test-admin-token")
	resp, err := fanouttest.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("Basic auth: %d, want 401", resp.StatusCode)
	}
	for _, p := range protected {
		body := ""
		if p.path == "/api/v1/dlq/replay" {
			body = `{"ids":[1]}`
		}
		status, b := a.doAs("test-admin-token", p.method, p.path, body)
		notFound := strings.Contains(p.path, "/dlq/1") || strings.Contains(p.path, "no-such")
		if want := http.StatusOK; status != want && !(status == http.StatusNotFound && notFound) {
			t.Errorf("%s %s with the token: %d %s, want %d", p.method, p.path, status, b, want)
		}
	}
	for _, open := range []string{"/healthz", "/readyz"} {
		if status, b := a.doAs("", http.MethodGet, open, ""); status != http.StatusOK {
			t.Errorf("%s without a token: %d %s, want 200", open, status, b)
		}
	}

	t.Run("no token", func(t *testing.T) {
		a := startAdminGateway(t, `
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
tencent: {apps: [{sdkappid: 1400000000}]}
queue: {dir: QUEUE_DIR}
destinations: {crm: {url: "http://127.0.0.1:1/x"}}
routes: [{name: all, to: [crm]}]
`, "")
		for _, p := range []string{"/api/v1/routes", "/api/v1/dlq", "/metrics"} {
			if status, b := a.do(http.MethodGet, p, ""); status != http.StatusOK {
				t.Errorf("%s without admin.token: %d %s, want 200", p, status, b)
			}
		}
	})
}

// TestAdminLeaksNoSecret looks for every configured secret in every answer of the admin
// port: the config views, dead letters, blocked lanes, metrics and a reload's errors.
func TestAdminLeaksNoSecret(t *testing.T) {
	signing := "whsec_" + base64.StdEncoding.EncodeToString([]byte("signing-key-SECRET-0001"))
	secrets := map[string]string{
		"admin token":    "admin-SECRET-1a2b3c",
		"tencent token":  "tencent-SECRET-4d5e6f",
		"signing secret": signing,
		"signing key":    strings.TrimPrefix(signing, "whsec_"),
		"header value":   "header-SECRET-7a8b9c",
		"url query":      "query-SECRET-0d1e2f",
		"tim_token":      "timtoken-SECRET-3a4b5c",
		"url password":   "password-SECRET-6d7e8f",
		"url path":       "path-SECRET-9a0b1c",
	}
	down := fanouttest.NewReceiver(t, answered(http.StatusOK))
	refusing := fanouttest.NewReceiver(t, answered(http.StatusForbidden))
	host := strings.TrimPrefix(refusing.URL(), "http://")
	t.Setenv("ADMIN_TEST_HEADER_SECRET", secrets["header value"])
	cfg := func(extra string) string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: %q}
tencent:
  apps: [{sdkappid: 1400000000, token: %q}]
queue: {dir: QUEUE_DIR}
log: {enabled: true}
defaults:
  retry: {max_attempts: 1}
destinations:
  signed:
    url: "%s/hook?access_token=%s&team=im"
    headers: {Authorization: "Bearer ${ADMIN_TEST_HEADER_SECRET}", X-Team: im}
    signing_secret: %s
    tim_token: %q
    forward_query: true
    body: '{"who": From_Account}'
  basic:
    url: "http://alice:%s@%s/basic?token=%s"
  hook:
    url: "%s/hook/%s"
    url_secret: true
  ordered:
    url: "http://alice:%s@127.0.0.1:1/lane?token=%s"
    order_by: From_Account
    on_exhausted: block
routes:
  - name: all
    to: [signed, basic, hook]
  - name: ordered
    to: [ordered]
%s`, secrets["admin token"], secrets["tencent token"], down.URL(), secrets["url query"], signing,
			secrets["tim_token"], secrets["url password"], host, secrets["url query"], refusing.URL(), secrets["url path"],
			secrets["url password"], secrets["url query"], extra)
	}
	// A when that compares with the environment's secret: GET /api/v1/routes shows whens.
	envRoute := "  - name: env\n    when: From_Account == \"${ADMIN_TEST_HEADER_SECRET}\"\n    to: [signed]\n"
	a := startAdminGateway(t, cfg(envRoute), secrets["admin token"])
	stream := a.follow("")
	// The stream starts at the end of the log, once it follows it: send until it shows one.
	n := 0
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the stream to follow", func() bool {
		n++
		a.callback("C2C.CallbackAfterSendMsg", fmt.Sprintf("s0-%d", n), secrets["tencent token"])
		entries, _ := stream.all()
		return len(entries) > 0
	})
	a.callback("C2C.CallbackAfterSendMsg", "s1", secrets["tencent token"])
	a.callback("Group.CallbackAfterSendMsg", "s2", secrets["tencent token"])
	dead := a.waitDeadLetters("destination=basic", n+2)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "deliveries to signed", func() bool {
		var ds httpapi.Destinations
		a.call(http.MethodGet, "/api/v1/destinations", "", &ds)
		return ds.Destinations[0].Pending == 0 && down.Delivered()[""] == n+2
	})

	answers := map[string][]byte{}
	get := func(method, path, body string) {
		status, b := a.do(method, path, body)
		if status >= 500 {
			t.Errorf("%s %s: %d %s", method, path, status, b)
		}
		answers[method+" "+path] = b
	}
	for _, p := range []string{"/api/v1/routes", "/api/v1/destinations", "/api/v1/dlq", "/metrics",
		"/healthz", "/readyz", "/debug/pprof/cmdline", "/api/v1/nothing"} {
		get(http.MethodGet, p, "")
	}
	for _, d := range dead {
		get(http.MethodGet, fmt.Sprintf("/api/v1/dlq/%d", d.ID), "")
	}
	get(http.MethodPost, "/api/v1/dlq/replay", fmt.Sprintf(`{"ids":[%d],"dry_run":true}`, dead[0].ID))
	get(http.MethodDelete, "/api/v1/dlq?destination=basic&dry_run=true", "")
	// The event log: its search, each callback's trace (query, body, attempts and their
	// errors), a replay's dry run, and the live stream.
	var events httpapi.EventPage
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "every callback dead at basic in the event log", func() bool {
		a.call(http.MethodGet, "/api/v1/events?outcome=dead&destination=basic", "", &events)
		return len(events.Items) == n+2
	})
	for _, p := range []string{"/api/v1/events", "/api/v1/events?field=MsgKey=s1", "/api/v1/events?destination=signed&outcome=delivered"} {
		get(http.MethodGet, p, "")
	}
	for _, e := range events.Items {
		get(http.MethodGet, "/api/v1/events/"+e.ID, "")
	}
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	get(http.MethodPost, "/api/v1/events/replay", fmt.Sprintf(`{"filter":{"since":%q},"to":"basic","dry_run":true}`, since))
	get(http.MethodPost, "/api/v1/events/replay", fmt.Sprintf(`{"filter":{"since":%q},"reroute":true,"dry_run":true}`, since))
	// The console's replay of the callback its trace shows, for real: selected by its
	// instant of reception, app, command and fields; then that trace again, with the replay.
	one := events.Items[0]
	var fields []string
	for k, v := range one.Fields {
		fields = append(fields, k+"="+v)
	}
	filter := map[string]any{"app": one.SdkAppID, "command": one.Command, "field": fields,
		"since": one.ReceivedAt.Format(time.RFC3339Nano),
		"until": one.ReceivedAt.Truncate(time.Millisecond).Add(time.Millisecond).Format(time.RFC3339Nano)}
	only, _ := json.Marshal(map[string]any{"filter": filter, "to": "signed", "limit": 10})
	status, replayed := a.do(http.MethodPost, "/api/v1/events/replay", string(only))
	if status != http.StatusOK || !bytes.Contains(replayed, []byte(`"matched":1,`)) {
		t.Errorf("replaying one callback as the console does: %d %s", status, replayed)
	}
	answers["POST /api/v1/events/replay (one callback)"] = replayed
	_, answers["GET /api/v1/events/"+one.ID+", again"] = a.do(http.MethodGet, "/api/v1/events/"+one.ID, "")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the stream to show the dead letters", func() bool {
		_, raw := stream.all()
		return strings.Count(raw, `"kind":"dead"`) >= 2
	})
	_, raw := stream.all()
	answers["GET /api/v1/events/stream"] = []byte(raw)
	for what, answer := range answers {
		// Tencent's Sign proves where a request came from: the log keeps the query without
		// it. A trace and the stream show the query, so searching them proves something.
		shows := strings.Contains(what, "/api/v1/events/") && !strings.Contains(what, "replay")
		if strings.Contains(what, "/api/v1/events") && bytes.Contains(answer, []byte("Sign=")) ||
			shows && !bytes.Contains(answer, []byte("SdkAppid=1400000000")) {
			t.Errorf("%s: the query shows Sign, or no query at all:\n%s", what, answer)
		}
	}
	// The console's endpoints: the overview; the playground on the live config, on this
	// file, and on edited files whose lines take the header's secret from the environment
	// where a message or a rendered body would show it; the check; pause and resume.
	jsonBody := func(v map[string]string) string { b, _ := json.Marshal(v); return string(b) }
	leaky := strings.Replace(cfg("  - name: leaky\n    to: [leaky]\n"), "destinations:\n",
		"destinations:\n  leaky: {url: \"http://127.0.0.1:1/x\", body: '{\"k\": \"${ADMIN_TEST_HEADER_SECRET}\"}'}\n", 1)
	envBroken := strings.Replace(strings.Replace(cfg(""), "  retry: {max_attempts: 1}\n",
		"  concurrency: ${ADMIN_TEST_HEADER_SECRET}\n  retry: {max_attempts: 1}\n", 1),
		"    to: [signed, basic]\n", "    to: [signed, basic]\n    when: From_Account == ${ADMIN_TEST_HEADER_SECRET}\n", 1)
	get(http.MethodGet, "/api/v1/overview", "")
	payload := adminBody("C2C.CallbackAfterSendMsg", "s3")
	get(http.MethodPost, "/api/v1/route", jsonBody(map[string]string{"payload": payload, "query": "OptPlatform=iOS"}))
	for i, text := range []string{cfg(""), leaky, envBroken} {
		text = strings.ReplaceAll(text, "QUEUE_DIR", strconv.Quote(filepath.Join(filepath.Dir(a.cfgPath), "queue")))
		answers[fmt.Sprintf("POST /api/v1/route (config %d)", i)] = a.call(http.MethodPost, "/api/v1/route",
			jsonBody(map[string]string{"payload": payload, "config": text}), nil)
		answers[fmt.Sprintf("POST /api/v1/check (config %d)", i)] = a.call(http.MethodPost, "/api/v1/check",
			jsonBody(map[string]string{"config": text}), nil)
	}
	if !bytes.Contains(answers["POST /api/v1/route (config 1)"], []byte(`\"k\":\"<secret>\"`)) {
		t.Errorf("the leaky transform's body is not shown redacted:\n%s", answers["POST /api/v1/route (config 1)"])
	}
	if !bytes.Contains(answers["POST /api/v1/check (config 2)"], []byte("not shown: this line takes ${ADMIN_TEST_HEADER_SECRET}")) {
		t.Errorf("the check of a line that takes the secret does not withhold its message:\n%s", answers["POST /api/v1/check (config 2)"])
	}
	get(http.MethodPost, "/api/v1/destinations/signed/pause", "")
	get(http.MethodPost, "/api/v1/destinations/signed/resume", "")
	// The lanes: ordered's receiver, whose URL holds the password and the query secret,
	// cannot be reached, so its lane is blocked. A retry blocks it again; a skip releases it.
	blocked := func() {
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "ordered's lane blocked", func() bool {
			var l httpapi.Lanes
			a.call(http.MethodGet, "/api/v1/lanes?destination=ordered", "", &l)
			return len(l.Blocked) == 1 && l.Blocked[0].Action == ""
		})
	}
	blocked()
	get(http.MethodGet, "/api/v1/lanes", "")
	get(http.MethodGet, "/api/v1/lanes?destination=ordered", "")
	if !bytes.Contains(answers["GET /api/v1/lanes"], []byte(`"reason":`)) {
		t.Errorf("GET /api/v1/lanes shows no blocked lane, so searching it proves little:\n%s", answers["GET /api/v1/lanes"])
	}
	get(http.MethodPost, "/api/v1/lanes/ordered/alice/retry", "")
	blocked()
	get(http.MethodPost, "/api/v1/lanes/ordered/alice/skip", "")
	get(http.MethodGet, "/ui/", "")
	// Reloads that fail, with the secrets in the broken file: an unknown key, URLs that do
	// not parse or are not http, and a change that needs a restart.
	for i, broken := range []string{
		cfg("bogus_key: 1\n"),
		strings.Replace(cfg(""), "url: \"http://alice:", "url: \"ftp://alice:", 1),
		strings.Replace(cfg(""), "url: \"http://alice:", "url: \"http://[alice:", 1),
		strings.Replace(cfg(""), `admin: {listen: "127.0.0.1:0"`, `admin: {listen: "127.0.0.1:1"`, 1),
	} {
		a.rewrite(broken)
		status, b := a.do(http.MethodPost, "/-/reload", "")
		if status != http.StatusBadRequest {
			t.Errorf("reload %d: %d %s, want 400", i, status, b)
		}
		answers[fmt.Sprintf("POST /-/reload (broken %d)", i)] = b
	}

	if !bytes.Contains(answers["GET /api/v1/routes"], []byte(`From_Account == \"<secret>\"`)) {
		t.Errorf("the env route's when is not shown redacted:\n%s", answers["GET /api/v1/routes"])
	}
	var d httpapi.Destinations
	if err := json.Unmarshal(answers["GET /api/v1/destinations"], &d); err != nil || len(d.Destinations) != 4 {
		t.Fatalf("destinations: %v %s", err, answers["GET /api/v1/destinations"])
	}
	s := d.Destinations[0]
	if !s.HasSigningSecret || !s.HasTIMToken || !s.HasBodyTransform || !s.ForwardQuery ||
		!slices.Equal(s.Headers, []string{"Authorization", "X-Team"}) ||
		s.URL != down.URL()+"/hook?access_token=<secret>&team=<secret>" {
		t.Errorf("signed: %+v", s)
	}
	if b := d.Destinations[1]; b.HasSigningSecret || b.HasTIMToken || b.URL != "http://alice:<secret>@"+host+"/basic?token=<secret>" {
		t.Errorf("basic: %+v", b)
	}
	if h := d.Destinations[2]; h.URL != "http://"+host+"/<secret>" {
		t.Errorf("hook (url_secret): URL %q, want http://%s/<secret>", h.URL, host)
	}
	// The log too: it holds the failed deliveries (with their URLs) and the failed reloads.
	log := a.logs.String()
	if !strings.Contains(log, "dead-lettering") || !strings.Contains(log, "config reload failed") {
		t.Errorf("the log lacks the dead letters or the failed reloads, so searching it proves little:\n%s", log)
	}
	answers["the gateway's log"] = []byte(log)
	for what, answer := range answers {
		for name, secret := range secrets {
			if bytes.Contains(answer, []byte(secret)) {
				t.Errorf("%s shows the %s:\n%s", what, name, answer)
			}
		}
	}
}
