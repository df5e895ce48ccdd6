package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// fanout dlq against a real gateway started in the test: embedded JetStream in
// t.TempDir(), httptest downstreams, and run() called as main calls it.

const dlqTestTimeout = 30 * time.Second

// dlqAnswer is a downstream's answer: every request gets status.
func dlqAnswer(status int) fanouttest.AnswerFunc {
	return fanouttest.Reply(fanouttest.Answer{Status: status})
}

// dlqGateway runs a gateway with two destinations that refuse deliveries (400 and 422)
// and returns its admin URL.
func dlqGateway(t *testing.T, crm, audit *fanouttest.Receiver) (g *gateway.Gateway, adminURL string) {
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: cli-test-token}
tencent:
  apps: [{sdkappid: 1400000000}]
queue: {dir: %q}
defaults:
  concurrency: 1
  retry: {max_attempts: 2, backoff: {initial: 10ms, max: 20ms, multiplier: 2, jitter: 0}}
destinations:
  crm: {url: %q}
  audit: {url: %q}
routes:
  - name: c2c-to-crm
    commands: [C2C.CallbackAfterSendMsg]
    to: [crm]
  - name: groups-to-audit
    commands: [Group.*]
    to: [audit]
`, filepath.Join(dir, "queue"), crm.URL(), audit.URL())
	path := filepath.Join(dir, "fanout.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs fanouttest.SyncBuffer
	g, err := gateway.New(gateway.Options{ConfigPath: path, Version: "dlq-test",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
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
	return g, "http://" + g.AdminAddr()
}

// dlqCallback sends one callback carrying key and expects Tencent's OK.
func dlqCallback(t *testing.T, g *gateway.Gateway, command, key string) {
	t.Helper()
	body := fmt.Sprintf(`{"CallbackCommand":%q,"From_Account":"alice","To_Account":"bob","MsgKey":%q}`, command, key)
	resp, err := http.Post("http://"+g.CallbackAddr()+"/callback?SdkAppid=1400000000&CallbackCommand="+command+"&contenttype=json",
		"application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"ActionStatus":"OK"`) {
		t.Fatalf("callback %s: %d %s", key, resp.StatusCode, b)
	}
}

