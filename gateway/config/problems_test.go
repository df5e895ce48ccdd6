package config

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.want from what Parse reports (review the diff)")

// mapEnv is an environment for Parse made of m only, so that tests do not depend on the
// process environment.
func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// fixtureEnv is the environment every testdata file is parsed with.
var fixtureEnv = mapEnv(map[string]string{"SET": "x", "EMPTY": ""})

// TestFixtures parses every testdata/*.yaml and compares each problem, formatted as
// `fanout check` prints it, with the lines of the .want file beside it. A bad-*.yaml must
// not load; a warn-*.yaml must load with warnings only.
func TestFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d fixtures in testdata, want the bad-*.yaml and warn-*.yaml set", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, probs := Parse(file, data, fixtureEnv)
			var got strings.Builder
			for _, p := range probs {
				got.WriteString(p.String() + "\n")
			}
			wantFile := strings.TrimSuffix(file, ".yaml") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it, then review it)", err)
			}
			if got.String() != string(want) {
				t.Errorf("problems differ from %s\ngot:\n%s\nwant:\n%s", wantFile, got.String(), want)
			}

			switch {
			case strings.HasPrefix(name, "bad-"):
				if c != nil {
					t.Errorf("a config with errors loaded")
				}
				if len(probs.Errors()) == 0 || probs.Err() == nil {
					t.Errorf("no errors reported")
				}
			case strings.HasPrefix(name, "warn-"):
				if c == nil {
					t.Fatalf("a config with only warnings did not load:\n%v", probs)
				}
				if len(probs.Warnings()) == 0 || len(probs.Warnings()) != len(probs) || probs.Err() != nil {
					t.Errorf("want warnings only, got:\n%v", probs)
				}
			default:
				t.Fatalf("fixture names start with bad- or warn-")
			}
			checkOrder(t, probs)
		})
	}
}

// checkOrder checks that problems come in document order, each with a position.
func checkOrder(t *testing.T, probs Problems) {
	t.Helper()
	for i, p := range probs {
		if p.Line < 1 || p.Column < 1 {
			t.Errorf("problem without a position: %v", p)
		}
		if i > 0 {
			q := probs[i-1]
			if p.Line < q.Line || (p.Line == q.Line && p.Column < q.Column) {
				t.Errorf("problems out of document order:\n%v\n%v", q, p)
			}
		}
	}
}

// TestExampleConfig loads the repository's config.example.yaml with an empty environment:
// every ${VAR} in it has a default, and it must show no problem at all.
func TestExampleConfig(t *testing.T) {
	const file = "../../config.example.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, probs := Parse(file, data, mapEnv(nil))
	if len(probs) > 0 || c == nil {
		t.Fatalf("config.example.yaml: want no problems, got:\n%v", probs)
	}
	var names []string
	for _, d := range c.Destinations {
		names = append(names, d.Name)
	}
	if want := []string{"app-backend", "audit", "oncall-bot"}; !slices.Equal(names, want) {
		t.Errorf("destinations %v, want %v in file order", names, want)
	}
	if len(c.Routes) != 3 || len(c.Respond) != 1 || c.Rules == nil {
		t.Errorf("got %d routes, %d respond rules, rules %v", len(c.Routes), len(c.Respond), c.Rules)
	}
	if d := c.Destination("oncall-bot"); d == nil || d.Transform == nil {
		t.Errorf("oncall-bot's body was not compiled")
	}
	if got := c.Destination("audit").Retry.MaxAttempts; got != 20 {
		t.Errorf("audit retry.max_attempts = %d, want 20", got)
	}
}

