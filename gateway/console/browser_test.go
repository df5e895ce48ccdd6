package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fanout-gw/fanout/gateway"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// The console in a real browser: headless Chromium, driven through chromedp, against a
// real gateway (embedded JetStream in t.TempDir(), httptest downstreams). One browser
// serves the whole test binary; each test opens its own tab. A failing test leaves a
// screenshot of its tab in testdata/failures/.

const (
	consoleToken = "console-test-token"
	testApp      = "1400000000"
	stepTimeout  = 30 * time.Second
	failuresDir  = "testdata/failures"
)

// browser is the test binary's Chromium, started by the first test that needs one.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	os.Exit(code)
}

// chromiumPath finds the browser: $FANOUT_CHROMIUM, else chromium or Chrome on PATH.
func chromiumPath() (string, error) {
	if p := os.Getenv("FANOUT_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium on PATH: the console's browser tests need one. Install it " +
		"(Debian or Ubuntu: apt-get install -y chromium; .ci/run does it) or set FANOUT_CHROMIUM to a Chromium or Chrome binary")
}

func startBrowser() {
	path, err := chromiumPath()
	if err != nil {
		browser.err = err
		return
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		cancel()
		cancelAlloc()
		browser.err = fmt.Errorf("starting %s: %w", path, err)
		return
	}
	browser.ctx = ctx
	browser.cancel = func() { cancel(); cancelAlloc() }
}

// tab is one browser tab on the console of a gateway.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string // http://ADMIN/ui/

	mu       sync.Mutex
	problems []string // errors the page reported: exceptions, console.error, CSP refusals
}

// openConsole opens a tab. At the end of the test it fails the test for every error the
// page reported, and saves a screenshot when the test failed.
func openConsole(t *testing.T, gw *testGateway) *tab {
	t.Helper()
	browser.once.Do(startBrowser)
	if browser.err != nil {
		t.Fatal(browser.err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx)
	tb := &tab{t: t, ctx: ctx, base: "http://" + gw.g.AdminAddr() + "/ui/"}
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("opening a tab: %v", err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			// A network entry is an answer's status (a 401 before the token, a 503 of
			// /readyz): the page handles those. Everything else that is an error is a bug.
			if m.IsException() || m.Type == chromedp.ConsoleError && m.Source != "network" {
				tb.mu.Lock()
				tb.problems = append(tb.problems, fmt.Sprintf("%s (%s:%d)", m.Text, m.URL, m.Line))
				tb.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		tb.mu.Lock()
		for _, p := range tb.problems {
			t.Errorf("the page reported: %s", p)
		}
		tb.mu.Unlock()
		if t.Failed() {
			tb.screenshot("failed")
		}
		cancel()
		<-done
	})
	return tb
}

// screenshot saves the tab as testdata/failures/TEST-name.png.
func (tb *tab) screenshot(name string) {
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Logf("no screenshot: %v", err)
		return
	}
	if err := os.MkdirAll(failuresDir, 0o755); err != nil {
		tb.t.Logf("no screenshot: %v", err)
		return
	}
	file := filepath.Join(failuresDir, strings.NewReplacer("/", "_", " ", "_").Replace(tb.t.Name())+"-"+name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		tb.t.Logf("no screenshot: %v", err)
		return
	}
	abs, _ := filepath.Abs(file)
	tb.t.Logf("screenshot of the page: %s", abs)
}

// do runs actions, failing the test on the first error.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitFor waits until a JavaScript expression is true in the page. A navigation while it
// waits (a reload) restarts the wait in the new page.
func (tb *tab) waitFor(what, expr string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond)))
		if err == nil {
			return
		}
		if ctx.Err() != nil || errors.Is(err, chromedp.ErrPollingTimeout) {
			text, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.getElementById('page').innerText`))
			tb.t.Fatalf("waiting for %s (%s): %v\nthe page shows:\n%s", what, expr, err, text)
		}
		time.Sleep(50 * time.Millisecond) // the page went away under the poll: poll the new one
	}
}

// waitText waits until the element that sel selects holds text.
func (tb *tab) waitText(sel, text string) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%q in %s", text, sel), fmt.Sprintf(`(document.querySelector(%q)?.textContent ?? '').includes(%q)`, sel, text))
}

// show opens a page of the console (#/path) and waits for its title.
func (tb *tab) show(hash, title string) {
	tb.t.Helper()
	tb.do("navigating to "+hash, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %q`, hash)))
	tb.waitText("#page h1", title)
}

// login loads the console, answers the token prompt and waits for the Overview.
func (tb *tab) login() {
	tb.t.Helper()
	tb.do("loading the console", chromedp.Navigate(tb.base))
	tb.waitFor("the token prompt", `document.getElementById('token-dialog').open`)
	tb.do("typing the token",
		chromedp.SendKeys(chromedp.ID("token-input"), consoleToken),
		chromedp.Click(chromedp.CSS("#token-form button[type=submit]")))
	tb.waitFor("the Overview's tiles", `document.querySelectorAll('#overview-tiles .tile').length >= 7`)
}

// confirm waits for the confirmation dialog to say text, and confirms.
func (tb *tab) confirm(text string) {
	tb.t.Helper()
	tb.waitFor("the confirmation dialog", `document.getElementById('confirm-dialog').open`)
	tb.waitText("#confirm-dialog", text)
	tb.do("confirming", chromedp.Click(chromedp.ID("confirm-ok")))
	tb.waitFor("the dialog to close", `!document.getElementById('confirm-dialog').open`)
}