// fanout runs the command line in-process and returns its exit code and output.
func dlqRun(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// dlq runs fanout dlq ARGS against adminURL and fails the test unless it exits with want.
func dlqCmd(t *testing.T, adminURL string, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	full := append([]string{"dlq"}, args...)
	full = append(full, "--admin", adminURL, "--token", "cli-test-token")
	code, stdout, stderr := dlqRun(full...)
	if code != want {
		t.Fatalf("fanout %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(full, " "), code, want, stdout, stderr)
	}
	return stdout, stderr
}

// dlqIDs lists the dead letters through --json and returns their ids.
func dlqIDs(t *testing.T, adminURL string, filter ...string) []uint64 {
	t.Helper()
	out, _ := dlqCmd(t, adminURL, exitOK, append([]string{"list", "--json", "--limit", "1000"}, filter...)...)
	var page httpapi.DeadLetterPage
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	ids := []uint64{}
	for _, d := range page.Items {
		ids = append(ids, d.ID)
	}
	return ids
}

// dlqWait waits until the dead-letter queue holds n dead letters, and returns their ids.
func dlqWait(t *testing.T, adminURL string, n int) []uint64 {
	t.Helper()
	var ids []uint64
	fanouttest.WaitForNone(t, dlqTestTimeout, fmt.Sprintf("%d dead letters", n), func() []string {
		if ids = dlqIDs(t, adminURL); len(ids) == n {
			return nil
		}
		return []string{fmt.Sprintf("have %v", ids)}
	})
	return ids
}

// TestDLQCell: a reason or error of any length and lines stays in one cell of one line.
func TestDLQCell(t *testing.T) {
	long := "transform: " + strings.Repeat("field MsgBody[0].MsgContent is missing\n\t", 5)
	for _, c := range []struct {
		s     string
		width int
		want  string
	}{
		{"status 400", 40, "status 400"},
		{"max\nattempts", 40, "max attempts"},
		{long, 40, "transform: field MsgBody[0].MsgConten..."},
		{"dial tcp 127.0.0.1:8001: connect: connection refusé", 60, "dial tcp 127.0.0.1:8001: connect: connection refusé"},
		{strings.Repeat("é", 61), 60, strings.Repeat("é", 57) + "..."},
	} {
		if got := cell(c.s, c.width); got != c.want {
			t.Errorf("cell(%q, %d) = %q, want %q", c.s, c.width, got, c.want)
		}
	}
}

// tableIDs returns the first column of a dlq list table, below its header.
func dlqTableIDs(t *testing.T, table string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if !regexp.MustCompile(`^ID +DEAD AT +DESTINATION +REASON +STATUS +ATTEMPTS +COMMAND +LAST ERROR$`).MatchString(lines[0]) {
		t.Fatalf("table header %q", lines[0])
	}
	var ids []string
	for _, l := range lines[1:] {
		ids = append(ids, strings.Fields(l)[0])
	}
	return ids
}

func dlqIDStrings(ids []uint64) []string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return s
}

func TestDLQCommand(t *testing.T) {
	crm, audit := fanouttest.NewReceiver(t, dlqAnswer(http.StatusBadRequest)), fanouttest.NewReceiver(t, dlqAnswer(http.StatusUnprocessableEntity))
	g, admin := dlqGateway(t, crm, audit)
	const c2c, group = "C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg"
	dlqCallback(t, g, c2c, "c1")
	dlqWait(t, admin, 1) // one at a time: the ids of dead letters written at once come in either order
	dlqCallback(t, g, c2c, "c2")
	dlqWait(t, admin, 2)
	middle := time.Now()
	dlqCallback(t, g, c2c, "c3")
	dlqWait(t, admin, 3)
	dlqCallback(t, g, group, "g1")
	all := dlqIDStrings(dlqWait(t, admin, 4))

	t.Run("list", func(t *testing.T) {
		out, _ := dlqCmd(t, admin, exitOK, "list")
		if got := dlqTableIDs(t, out); strings.Join(got, " ") != strings.Join(all, " ") {
			t.Errorf("ids %v, want %v", got, all)
		}
		row := regexp.MustCompile(`(?m)^` + all[0] + ` +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +crm +status 400 +400 +1 +C2C\.CallbackAfterSendMsg +POST: status 400$`)
		if !row.MatchString(out) {
			t.Errorf("no row for the first dead letter in:\n%s", out)
		}
	})

	t.Run("filter", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want []string
		}{
			{[]string{"--destination", "audit"}, all[3:]},
			{[]string{"--destination=crm"}, all[:3]},
			{[]string{"--reason", "422"}, all[3:]},
			{[]string{"--since", middle.UTC().Format(time.RFC3339Nano)}, all[2:]},
			{[]string{"--since", "1h"}, all},
			{[]string{"--until", middle.UTC().Format(time.RFC3339Nano), "--destination", "crm"}, all[:2]},
		} {
			out, _ := dlqCmd(t, admin, exitOK, append([]string{"list"}, c.args...)...)
			if got := dlqTableIDs(t, out); strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("list %v: ids %v, want %v", c.args, got, c.want)
			}
		}
		if out, _ := dlqCmd(t, admin, exitOK, "list", "--destination", "nobody"); out != "no dead letters\n" {
			t.Errorf("an empty list printed %q", out)
		}
	})

	t.Run("pages", func(t *testing.T) {
		var seen []string
		after := "0"
		for range 10 {
			out, stderr := dlqCmd(t, admin, exitOK, "list", "--limit", "1", "--after", after)
			seen = append(seen, dlqTableIDs(t, out)...)
			m := regexp.MustCompile(`--after (\d+)`).FindStringSubmatch(stderr)
			if m == nil {
				break
			}
			after = m[1]
		}
		if strings.Join(seen, " ") != strings.Join(all, " ") {
			t.Errorf("paged through %v, want %v", seen, all)
		}
	})

	t.Run("show", func(t *testing.T) {
		out, _ := dlqCmd(t, admin, exitOK, "show", all[0])
		for _, want := range []string{"destination:", "crm", "status 400", "C2C.CallbackAfterSendMsg", `last error:      destination "crm": POST: status 400`,
			"query:", "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json", `"MsgKey": "c1"`} {
			if !strings.Contains(out, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
		out, _ = dlqCmd(t, admin, exitOK, "show", all[0], "--json")
		var d httpapi.DeadLetterDetail
		if err := json.Unmarshal([]byte(out), &d); err != nil || strconv.FormatUint(d.ID, 10) != all[0] || d.BodyEncoding != "json" {
			t.Errorf("show --json: %v %s", err, out)
		}
		_, stderr := dlqCmd(t, admin, exitFailed, "show", "999999")
		if !strings.Contains(stderr, admin+"/api/v1/dlq/999999") || !strings.Contains(stderr, "404") || !strings.Contains(stderr, "not found") {
			t.Errorf("show of an unknown id: %s", stderr)
		}
	})

	t.Run("dry runs change nothing", func(t *testing.T) {
		out, _ := dlqCmd(t, admin, exitOK, "replay", all[0], "--dry-run")
		if out != "dry run: 1 matched, would replay 1: "+all[0]+"\n" {
			t.Errorf("replay --dry-run: %q", out)
		}
		out, _ = dlqCmd(t, admin, exitOK, "replay", "--destination", "crm", "--dry-run")
		if !strings.HasPrefix(out, "dry run: 3 matched, would replay 3") {
			t.Errorf("replay --destination crm --dry-run: %q", out)
		}
		out, _ = dlqCmd(t, admin, exitOK, "purge", "--all", "--dry-run")
		if out != "dry run: 4 matched, would delete 4\n" {
			t.Errorf("purge --all --dry-run: %q", out)
		}
		if got := dlqIDStrings(dlqIDs(t, admin)); strings.Join(got, " ") != strings.Join(all, " ") {
			t.Errorf("after dry runs: %v, want %v", got, all)
		}
	})

	t.Run("replay by id", func(t *testing.T) {
		crm.SetAnswer(dlqAnswer(http.StatusOK))
		out, _ := dlqCmd(t, admin, exitOK, "replay", all[0])
		if out != "1 matched, replayed 1: "+all[0]+"\n" {
			t.Errorf("replay: %q", out)
		}
		fanouttest.WaitFor(t, dlqTestTimeout, "c1 delivered", func() bool { return crm.Delivered()["c1"] > 0 })
		if got := dlqIDStrings(dlqIDs(t, admin)); strings.Join(got, " ") != strings.Join(all[1:], " ") {
			t.Errorf("dead letters %v, want %v", got, all[1:])
		}
	})

	t.Run("replay by filter", func(t *testing.T) {
		out, _ := dlqCmd(t, admin, exitOK, "replay", "--destination", "crm", "--since", "1h")
		if out != "2 matched, replayed 2: "+all[1]+" "+all[2]+"\n" {
			t.Errorf("replay: %q", out)
		}
		fanouttest.WaitFor(t, dlqTestTimeout, "c2 and c3 delivered", func() bool { return crm.Delivered()["c2"] > 0 && crm.Delivered()["c3"] > 0 })
		out, _ = dlqCmd(t, admin, exitOK, "list", "--json")
		var page httpapi.DeadLetterPage
		if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Items) != 1 || page.Items[0].Destination != "audit" || page.Next != 0 {
			t.Errorf("list --json: %v %s", err, out)
		}
	})

	t.Run("purge", func(t *testing.T) {
		out, _ := dlqCmd(t, admin, exitOK, "purge", all[3])
		if out != "1 matched, deleted 1\n" {
			t.Errorf("purge by id: %q", out)
		}
		_, stderr := dlqCmd(t, admin, exitFailed, "purge", all[3])
		if !strings.Contains(stderr, all[3]+": not found") {
			t.Errorf("purge of a gone id: %s", stderr)
		}
		crm.SetAnswer(dlqAnswer(http.StatusBadRequest))
		dlqCallback(t, g, c2c, "c4")
		dlqCallback(t, g, c2c, "c5")
		dlqWait(t, admin, 2)
		out, _ = dlqCmd(t, admin, exitOK, "purge", "--destination", "crm", "--json")
		var p httpapi.PurgeResult
		if err := json.Unmarshal([]byte(out), &p); err != nil || p.Matched != 2 || p.Deleted != 2 || p.DryRun {
			t.Errorf("purge --json: %v %s", err, out)
		}
		if out, _ := dlqCmd(t, admin, exitOK, "list"); out != "no dead letters\n" {
			t.Errorf("after the purge: %q", out)
		}
	})

	t.Run("environment", func(t *testing.T) {
		t.Setenv("FANOUT_ADMIN_URL", admin)
		t.Setenv("FANOUT_ADMIN_TOKEN", "cli-test-token")
		if code, out, stderr := dlqRun("dlq", "list"); code != exitOK || out != "no dead letters\n" {
			t.Errorf("with $FANOUT_ADMIN_URL and $FANOUT_ADMIN_TOKEN: exit %d %q %s", code, out, stderr)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"dlq", "replay", "--admin", admin}, exitUsage, "give ids, a filter"},
			{[]string{"dlq", "purge", "--dry-run", "--admin", admin}, exitUsage, "--all for every dead letter"},
			{[]string{"dlq", "purge", "3", "--destination", "crm", "--admin", admin}, exitUsage, "not both"},
			{[]string{"dlq", "list", "--dry-run"}, exitUsage, "list does not take --dry-run"},
			{[]string{"dlq", "list", "--since", "yesterday"}, exitUsage, `--since "yesterday"`},
			{[]string{"dlq", "list", "--limit", "5000"}, exitUsage, "--limit 5000"},
			{[]string{"dlq", "show"}, exitUsage, "one dead-letter id"},
			{[]string{"dlq", "show", "x1"}, exitUsage, `"x1" is not a dead-letter id`},
			{[]string{"dlq", "drop"}, exitUsage, `unknown subcommand "drop"`},
			{[]string{"dlq"}, exitUsage, "no subcommand"},
			{[]string{"dlq", "list", "--admin", admin}, exitFailed, admin + "/api/v1/dlq?limit=100: 401 Unauthorized: missing or wrong bearer token"},
			{[]string{"dlq", "list", "--admin", admin, "--token", "wrong"}, exitFailed, "401 Unauthorized"},
			{[]string{"dlq", "list", "--admin", "http://127.0.0.1:1"}, exitFailed, "GET http://127.0.0.1:1/api/v1/dlq?limit=100: "},
		} {
			t.Setenv("FANOUT_ADMIN_TOKEN", "")
			code, _, stderr := dlqRun(c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("fanout %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, stderr, c.code, c.want)
			}
		}
	})
}

