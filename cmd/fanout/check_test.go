package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkConfig is a config whose routes are written by each test, to the oncall destination.
const checkConfig = `tencent:
  apps: [{sdkappid: 1400000000}]
%s
destinations:
  oncall: {url: "https://oncall.example.com/hook"}
routes:
`

// runCheckOn writes routes into a config file and runs fanout check with args on it. The
// output names the file config.yaml, as if run from its folder.
func runCheckOn(t *testing.T, tencent, routes string, args ...string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	cfg := strings.Replace(checkConfig, "%s", tencent, 1) + routes
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(append(append([]string{"check"}, args...), path), strings.NewReader(""), &stdout, &stderr)
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", &stderr)
	}
	return code, strings.ReplaceAll(stdout.String(), dir+string(filepath.Separator), "")
}

// TestCheckMisroutes: check refuses, with exit 1 and the place of each, the rules that
// certainly misroute; tencent.extra_commands lets a route name a command Fanout does not
// know yet.
func TestCheckMisroutes(t *testing.T) {
	tests := []struct {
		name, tencent, routes string
		code                  int
		want                  string
	}{
		{name: "a field the command does not carry",
			routes: "  - name: failed\n    commands: [C2C.CallbackAfterSendMsg]\n    when: SendMsgReslt != 0\n    to: [oncall]\n",
			code:   exitFailed,
			want: "config.yaml:9:11: routes[0].when: unknown field SendMsgReslt: C2C.CallbackAfterSendMsg does not carry it, so it is always nil on this route (did you mean SendMsgResult?)\n" +
				"config.yaml: invalid (1 error, 0 warnings)\n"},
		{name: "a literal of another type",
			routes: "  - name: failed\n    commands: [C2C.CallbackAfterSendMsg]\n    when: SendMsgResult != \"0\"\n    to: [oncall]\n",
			code:   exitFailed,
			want: "config.yaml:9:11: routes[0].when: SendMsgResult is a number, so SendMsgResult != \"0\" is always true (did you mean SendMsgResult != 0?)\n" +
				"config.yaml: invalid (1 error, 0 warnings)\n"},
		{name: "an unknown command",
			routes: "  - name: new\n    commands: [Group.CallbackAfterSendMsg, Group.CallbackAfterMsgPin]\n    to: [oncall]\n",
			code:   exitFailed,
			want: "config.yaml:8:44: routes[0].commands[1]: unknown command \"Group.CallbackAfterMsgPin\": no callback has it, so this entry selects nothing; if Tencent IM added it, list it in tencent.extra_commands\n" +
				"config.yaml: invalid (1 error, 0 warnings)\n"},
		{name: "an unknown command listed in extra_commands",
			tencent: "  extra_commands: [Group.CallbackAfterMsgPin]",
			routes:  "  - name: new\n    commands: [Group.CallbackAfterSendMsg, Group.CallbackAfterMsgPin]\n    to: [oncall]\n",
			code:    exitOK,
			want:    "config.yaml: ok (0 errors, 0 warnings)\n"},
		{name: "a warning alone passes",
			routes: "  - name: failed\n    when: SendMsgResult != 0\n    to: [oncall]\n",
			code:   exitOK,
			want: "config.yaml:8:11: routes[0].when: warning: SendMsgResult is carried only by some callbacks (C2C.CallbackAfterSendMsg, Bot.OnC2CMessage); this route has no commands, so for every other callback SendMsgResult is nil (and nil != 0 is true): add commands\n" +
				"config.yaml: ok (0 errors, 1 warning)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runCheckOn(t, tt.tencent, tt.routes)
			if code != tt.code || out != tt.want {
				t.Errorf("exit %d, want %d; output:\n%s\nwant:\n%s", code, tt.code, out, tt.want)
			}
		})
	}
}

// TestCheckStrict: --strict fails on warnings too, and says so.
func TestCheckStrict(t *testing.T) {
	routes := "  - name: a\n    commands: [\"C2C.*\"]\n    when: GroupId == \"x\"\n    to: [oncall]\n  - name: b\n    commands: [\"Chat.*\"]\n    to: [oncall]\n"
	code, out := runCheckOn(t, "", routes, "--strict")
	want := "config.yaml:9:11: routes[0].when: warning: GroupId is not carried by C2C.CallbackBeforeSendMsg, C2C.CallbackAfterSendMsg, C2C.CallbackAfterMsgReport and 1 more: it is always nil on this route\n" +
		"config.yaml:12:16: routes[1].commands[0]: warning: \"Chat.*\" matches no known command\n" +
		"config.yaml: refused by --strict (0 errors, 2 warnings)\n"
	if code != exitFailed || out != want {
		t.Errorf("exit %d, want %d; output:\n%s\nwant:\n%s", code, exitFailed, out, want)
	}

	code, out = runCheckOn(t, "", routes, "--strict", "--format", "json")
	var results []struct {
		Valid    bool `json:"valid"`
		Problems []struct {
			Warning bool `json:"warning"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if code != exitFailed || len(results) != 1 || results[0].Valid || len(results[0].Problems) != 2 {
		t.Errorf("exit %d, results %+v", code, results)
	}

	code, out = runCheckOn(t, "", "  - name: a\n    to: [oncall]\n", "--strict")
	if code != exitOK || out != "config.yaml: ok (0 errors, 0 warnings)\n" {
		t.Errorf("a clean config with --strict: exit %d\n%s", code, out)
	}
}
