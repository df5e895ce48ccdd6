package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway"
	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// fanout trace, events, replay and tail against a real gateway: embedded JetStream in
// t.TempDir(), httptest downstreams, run() called as main calls it.

const eventsCLIConfig = `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: cli-test-token}
tencent:
  apps: [{sdkappid: 1400000000}]
queue: {dir: %q}
log: {enabled: true}
defaults:
  retry: {max_attempts: 5, backoff: {initial: 10ms, max: 20ms, multiplier: 2, jitter: 0}}
destinations:
  crm: {url: %q}
  audit: {url: %q}
%s
routes:
  - {name: c2c-to-crm, commands: [C2C.*], to: [crm]}
  - {name: vip, commands: [C2C.*], when: 'To_Account == "Jonh"', to: [audit]}
`

// eventsGateway runs a gateway whose C2C messages go to crm, and to audit when they are for
// Jonh; extra adds destinations. It returns the gateway, its admin URL and a function that
// rewrites its config (with other extra destinations) and reloads it.
func eventsGateway(t *testing.T, crm, audit *fanouttest.Receiver) (*gateway.Gateway, string, func(extra string)) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fanout.yaml")
	write := func(extra string) {
		cfg := fmt.Sprintf(eventsCLIConfig, filepath.Join(dir, "queue"), crm.URL(), audit.URL(), extra)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	var logs fanouttest.SyncBuffer
	g, err := gateway.New(gateway.Options{ConfigPath: path, Version: "events-test", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dlqTestTimeout)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dlqTestTimeout)
		defer cancel()
		if err := g.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", &logs)
		}
	})
	reload := func(extra string) {
		write(extra)
		ctx, cancel := context.WithTimeout(context.Background(), dlqTestTimeout)
		defer cancel()
		if err := g.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return g, "http://" + g.AdminAddr(), reload
}

