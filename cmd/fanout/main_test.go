package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestHelp: every command, and every dlq subcommand, answers -h with its own usage and
// flags on stdout and exit 0.
func TestHelp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string // in stdout
	}{
		{[]string{"-h"}, []string{"usage:", "fanout route", "fanout dlq"}},
		{[]string{"serve", "-h"}, []string{"usage: fanout serve [--config FILE]", "-log-level"}},
		{[]string{"check", "--help"}, []string{"usage: fanout check [--strict] [--format text|json] FILE...", "-format", "-strict"}},
		{[]string{"route", "-h"}, []string{"usage: fanout route --config FILE", "-expect", "-query"}},
		{[]string{"echo", "-h"}, []string{"usage: fanout echo", "-fail-ratio"}},
		{[]string{"health", "-h"}, []string{"usage: fanout health [--url URL]", "-url string\n    \tthe URL to GET (default $FANOUT_HEALTH_URL, then http://127.0.0.1:9090/healthz)\n"}},
		{[]string{"secret", "-h"}, []string{"usage: fanout secret\n"}},
		{[]string{"version", "-h"}, []string{"usage: fanout version\n"}},
		{[]string{"dlq", "-h"}, []string{"fanout dlq list", "fanout dlq purge", `"fanout dlq COMMAND -h"`}},
		{[]string{"dlq", "list", "-h"}, []string{"usage: fanout dlq list", "-limit", "-admin"}},
		{[]string{"dlq", "show", "-h"}, []string{"usage: fanout dlq show ID", "-json"}},
		{[]string{"dlq", "replay", "-h"}, []string{"usage: fanout dlq replay", "-dry-run", "-all"}},
		{[]string{"dlq", "purge", "-h"}, []string{"usage: fanout dlq purge", "-dry-run"}},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, strings.NewReader(""), &out, &errb)
		if code != exitOK {
			t.Errorf("fanout %s: exit %d, stderr %s", strings.Join(c.args, " "), code, errb.String())
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("fanout %s: stdout lacks %q:\n%s", strings.Join(c.args, " "), w, out.String())
			}
		}
		// A default the flag's text explains is not printed again.
		if regexp.MustCompile(`\(default [^)]*\) \(default `).MatchString(out.String()) {
			t.Errorf("fanout %s: a default said twice:\n%s", strings.Join(c.args, " "), out.String())
		}
	}
}

// TestFlagsOfOtherCommands: a flag a (sub)command does not take is a usage error naming
// the command.
func TestFlagsOfOtherCommands(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"check", "--config", "x.yaml"}, "check does not take --config"},
		{[]string{"dlq", "show", "1", "--destination", "crm"}, "dlq show does not take --destination"},
		{[]string{"dlq", "replay", "--limit", "5"}, "dlq replay does not take --limit"},
		{[]string{"dlq", "purge", "--after", "5"}, "dlq purge does not take --after"},
		{[]string{"version", "--json"}, "version does not take --json"},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, strings.NewReader(""), &out, &errb); code != exitUsage || !strings.Contains(errb.String(), c.want) {
			t.Errorf("fanout %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, errb.String(), exitUsage, c.want)
		}
	}
}

// TestDLQCommonFlagsFirst: --admin, --token and --json may come before the subcommand.
func TestDLQCommonFlagsFirst(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"dlq", "--admin", "http://127.0.0.1:1", "--json", "list"}, strings.NewReader(""), &out, &errb)
	if code != exitFailed || !strings.Contains(errb.String(), "GET http://127.0.0.1:1/api/v1/dlq?limit=100: ") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}
