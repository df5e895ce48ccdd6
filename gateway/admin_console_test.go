package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// The admin port's endpoints for the console, and its guard against requests that a
// browser makes on behalf of another site.

// consoleConfig sends C2C callbacks to crm.
const consoleConfig = `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: test-admin-token}
tencent:
  apps: [{sdkappid: 1400000000}]
queue: {dir: QUEUE_DIR}
defaults:
  concurrency: 1
  retry: {max_attempts: 2, backoff: {initial: 10ms, max: 20ms, multiplier: 2, jitter: 0}}
destinations:
  crm: {url: "%CRM%/crm?key=crm-key-0001", forward_query: true}
  bot: {url: "%CRM%/bot", body: '{"text": From_Account + " -> " + To_Account}'}
routes:
  - name: c2c-to-crm
    commands: [C2C.CallbackAfterSendMsg]
    to: [crm]
  - name: alice
    commands: ["C2C.*"]
    when: From_Account == "alice"
    to: [bot]
`

func consoleSetup(t *testing.T, token string) (*adminGateway, *fanouttest.Receiver) {
	crm := fanouttest.NewReceiver(t, answered(http.StatusOK))
	cfg := strings.ReplaceAll(consoleConfig, "%CRM%", crm.URL())
	if token == "" {
		cfg = strings.Replace(cfg, ", token: test-admin-token", "", 1)
	}
	return startAdminGateway(t, cfg, token), crm
}