// TestParseProblems covers problems that are easiest to read beside their YAML.
func TestParseProblems(t *testing.T) {
	const apps = "tencent: {apps: [{sdkappid: 1400000000}]}\n"
	const dest = "destinations: {a: {url: http://a}}\nroutes: [{name: r, to: [a]}]\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key without a close name", apps + "metrics: {}\n",
			[]string{`f.yaml:2:1: unknown key "metrics"`}},
		{"unknown nested key with a suggestion", apps + dest + "queue: {dedup_windw: 1m}\n",
			[]string{`f.yaml:4:9: queue: unknown key "dedup_windw" (did you mean "dedup_window"?)`}},
		{"repeated key", apps + dest + "server: {path: /a}\nserver: {path: /b}\n",
			[]string{`f.yaml:5:1: server: key repeated`}},
		{"repeated destination", apps + "routes: [{name: r, to: [a]}]\ndestinations:\n  a: {url: http://a}\n  a: {url: http://b}\n",
			[]string{`f.yaml:5:3: destinations.a: destination defined twice`}},
		{"bad destination name", apps + "routes: [{name: r, to: [a b]}]\ndestinations:\n  a b: {url: http://a}\n",
			[]string{`f.yaml:4:3: destinations.a b: invalid destination name: use letters, digits, - and _`}},
		{"server path", apps + dest + "server: {path: callback}\n",
			[]string{`f.yaml:4:16: server.path: must start with /, got "callback"`}},
		{"tls cert without key", apps + dest + "server: {tls: {cert: config.go}}\n",
			[]string{`f.yaml:4:15: server.tls: cert and key must be set together`}},
		{"unreadable tls file", apps + dest + "server: {tls: {cert: nope.pem, key: config.go}}\n",
			[]string{`f.yaml:4:22: server.tls.cert: cannot read nope.pem: stat nope.pem: no such file or directory`}},
		{"replicas without a cluster", apps + dest + "queue: {replicas: 3}\n",
			[]string{`f.yaml:4:19: queue.replicas: replicas above 1 need an external cluster (queue.url)`}},
		{"queue url scheme typo", apps + dest + "queue: {url: 'nat://n1:4222'}\n",
			[]string{`f.yaml:4:14: queue.url: invalid server URL "nat://n1:4222": want nats://host:port (several separated by commas)`}},
		{"queue url list, one bad", apps + dest + "queue: {url: 'nats://n1:4222, n2:4222'}\n",
			[]string{`f.yaml:4:14: queue.url: invalid server URL "n2:4222": want nats://host:port (several separated by commas)`}},
		{"queue url and embedded-only keys", apps + dest + "queue: {url: 'nats://n1:4222,tls://n2:4222', dir: /d, sync: always, replicas: 3}\n",
			[]string{
				`f.yaml:4:51: queue.dir: warning: ignored: queue.url is set, so the queue is external`,
				`f.yaml:4:61: queue.sync: warning: ignored with queue.url: the JetStream servers' own sync setting applies`,
			}},
		{"max_backlog neither count nor size", apps + dest + "defaults: {max_backlog: lots}\n",
			[]string{`f.yaml:4:25: defaults.max_backlog: invalid max_backlog "lots": want a count of deliveries (100000) or a size (2GiB)`}},
		{"max_backlog zero", apps + dest + "defaults: {max_backlog: 0}\n",
			[]string{`f.yaml:4:25: defaults.max_backlog: invalid max_backlog "0": want a count of deliveries (100000) or a size (2GiB)`}},
		{"queue max_bytes with a url", apps + dest + "queue: {url: 'nats://n1:4222', max_bytes: 1GiB}\n",
			[]string{`f.yaml:4:43: queue.max_bytes: warning: ignored with queue.url: bound the streams on the JetStream servers (account limits)`}},
		{"log as large as the store", apps + dest + "queue: {max_bytes: 1GiB}\nlog: {enabled: true}\n",
			[]string{`f.yaml:5:16: log.max_bytes: 1GiB is all of queue.max_bytes (1GiB): the store reserves it for the log, which then cannot open; make it a part, e.g. 256MiB`}},
		{"log taking most of the store", apps + dest + "queue: {max_bytes: 1GiB}\nlog: {enabled: true, max_bytes: 768MiB}\n",
			[]string{`f.yaml:5:33: log.max_bytes: warning: 768MiB is more than half of queue.max_bytes (1GiB): the store reserves it for the log, leaving 256MiB for the deliveries`}},
		{"log within the store", apps + dest + "queue: {max_bytes: 1GiB}\nlog: {enabled: true, max_bytes: 256MiB}\n", nil},
		{"backoff max below initial", apps + dest + "defaults: {retry: {backoff: {initial: 2m, max: 1m}}}\n",
			[]string{`f.yaml:4:29: defaults.retry.backoff.max: max (1m0s) is below initial (2m0s)`}},
		{"destination inherits a max below its initial", apps + "routes: [{name: r, to: [a]}]\ndestinations: {a: {url: http://a, retry: {backoff: {initial: 20m}}}}\n",
			[]string{`f.yaml:3:52: destinations.a.retry.backoff.max: max (10m0s) is below initial (20m0s)`}},
		{"respond timeout just under 2s", apps + dest + "respond: [{from: a, commands: [C2C.CallbackBeforeSendMsg], timeout: 1999ms}]\n",
			nil},
		{"respond timeout of 2s", apps + dest + "respond: [{from: a, commands: [C2C.CallbackBeforeSendMsg], timeout: 2s}]\n",
			[]string{`f.yaml:4:69: respond[0].timeout: 2s is too long: Tencent IM gives up at 2s, leave room for the answer (e.g. 1500ms)`}},
		{"respond timeout above 2s", apps + dest + "respond: [{from: a, commands: [C2C.CallbackBeforeSendMsg], timeout: 1m}]\n",
			[]string{`f.yaml:4:69: respond[0].timeout: 1m0s is too long: Tencent IM gives up at 2s, leave room for the answer (e.g. 1500ms)`}},
		{"respond from undefined, with a suggestion", apps + dest + "respond: [{from: b, commands: [C2C.CallbackBeforeSendMsg]}]\n",
			[]string{`f.yaml:4:18: respond[0].from: respond rule answers from undefined destination "b" (did you mean "a"?)`}},
		{"duplicate SdkAppid points at the repeat", "tencent:\n  apps:\n    - sdkappid: 1400000000\n    - sdkappid: 1400000001\n    - sdkappid: 1400000000\n" + dest,
			[]string{`f.yaml:5:7: tencent.apps[2]: SdkAppid 1400000000 listed twice`}},
		{"empty apps list", "tencent: {apps: []}\n" + dest,
			[]string{`f.yaml:1:17: tencent.apps: at least one app is required: callbacks from any other SdkAppid are refused`}},
		{"no tencent section", dest,
			[]string{`f.yaml:1:1: tencent.apps: at least one app is required: callbacks from any other SdkAppid are refused`}},
		{"app without sdkappid", "tencent: {apps: [{token: t}]}\n" + dest,
			[]string{`f.yaml:1:18: tencent.apps[0].sdkappid: want the app's SdkAppid, a positive integer such as 1400000000, got ""`}},
		{"signing secret too short", apps + "routes: [{name: r, to: [a]}]\ndestinations: {a: {url: http://a, signing_secret: [whsec_c2hvcnQ=]}}\n",
			[]string{"f.yaml:3:52: destinations.a.signing_secret[0]: signing secret too short: 5 bytes of key, want at least 16 (make one with `fanout secret`)"}},
		{"signing secret not base64", apps + "routes: [{name: r, to: [a]}]\ndestinations: {a: {url: http://a, signing_secret: whsec_!!}}\n",
			[]string{`f.yaml:3:51: destinations.a.signing_secret: not a Standard Webhooks secret: the part after whsec_ is not valid base64`}},
		{"invalid header name", apps + "routes: [{name: r, to: [a]}]\ndestinations: {a: {url: http://a, headers: {'X Bad': v}}}\n",
			[]string{`f.yaml:3:45: destinations.a.headers.X Bad: invalid header name`}},
		{"header Fanout sets itself", apps + "routes: [{name: r, to: [a]}]\ndestinations: {a: {url: http://a, headers: {webhook-id: v}}}\n",
			[]string{`f.yaml:3:45: destinations.a.headers.webhook-id: set by Fanout on every request, cannot be configured`}},
		{"header value with a line break", apps + "routes: [{name: r, to: [a]}]\ndestinations: {a: {url: http://a, headers: {X-Key: \"k\\r\\nX-Injected: 1\"}}}\n",
			[]string{`f.yaml:3:52: destinations.a.headers.X-Key: the value holds a control character`}},
		{"respond on an after callback", apps + dest + "respond: [{from: a, commands: [C2C.CallbackAfterSendMsg]}]\n",
			[]string{`f.yaml:4:31: respond[0].commands: warning: no "before" callback among these commands: Tencent IM ignores the answer to the others`}},
		{"repeated section", apps + dest + "destinations: {}\n",
			[]string{`f.yaml:4:1: destinations: key repeated`}},
		{"alias resolved", apps + "x-url: &u http://a\n" + "routes: [{name: r, to: [a]}]\ndestinations: {a: {url: *u}}\n",
			[]string{`f.yaml:2:1: unknown key "x-url"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, probs := Parse("f.yaml", []byte(tt.yaml), mapEnv(nil))
			var got []string
			for _, p := range probs {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if (c == nil) != (probs.Err() != nil) {
				t.Errorf("config nil = %v with errors %v", c == nil, probs.Err())
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		c, probs := Load("testdata/does-not-exist.yaml")
		if c != nil || len(probs) != 1 || !strings.HasPrefix(probs[0].Message, "cannot read config: ") || probs[0].File != "testdata/does-not-exist.yaml" {
			t.Errorf("got %v, %v", c, probs)
		}
	})
	t.Run("process environment", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "fanout.yaml")
		yaml := "tencent: {apps: [{sdkappid: '${FANOUT_TEST_APP}'}]}\ndestinations: {a: {url: http://a}}\nroutes: [{name: r, to: [a]}]\n"
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("FANOUT_TEST_APP", "1400000042")
		c, probs := Load(file)
		if c == nil || len(probs) != 0 {
			t.Fatalf("problems: %v", probs)
		}
		if c.File != file || c.Tencent.Apps[0].SdkAppID != "1400000042" {
			t.Errorf("file %q, app %q", c.File, c.Tencent.Apps[0].SdkAppID)
		}
	})
}

func TestProblemFormat(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want string
	}{
		{"error", Problem{File: "c.yaml", Line: 3, Column: 5, Path: "routes[0].to[1]", Message: "bad"}, "c.yaml:3:5: routes[0].to[1]: bad"},
		{"warning", Problem{File: "c.yaml", Line: 1, Column: 2, Path: "a", Message: "odd", Warning: true}, "c.yaml:1:2: a: warning: odd"},
		{"no path", Problem{File: "c.yaml", Line: 9, Column: 1, Message: `unknown key "x"`}, `c.yaml:9:1: unknown key "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	ps := Problems{tests[0].p, tests[1].p, tests[2].p}
	if got, want := ps.Error(), tests[0].want+"\n"+tests[1].want+"\n"+tests[2].want; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := ps.Err().Error(); got != tests[0].want+"\n"+tests[2].want {
		t.Errorf("Err() lists %q, want the errors only", got)
	}
	if w := ps.Warnings(); len(w) != 1 || w[0] != tests[1].p {
		t.Errorf("Warnings() = %v", w)
	}
	if (Problems{tests[1].p}).Err() != nil {
		t.Errorf("warnings alone are an error")
	}
	if len(ps) != 3 {
		t.Errorf("Errors/Warnings changed the receiver")
	}
	data, err := json.Marshal(tests[1].p)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"file":"c.yaml","line":1,"column":2,"path":"a","message":"odd","warning":true}`; string(data) != want {
		t.Errorf("JSON %s, want %s", data, want)
	}
}