// testGateway is a running gateway with its admin token.
type testGateway struct {
	t       *testing.T
	g       *gateway.Gateway
	cfgPath string
	logs    *logBuffer
}

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig routes every callback to app-backend, failed C2C messages to oncall-bot
// (through a body transform) and audit, and group callbacks to audit.
const testConfig = `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: ` + consoleToken + `}
tencent:
  apps: [{sdkappid: ` + testApp + `}]
queue: {dir: %QUEUE%}
defaults:
  concurrency: 2
  retry: {max_attempts: 2, backoff: {initial: 10ms, max: 20ms, multiplier: 2, jitter: 0}}
destinations:
  app-backend: {url: "%APP%/im/callback", forward_query: true}
  audit: {url: "%AUDIT%/events?token=audit-SECRET-123456"}
  oncall-bot:
    url: "%BOT%/robot/send"
    body: '{"text": From_Account + " -> " + To_Account + ": " + ErrorInfo}'
routes:
  - name: all-to-app
    to: [app-backend]
  - name: failed-c2c
    commands: [C2C.CallbackAfterSendMsg]
    when: SendMsgResult != 0
    to: [oncall-bot, audit]
  - name: groups
    commands: ["Group.*"]
    to: [audit]
`

// startGateway runs a gateway on testConfig with the three downstreams.
func startGateway(t *testing.T, app, audit, bot *downstream) *testGateway {
	t.Helper()
	return startGatewayWith(t, testConfig, app, audit, bot)
}

// startGatewayWith runs a gateway on config, testConfig or a variant of it, with the three
// downstreams.
func startGatewayWith(t *testing.T, config string, app, audit, bot *downstream) *testGateway {
	t.Helper()
	dir := t.TempDir()
	cfg := strings.NewReplacer("%QUEUE%", strconv.Quote(filepath.Join(dir, "queue")),
		"%APP%", app.srv.URL, "%AUDIT%", audit.srv.URL, "%BOT%", bot.srv.URL).Replace(config)
	path := filepath.Join(dir, "fanout.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	g, err := gateway.New(gateway.Options{ConfigPath: path, Version: "console-test",
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		defer cancel()
		if err := g.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs)
		}
	})
	return &testGateway{t: t, g: g, cfgPath: path, logs: logs}
}

// callback sends a callback body and expects the OK answer.
func (gw *testGateway) callback(body []byte) {
	gw.t.Helper()
	var head struct{ CallbackCommand string }
	if err := json.Unmarshal(body, &head); err != nil {
		gw.t.Fatal(err)
	}
	u := "http://" + gw.g.CallbackAddr() + "/callback?SdkAppid=" + testApp + "&CallbackCommand=" + head.CallbackCommand +
		"&contenttype=json&ClientIP=203.0.113.9&OptPlatform=RESTAPI"
	resp, err := http.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		gw.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"ActionStatus":"OK"`) {
		gw.t.Fatalf("callback %s: %d %s", head.CallbackCommand, resp.StatusCode, b)
	}
}

// signedCallback sends a callback body of an app whose callback token is token, with the
// RequestTime and Sign Tencent IM adds, and expects the OK answer.
func (gw *testGateway) signedCallback(body []byte, token string) {
	gw.t.Helper()
	var head struct{ CallbackCommand string }
	if err := json.Unmarshal(body, &head); err != nil {
		gw.t.Fatal(err)
	}
	q := fanouttest.SignedCallbackQuery(testApp, head.CallbackCommand, token, time.Now())
	if a := fanouttest.PostCallback(gw.g.CallbackAddr(), q, body); !a.OK() {
		gw.t.Fatalf("callback %s: %d %s", head.CallbackCommand, a.Status, a.Body)
	}
}

// api calls the admin API with the token and decodes the answer into out.
func (gw *testGateway) api(method, path string, out any) {
	gw.t.Helper()
	req, _ := http.NewRequest(method, "http://"+gw.g.AdminAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+consoleToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		gw.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		gw.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		gw.t.Fatalf("%s %s: %v in %s", method, path, err, b)
	}
}

type destinationState struct {
	Name        string `json:"name"`
	Pending     int    `json:"pending"`
	DeadLetters int    `json:"dead_letters"`
	Paused      bool   `json:"paused"`
	PausedBy    string `json:"paused_by"`
}

func (gw *testGateway) destination(name string) destinationState {
	gw.t.Helper()
	var ds struct{ Destinations []destinationState }
	gw.api(http.MethodGet, "/api/v1/destinations", &ds)
	for _, d := range ds.Destinations {
		if d.Name == name {
			return d
		}
	}
	gw.t.Fatalf("no destination %q", name)
	return destinationState{}
}

// waitUntil polls cond on the Go side.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", stepTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// downstream is a webhook receiver whose status a test can change; it counts what it
// answered 2xx by the body's MsgKey.
type downstream struct {
	srv       *httptest.Server
	status    atomic.Int32
	mu        sync.Mutex
	delivered map[string]int
	bodies    [][]byte
}

func newDownstream(t *testing.T, status int) *downstream {
	d := &downstream{delivered: map[string]int{}}
	d.status.Store(int32(status))
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct{ MsgKey string }
		_ = json.Unmarshal(body, &m)
		st := int(d.status.Load())
		if st < 300 {
			d.mu.Lock()
			d.delivered[m.MsgKey]++
			d.bodies = append(d.bodies, body)
			d.mu.Unlock()
		}
		w.WriteHeader(st)
		fmt.Fprintf(w, "answered %d", st)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *downstream) got(key string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.delivered[key]
}

// withKey is a copy of a Tencent payload with its MsgKey set, so that a test can tell its
// deliveries apart.
func withKey(t *testing.T, name, key string) []byte {
	var m map[string]any
	if err := json.Unmarshal(fanouttest.Payload(t, name), &m); err != nil {
		t.Fatal(err)
	}
	m["MsgKey"] = key
	b, _ := json.Marshal(m)
	return b
}