// TestCheckRefusesOpenAdminPort: an admin port on a non-loopback address needs a token, or
// insecure: true said out loud.
func TestCheckRefusesOpenAdminPort(t *testing.T) {
	for _, c := range []struct {
		admin string
		code  int
	}{
		{`{listen: "0.0.0.0:9090"}`, exitFailed},
		{`{listen: ":9090"}`, exitFailed},
		{`{listen: "0.0.0.0:9090", token: t0ken}`, exitOK},
		{`{listen: "0.0.0.0:9090", insecure: true}`, exitOK},
		{`{listen: "127.0.0.1:9090"}`, exitOK},
	} {
		path := filepath.Join(t.TempDir(), "fanout.yaml")
		cfg := fmt.Sprintf(`
admin: %s
tencent: {apps: [{sdkappid: 1400000000}]}
destinations: {crm: {url: "http://crm.internal/hook"}}
routes: [{name: all, to: [crm]}]
`, c.admin)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, _ := dlqRun("check", path)
		if code != c.code {
			t.Errorf("admin %s: exit %d, want %d\n%s", c.admin, code, c.code, out)
		}
		if c.code == exitFailed && !strings.Contains(out, "admin.listen: ") ||
			c.code == exitFailed && !strings.Contains(out, "is not a loopback address and admin.token is empty: set a token, or insecure: true") {
			t.Errorf("admin %s: check says\n%s", c.admin, out)
		}
	}
}