// eventsCmd runs fanout ARGS against adminURL and fails the test unless it exits with want.
func eventsCmd(t *testing.T, adminURL string, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	full := append(args, "--admin", adminURL, "--token", "cli-test-token")
	code, stdout, stderr := dlqRun(full...)
	if code != want {
		t.Fatalf("fanout %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(full, " "), code, want, stdout, stderr)
	}
	return stdout, stderr
}

func TestEventsCommands(t *testing.T) {
	crm := fanouttest.NewReceiver(t, nil)
	audit := fanouttest.NewReceiver(t, fanouttest.Statuses(http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusOK))
	g, admin, reload := eventsGateway(t, crm, audit)
	dlqCallback(t, g, "C2C.CallbackAfterSendMsg", "other-1") // To_Account bob: crm only
	since := time.Now()
	if ans := fanouttest.PostCallback(g.CallbackAddr(), fanouttest.CallbackQuery("1400000000", "C2C.CallbackAfterSendMsg"),
		fanouttest.C2CMessage("vip-1")); !ans.OK() {
		t.Fatalf("callback: %d %s", ans.Status, ans.Body)
	}
	fanouttest.WaitFor(t, dlqTestTimeout, "vip-1 delivered to both", func() bool {
		return crm.Delivered()["vip-1"] == 1 && audit.Delivered()["vip-1"] == 1
	})

	var id string
	t.Run("trace", func(t *testing.T) {
		var out string
		fanouttest.WaitFor(t, dlqTestTimeout, "the trace to show audit delivered", func() bool {
			out, _ = eventsCmd(t, admin, exitOK, "trace", "vip-1")
			return strings.Contains(out, "audit  delivered  3 attempts")
		})
		for _, want := range []string{
			`(?m)^callback ([0-9a-f]{32})  C2C\.CallbackAfterSendMsg  sdkappid 1400000000  request \S+$`,
			`(?m)^  From_Account=jared MsgKey=vip-1 To_Account=Jonh$`,
			`(?m)^  received \S+, routes: c2c-to-crm, vip, outcome: delivered$`,
			`(?m)^  \d\d:\d\d:\d\d\.\d{3}  \+0s +received +C2C\.CallbackAfterSendMsg -> crm, audit$`,
			`(?m)^  \d\d:\d\d:\d\d\.\d{3}  \+\S+ +crm +attempt 1: 200 2xx in \S+: delivered$`,
			`(?m)^  \d\d:\d\d:\d\d\.\d{3}  \+\S+ +audit +attempt 1: 503 5xx in \S+ \(destination "audit": POST: status 503\)$`,
			`(?m)^  \d\d:\d\d:\d\d\.\d{3}  \+\S+ +audit +attempt 2: 502 5xx in \S+ \(destination "audit": POST: status 502\)$`,
			`(?m)^  \d\d:\d\d:\d\d\.\d{3}  \+\S+ +audit +attempt 3: 200 2xx in \S+: delivered$`,
			`(?m)^  crm +delivered +1 attempt +webhook-id msg_[0-9a-f]{32}_crm$`,
			`(?m)^  audit +delivered +3 attempts +webhook-id msg_[0-9a-f]{32}_audit$`,
		} {
			if !regexp.MustCompile(want).MatchString(out) {
				t.Errorf("no line matching %s in:\n%s", want, out)
			}
		}
		t.Logf("fanout trace vip-1:\n%s", out)
		id = regexp.MustCompile(`callback ([0-9a-f]{32})`).FindStringSubmatch(out)[1]
		if !strings.Contains(audit.Requests()[0].Header.Get("Webhook-Id"), id) {
			t.Errorf("the trace's id %s is not the webhook-id's %s", id, audit.Requests()[0].Header.Get("Webhook-Id"))
		}
		byID, _ := eventsCmd(t, admin, exitOK, "trace", id)
		if byID != out {
			t.Errorf("trace by id differs from trace by MsgKey:\n%s\n%s", byID, out)
		}
		js, _ := eventsCmd(t, admin, exitOK, "trace", "--json", id)
		var d eventlog.Detail
		if err := json.Unmarshal([]byte(js), &d); err != nil || d.ID != id || len(d.Timeline) != 5 {
			t.Errorf("trace --json: %v %+v", err, d)
		}
		byField, _ := eventsCmd(t, admin, exitOK, "trace", "--field", "To_Account", "Jonh")
		if byField != out {
			t.Errorf("trace --field To_Account Jonh:\n%s", byField)
		}
		if _, stderr := eventsCmd(t, admin, exitFailed, "trace", "no-such-key"); !strings.Contains(stderr, "no callback with MsgKey no-such-key") {
			t.Errorf("trace of an unknown key: %s", stderr)
		}
	})

	t.Run("events", func(t *testing.T) {
		out, _ := eventsCmd(t, admin, exitOK, "events")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !regexp.MustCompile(`^RECEIVED +ID +COMMAND +OUTCOME +FIELDS +DELIVERIES$`).MatchString(lines[0]) {
			t.Fatalf("events:\n%s", out)
		}
		row := `^\S+Z +` + id + ` +C2C\.CallbackAfterSendMsg +delivered +From_Account=jared MsgKey=vip-1 To_Account=Jonh +crm:delivered\(1\) audit:delivered\(3\)$`
		if !regexp.MustCompile(row).MatchString(lines[1]) || !strings.Contains(lines[2], "MsgKey=other-1") {
			t.Errorf("rows:\n%s", out)
		}
		for _, c := range []struct {
			args []string
			want string // the MsgKeys listed
		}{
			{[]string{"--field", "MsgKey=other-1"}, "other-1"},
			{[]string{"--destination", "audit"}, "vip-1"},
			{[]string{"--route", "vip", "--outcome", "delivered"}, "vip-1"},
			{[]string{"--since", since.UTC().Format(time.RFC3339Nano)}, "vip-1"},
			{[]string{"--since", "1h", "--until", "30m"}, ""},
			{[]string{"--outcome", "dead"}, ""},
		} {
			js, _ := eventsCmd(t, admin, exitOK, append([]string{"events", "--json"}, c.args...)...)
			var page httpapi.EventPage
			if err := json.Unmarshal([]byte(js), &page); err != nil {
				t.Fatalf("events --json %v: %v\n%s", c.args, err, js)
			}
			var keys []string
			for _, s := range page.Items {
				keys = append(keys, s.Fields["MsgKey"])
			}
			if got := strings.Join(keys, " "); got != c.want {
				t.Errorf("events %v: %q, want %q", c.args, got, c.want)
			}
		}
		_, stderr := eventsCmd(t, admin, exitOK, "events", "--limit", "1")
		if !strings.Contains(stderr, "more callbacks: add --after") {
			t.Errorf("a first page of one: %q", stderr)
		}
		for _, args := range [][]string{{"events", "--limit", "0"}, {"events", "--field", "MsgKey"}, {"events", "extra"}, {"events", "--since", "soon"}} {
			eventsCmd(t, admin, exitUsage, args...)
		}
		if _, stderr := eventsCmd(t, admin, exitFailed, "events", "--outcome", "lost"); !strings.Contains(stderr, "400 Bad Request: parameter outcome") {
			t.Errorf("--outcome lost: %s", stderr)
		}
	})

	t.Run("replay", func(t *testing.T) {
		backfill := fanouttest.NewReceiver(t, nil)
		reload(fmt.Sprintf("  backfill: {url: %q}", backfill.URL()))
		for _, args := range [][]string{{"replay", "--to", "backfill"}, {"replay", "--since", "1h"}, {"replay", "--since", "1h", "--to", "backfill", "--reroute"}} {
			eventsCmd(t, admin, exitUsage, args...)
		}
		out, _ := eventsCmd(t, admin, exitOK, "replay", "--since", "10m", "--to", "backfill", "--dry-run", "--batch", "1")
		if out != "dry run: 2 callbacks selected, would queue 2 deliveries (backfill 2)\n" || backfill.Count() != 0 {
			t.Errorf("dry run: %q, %d delivered", out, backfill.Count())
		}
		out, _ = eventsCmd(t, admin, exitOK, "replay", "--since", "10m", "--to", "backfill", "--field", "MsgKey=vip-1")
		if out != "1 callbacks selected, queued 1 deliveries (backfill 1)\n" {
			t.Errorf("replay: %q", out)
		}
		fanouttest.WaitFor(t, dlqTestTimeout, "the backfill", func() bool { return backfill.Delivered()["vip-1"] == 1 })
		if got := backfill.Requests()[0].Header.Get("Webhook-Id"); got != "msg_"+id+"_backfill" {
			t.Errorf("webhook-id %s", got)
		}
		out, _ = eventsCmd(t, admin, exitOK, "replay", "--since", "10m", "--reroute", "--dry-run")
		if out != "dry run: 2 callbacks selected, would queue 3 deliveries (audit 1, crm 2)\n" {
			t.Errorf("reroute dry run: %q", out)
		}
		if _, stderr := eventsCmd(t, admin, exitFailed, "replay", "--since", "10m", "--to", "nowhere"); !strings.Contains(stderr, `"nowhere" is not a configured destination`) {
			t.Errorf("replay to nowhere: %s", stderr)
		}
	})

	t.Run("tail", func(t *testing.T) {
		var out fanouttest.SyncBuffer
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- runTail(ctx, []string{"--admin", admin, "--token", "cli-test-token", "--destination", "crm"}, nil, &out, &out)
		}()
		// The tail starts at the end of the log once it follows it, maybe between a callback
		// and its attempt: send until it shows both a callback and a delivery.
		line := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3}  [0-9a-f]{32}  received  C2C\.CallbackAfterSendMsg -> crm  From_Account=alice MsgKey=tail-\d+ To_Account=bob$`)
		n := 0
		fanouttest.WaitFor(t, dlqTestTimeout, "tail to show a callback and a delivery to crm", func() bool {
			n++
			dlqCallback(t, g, "C2C.CallbackAfterSendMsg", fmt.Sprintf("tail-%d", n))
			return line.MatchString(out.String()) && strings.Contains(out.String(), "crm  attempt 1: 200 2xx")
		})
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("tail ended with %v", err)
			}
		case <-time.After(dlqTestTimeout):
			t.Fatal("tail did not end when interrupted")
		}
		if strings.Contains(out.String(), "audit") {
			t.Errorf("tail --destination crm:\n%s", out.String())
		}
	})
}