// browserRequest sends what a browser would: the headers given, and the token.
func browserRequest(t *testing.T, a *adminGateway, method, path, host, body string, header map[string]string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+a.g.AdminAddr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminBrowserGuard(t *testing.T) {
	a, _ := consoleSetup(t, "test-admin-token")
	self := "http://" + a.g.AdminAddr()
	replay := `{"all": true, "dry_run": true}`
	for _, c := range []struct {
		name         string
		method, path string
		body         string
		header       map[string]string
		status       int
	}{
		{"curl: no browser headers, no CSRF header", "POST", "/-/reload", "", nil, 200},
		{"curl: a body without a content type", "POST", "/api/v1/dlq/replay", replay, nil, 200},
		{"the console", "POST", "/api/v1/dlq/replay", replay, map[string]string{"Origin": self, "Sec-Fetch-Site": "same-origin",
			"X-Fanout-CSRF": "1", "Content-Type": "application/json"}, 200},
		{"the console: a read", "GET", "/api/v1/routes", "", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"the address bar", "GET", "/ui/", "", map[string]string{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}, 200},
		{"another site's form", "POST", "/api/v1/dlq/replay", replay, map[string]string{"Origin": "http://evil.example",
			"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, 403},
		{"another site's fetch with the CSRF header", "DELETE", "/api/v1/dlq?all=true", "", map[string]string{"Origin": "http://evil.example",
			"Sec-Fetch-Site": "cross-site", "X-Fanout-CSRF": "1"}, 403},
		{"another site, Sec-Fetch-Site only", "POST", "/-/reload", "", map[string]string{"Sec-Fetch-Site": "cross-site", "X-Fanout-CSRF": "1"}, 403},
		{"a sibling site", "POST", "/-/reload", "", map[string]string{"Sec-Fetch-Site": "same-site", "X-Fanout-CSRF": "1"}, 403},
		{"another site reading", "GET", "/api/v1/dlq", "", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
		{"same origin without the CSRF header", "POST", "/-/reload", "", map[string]string{"Origin": self, "Sec-Fetch-Site": "same-origin"}, 403},
		{"same origin, a body that is not JSON", "POST", "/api/v1/dlq/replay", replay, map[string]string{"Origin": self,
			"Sec-Fetch-Site": "same-origin", "X-Fanout-CSRF": "1", "Content-Type": "text/plain"}, 415},
		{"an opaque origin", "POST", "/-/reload", "", map[string]string{"Origin": "null", "X-Fanout-CSRF": "1"}, 403},
	} {
		status, body := browserRequest(t, a, c.method, c.path, "", c.body, c.header)
		if status != c.status {
			t.Errorf("%s: %s %s: %d %s, want %d", c.name, c.method, c.path, status, body, c.status)
		}
	}

	// Without admin.token, a browser must name the port by address: a DNS name could be
	// one that an attacker's site rebinds to 127.0.0.1.
	open, _ := consoleSetup(t, "")
	port := open.g.AdminAddr()[strings.LastIndex(open.g.AdminAddr(), ":"):]
	for _, c := range []struct {
		host   string
		status int
	}{{"rebound.example" + port, 403}, {"localhost" + port, 200}, {"127.0.0.1" + port, 200}, {"[::1]" + port, 200}} {
		status, body := browserRequest(t, open, "GET", "/api/v1/routes", c.host, "", map[string]string{"Sec-Fetch-Site": "same-origin"})
		if status != c.status {
			t.Errorf("tokenless, Host %s: %d %s, want %d", c.host, status, body, c.status)
		}
	}
	// Not a browser: as before.
	if status, body := browserRequest(t, open, "GET", "/api/v1/routes", "fanout.internal"+port, "", nil); status != 200 {
		t.Errorf("tokenless, Host fanout.internal, no browser headers: %d %s", status, body)
	}
}

func TestAdminConsoleUI(t *testing.T) {
	a, _ := consoleSetup(t, "test-admin-token")
	// The pages hold no data and ask for the token themselves: they load without it.
	status, body := fanouttest.Do(http.MethodGet, "http://"+a.g.AdminAddr()+"/ui/", "", nil)
	if status != http.StatusOK || !strings.Contains(string(body), `src="js/main.js"`) {
		t.Errorf("GET /ui/ without a token: %d %s", status, body)
	}
	// The data does not.
	if status, _ := fanouttest.Do(http.MethodGet, "http://"+a.g.AdminAddr()+"/api/v1/overview", "", nil); status != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/overview without a token: %d, want 401", status)
	}
	var h struct {
		StepSeconds float64                          `json:"step_seconds"`
		Series      map[string]map[string][]*float64 `json:"series"`
		Reload      struct {
			LastSuccessful bool `json:"last_successful"`
		} `json:"reload"`
		Times []int64 `json:"times"`
	}
	a.callback("C2C.CallbackAfterSendMsg", "o1", "")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "a delivery in the overview", func() bool {
		a.call(http.MethodGet, "/api/v1/overview", "", &h)
		return len(h.Series["deliveries"]["crm"]) > 0 && h.Series["callbacks"]["ok"] != nil
	})
	if h.StepSeconds != 10 || !h.Reload.LastSuccessful || len(h.Times) != len(h.Series["deliveries"]["crm"]) {
		t.Errorf("overview: %+v", h)
	}
}

func TestAdminPauseResume(t *testing.T) {
	a, crm := consoleSetup(t, "test-admin-token")
	if status, b := a.do(http.MethodPost, "/api/v1/destinations/nobody/pause", ""); status != http.StatusNotFound {
		t.Errorf("pause of an unknown destination: %d %s, want 404", status, b)
	}
	var d httpapi.DestinationInfo
	a.call(http.MethodPost, "/api/v1/destinations/crm/pause", "", &d)
	if !d.Paused || d.PausedBy != "operator" || !d.PausedUntil.IsZero() || d.Name != "crm" {
		t.Fatalf("after pause: %+v", d)
	}
	a.call(http.MethodPost, "/api/v1/destinations/crm/pause", "", &d) // twice: still paused
	if !d.Paused || d.PausedBy != "operator" {
		t.Fatalf("after a second pause: %+v", d)
	}
	if !strings.Contains(string(a.call(http.MethodGet, "/metrics", "", nil)), `fanout_destination_paused{destination="crm"} 1`) {
		t.Error("fanout_destination_paused is not 1 while paused")
	}
	a.callback("C2C.CallbackAfterSendMsg", "p1", "")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the callback queued for crm", func() bool {
		var ds httpapi.Destinations
		a.call(http.MethodGet, "/api/v1/destinations", "", &ds)
		return ds.Destinations[0].Pending == 1
	})
	if len(crm.ByKey("p1")) != 0 {
		t.Fatal("a paused destination received a delivery")
	}
	// A reload keeps the pause.
	if status, b := a.do(http.MethodPost, "/-/reload", ""); status != http.StatusOK {
		t.Fatalf("reload: %d %s", status, b)
	}
	d = httpapi.DestinationInfo{}
	a.call(http.MethodPost, "/api/v1/destinations/crm/resume", "", &d)
	if d.Paused || d.PausedBy != "" {
		t.Fatalf("after resume: %+v", d)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the held callback at crm", func() bool { return len(crm.ByKey("p1")) == 1 })
	if !strings.Contains(string(a.call(http.MethodGet, "/metrics", "", nil)), `fanout_destination_paused{destination="crm"} 0`) {
		t.Error("fanout_destination_paused is not 0 after resume")
	}
	if log := a.logs.String(); !strings.Contains(log, "destination paused by an operator") || !strings.Contains(log, "destination resumed by an operator") {
		t.Errorf("the log lacks the pause or the resume:\n%s", log)
	}
}

func TestAdminTryRoute(t *testing.T) {
	a, crm := consoleSetup(t, "test-admin-token")
	body := func(v map[string]any) string { b, _ := json.Marshal(v); return string(b) }
	payload := `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"alice","To_Account":"bob","MsgSeq":9007199254740993}`

	var tr httpapi.RouteTrial
	a.call(http.MethodPost, "/api/v1/route", body(map[string]any{"payload": payload, "query": "OptPlatform=iOS"}), &tr)
	var res struct {
		Command    string   `json:"command"`
		Routes     []string `json:"routes"`
		Deliveries []struct {
			Destination string `json:"destination"`
			URL         string `json:"url"`
			Transformed bool   `json:"transformed"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(tr.Result, &res); err != nil {
		t.Fatalf("%v in %s", err, tr.Result)
	}
	if tr.Config != "live" || res.Command != "C2C.CallbackAfterSendMsg" || strings.Join(res.Routes, ",") != "c2c-to-crm,alice" || len(res.Deliveries) != 2 {
		t.Fatalf("trial %+v, result %+v", tr, res)
	}
	wantURL := crm.URL() + "/crm?key=<secret>&CallbackCommand=C2C.CallbackAfterSendMsg&OptPlatform=iOS&SdkAppid=1400000000&contenttype=json"
	if res.Deliveries[0].URL != wantURL {
		t.Errorf("crm's URL %s, want %s", res.Deliveries[0].URL, wantURL)
	}
	if tr.Bodies["crm"] != payload || tr.Bodies["bot"] != `{"text":"alice -> bob"}` {
		t.Errorf("bodies %q", tr.Bodies)
	}

	// An edited config that does not load answers its problems, and no result.
	tr = httpapi.RouteTrial{}
	a.call(http.MethodPost, "/api/v1/route", body(map[string]any{"payload": payload, "config": "routes: [{name: x, to: [nowhere]}]\n"}), &tr)
	if tr.Config != "edited" || tr.Result != nil || len(tr.Problems) == 0 {
		t.Errorf("a broken edited config: %+v", tr)
	}
	for _, c := range []struct{ body, param string }{
		{`{"payload": ""}`, "payload"},
		{`{"query": "a=b"}`, "payload"},
		{`{"payload": "{}", "query": "a=%zz"}`, "query"},
		{`{"payload": "{}", "extra": 1}`, "extra"},
		{`not json`, "body"},
	} {
		status, b := a.do(http.MethodPost, "/api/v1/route", c.body)
		var e struct{ Param string }
		_ = json.Unmarshal(b, &e)
		if status != http.StatusBadRequest || e.Param != c.param {
			t.Errorf("%s: %d %s, want 400 naming %s", c.body, status, b, c.param)
		}
	}
}

func TestAdminCheckConfig(t *testing.T) {
	a, _ := consoleSetup(t, "test-admin-token")
	t.Setenv("CONSOLE_TEST_VALUE", "value-from-the-environment")
	b, err := os.ReadFile(a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	live := string(b)
	check := func(text string) httpapi.ConfigCheck {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"config": text})
		var c httpapi.ConfigCheck
		a.call(http.MethodPost, "/api/v1/check", string(b), &c)
		return c
	}
	if c := check(live); !c.Valid || len(c.Problems) != 0 || len(c.RestartRequired) != 0 {
		t.Errorf("the live config: %+v", c)
	}
	broken := strings.Replace(live, "  concurrency: 1\n", "  concurrency: ${CONSOLE_TEST_VALUE}\n  timeout: ${CONSOLE_TEST_UNSET}\n  bogus: 1\n", 1)
	c := check(broken)
	if c.Valid || len(c.Problems) != 3 {
		t.Fatalf("broken: %+v", c)
	}
	for i, want := range []string{
		"(not shown: this line takes ${CONSOLE_TEST_VALUE} from the gateway's environment, and the message could show its value)",
		"environment variable CONSOLE_TEST_UNSET is not set (use ${CONSOLE_TEST_UNSET:-default} for a default)",
		`unknown key "bogus"`,
	} {
		if p := c.Problems[i]; p.Message != want || p.Line == 0 || p.File != a.cfgPath {
			t.Errorf("problem %d: %+v, want the message %q", i, p, want)
		}
	}
	moved := strings.Replace(live, "queue: {dir: ", "queue: {sync: always, dir: ", 1)
	if c := check(moved); !c.Valid || strings.Join(c.RestartRequired, ",") != "queue.sync" {
		t.Errorf("a change that needs a restart: %+v", c)
	}
	if status, b := a.do(http.MethodPost, "/api/v1/check", `{}`); status != http.StatusBadRequest {
		t.Errorf("no config: %d %s", status, b)
	}
}
