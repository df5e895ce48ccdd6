package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fanout-gw/fanout/gateway"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestRouteShowsLanes: fanout route shows the lane of each delivery to a destination with
// order_by, and the fallback lane with the reason when the key cannot be computed.
func TestRouteShowsLanes(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fanout.yaml")
	if err := os.WriteFile(cfg, []byte(`
tencent:
  apps: [{sdkappid: 1400000000}]
destinations:
  app:
    url: http://127.0.0.1:8000/im
    order_by: GroupId ?? (From_Account + ":" + To_Account)
  audit:
    url: http://127.0.0.1:8001/events
routes:
  - name: all
    commands: [C2C.*, Group.*, State.*]
    to: [app, audit]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	payloads := fanouttest.PayloadDir()
	code, stdout, stderr := dlqRun("route", "--config", cfg,
		filepath.Join(payloads, "C2C.CallbackAfterSendMsg.json"), filepath.Join(payloads, "Group.CallbackAfterSendMsg.json"),
		filepath.Join(payloads, "State.StateChange.json"))
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		`     lane: "jared:Jonh"`,
		`     lane: "@TGS#2J4SZEAEL"`,
		`     lane: "", the fallback lane (order_by: `,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("route output lacks %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "lane:"); n != 3 {
		t.Errorf("%d lanes shown, want 3 (app's only):\n%s", n, stdout)
	}

	code, stdout, _ = dlqRun("route", "--config", cfg, "--format", "json", filepath.Join(payloads, "C2C.CallbackAfterSendMsg.json"))
	var results []routeResult
	if err := json.Unmarshal([]byte(stdout), &results); code != exitOK || err != nil || len(results) != 1 {
		t.Fatalf("route --format json: exit %d, %v\n%s", code, err, stdout)
	}
	for _, d := range results[0].Deliveries {
		switch {
		case d.Destination == "app" && (d.Key == nil || *d.Key != "jared:Jonh" || d.KeyError != ""):
			t.Errorf("app: key %v, error %q", d.Key, d.KeyError)
		case d.Destination == "audit" && d.Key != nil:
			t.Errorf("audit has no order_by, but key %q", *d.Key)
		}
	}
}

// TestLanesCommand: fanout lanes list, retry and skip against a real gateway whose ordered
// destination blocks a lane on a 400.
func TestLanesCommand(t *testing.T) {
	var mu sync.Mutex
	refuse := map[string]bool{"k1-0": true, "k1-1": true}
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		mu.Lock()
		defer mu.Unlock()
		if refuse[fanouttest.MsgKey(r.Body)] {
			return fanouttest.Answer{Status: http.StatusBadRequest}
		}
		return fanouttest.Answer{}
	})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fanout.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: cli-test-token}
tencent:
  apps: [{sdkappid: 1400000000}]
queue: {dir: %q}
destinations:
  app: {url: %q, order_by: 'MsgKey[0:2]', on_exhausted: block}
routes:
  - name: all
    to: [app]
`, filepath.Join(dir, "queue"), rc.URL())), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{ConfigPath: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop(ctx) })
	for i := range 2 {
		dlqCallback(t, g, "C2C.CallbackAfterSendMsg", fmt.Sprintf("k1-%d", i))
		dlqCallback(t, g, "C2C.CallbackAfterSendMsg", fmt.Sprintf("k2-%d", i))
	}
	admin := "http://" + g.AdminAddr()
	lanes := func(want int, args ...string) string {
		t.Helper()
		full := append([]string{"lanes"}, args...)
		full = append(full, "--admin", admin, "--token", "cli-test-token")
		code, stdout, stderr := dlqRun(full...)
		if code != want {
			t.Fatalf("fanout %s: exit %d, want %d\n%s\n%s", strings.Join(full, " "), code, want, stdout, stderr)
		}
		return stdout + stderr
	}
	fanouttest.WaitFor(t, dlqTestTimeout, "lane k1 blocked, k2 delivered", func() bool {
		out := lanes(exitOK, "list")
		return strings.Contains(out, `"k1"`) && strings.Contains(out, "status 400") && len(rc.Delivered()) == 2
	})
	out := lanes(exitOK, "list", "--destination", "app")
	for _, want := range []string{"DESTINATION  KEY", "status 400", `destination "app": POST: status 400`, "app (order_by: MsgKey[0:2], on_exhausted: block): this replica consumes 16 of its 16 partitions"} {
		if !strings.Contains(out, want) {
			t.Errorf("lanes list lacks %q:\n%s", want, out)
		}
	}
	if out := lanes(exitFailed, "retry", "app", "k9"); !strings.Contains(out, "404 Not Found") {
		t.Errorf("retry of a lane not blocked:\n%s", out)
	}
	if out := lanes(exitUsage, "retry", "app"); !strings.Contains(out, "retry takes a destination and a key") {
		t.Errorf("retry without a key:\n%s", out)
	}

	mu.Lock()
	delete(refuse, "k1-0")
	mu.Unlock()
	if out := lanes(exitOK, "retry", "app", "k1"); !strings.Contains(out, `lane "k1" of app: retry applied`) {
		t.Errorf("retry:\n%s", out)
	}
	fanouttest.WaitFor(t, dlqTestTimeout, "k1-0 delivered, k1-1 blocked", func() bool {
		return rc.Delivered()["k1-0"] == 1 && strings.Contains(lanes(exitOK, "list"), `"k1"`)
	})
	if out := lanes(exitOK, "skip", "app", "k1", "--json"); !strings.Contains(out, `"applied":true`) {
		t.Errorf("skip --json:\n%s", out)
	}
	if out := lanes(exitOK, "list"); !strings.Contains(out, "no blocked lanes") {
		t.Errorf("list after the skip:\n%s", out)
	}
	if ids := dlqIDs(t, admin); len(ids) != 1 {
		t.Errorf("dead letters after the skip: %v, want k1-1's", ids)
	}
	if code, stdout, _ := dlqRun("lanes", "-h"); code != exitOK || !strings.Contains(stdout, "fanout lanes retry DESTINATION KEY") {
		t.Errorf("lanes -h: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := dlqRun("lanes", "skip", "-h"); code != exitOK || !strings.Contains(stdout, "usage: fanout lanes skip DESTINATION KEY") {
		t.Errorf("lanes skip -h: exit %d\n%s", code, stdout)
	}
}
