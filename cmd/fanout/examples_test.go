package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/dryrun"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// examplesDir is the repository's examples/ folder, seen from cmd/fanout.
const examplesDir = "../../examples"

// expectation is one entry of an example's expect.yaml: a payload, the routes it must
// match, the destinations that must get an asynchronous copy, the destination that must
// answer it synchronously ("" for none), and optionally the exact body some destinations
// receive, as JSON values.
type expectation struct {
	Payload      string         `yaml:"payload"`
	Query        string         `yaml:"query"`
	Routes       []string       `yaml:"routes"`
	Destinations []string       `yaml:"destinations"`
	Respond      string         `yaml:"respond"`
	Bodies       map[string]any `yaml:"bodies"`
}

// TestExamples checks every examples/*/ folder: its config passes `fanout check` without a
// problem in an empty environment, and `fanout route` sends each payload of its expect.yaml
// exactly where the file says.
func TestExamples(t *testing.T) {
	dirs := exampleDirs(t)
	if len(dirs) < 5 {
		t.Fatalf("found %d examples in %s, want at least 5", len(dirs), examplesDir)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			cfg := exampleConfig(dir)
			emptyEnvironment(t, cfg)
			checkClean(t, cfg)

			cases := readExpectations(t, dir)
			used := map[string]bool{}
			for i, c := range cases {
				used[filepath.Clean(c.Payload)] = true
				t.Run(fmt.Sprintf("%02d-%s", i, filepath.Base(c.Payload)), func(t *testing.T) {
					checkRoute(t, cfg, dir, c)
				})
			}
			payloads, err := filepath.Glob(filepath.Join(dir, "payloads", "*.json"))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range payloads {
				if rel, _ := filepath.Rel(dir, p); !used[rel] {
					t.Errorf("%s is not listed in expect.yaml", rel)
				}
			}
		})
	}
}

// TestExamplesWrongExpect checks that `fanout route --expect` fails (exit 1) when the
// routes matched are not exactly those expected, as a user's CI relies on.
func TestExamplesWrongExpect(t *testing.T) {
	dir := filepath.Join(examplesDir, "app-and-audit")
	cfg := filepath.Join(dir, "config.yaml")
	emptyEnvironment(t, cfg)
	payload := filepath.Join(dir, "payloads", "C2C.CallbackAfterSendMsg.json")
	for _, expect := range []string{
		"all-to-app",                  // one missing
		"all-to-app,audit-copy,extra", // one the config does not have
		"audit-copy,all-to-app,",      // an empty name
	} {
		t.Run(expect, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"route", "--config", cfg, "--format", "json", "--expect", expect, payload},
				strings.NewReader(""), &stdout, &stderr)
			if code != exitFailed {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitFailed, &stdout, &stderr)
			}
			if missing := expect[strings.LastIndex(expect, ",")+1:]; missing != "all-to-app" {
				// A route the config does not have is refused before any payload is run.
				want := fmt.Sprintf("fanout route: --expect names route %q, which %s does not have (its routes: all-to-app, audit-copy)\n", missing, cfg)
				if stdout.Len() > 0 || stderr.String() != want {
					t.Fatalf("stdout %q\nstderr %q\nwant %q", &stdout, &stderr, want)
				}
				return
			}
			var results []routeResult
			if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, &stdout)
			}
			if len(results) != 1 || !strings.Contains(results[0].Error, "expected routes") {
				t.Fatalf("want one result naming the expected routes, got %s", &stdout)
			}
		})
	}
}

// TestExamplesUseEveryRealPayload checks that every sample body Tencent documents is used
// by some example, copied byte for byte under its own name (variations have other names).
func TestExamplesUseEveryRealPayload(t *testing.T) {
	for _, orig := range fanouttest.PayloadFiles(t) {
		name := filepath.Base(orig)
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(orig)
			if err != nil {
				t.Fatal(err)
			}
			copies, err := filepath.Glob(filepath.Join(examplesDir, "*", "payloads", name))
			if err != nil {
				t.Fatal(err)
			}
			if len(copies) == 0 {
				t.Fatalf("no example uses %s", name)
			}
			for _, c := range copies {
				got, err := os.ReadFile(c)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from %s: name a variation differently", c, orig)
				}
			}
		})
	}
}

// rootConfig is the repository's config.example.yaml, seen from cmd/fanout.
const rootConfig = "../../config.example.yaml"

// exampleConfig is the config of an example folder: its config.yaml, or, for a folder that
// has none (quickstart, the README's quick start), the repository's config.example.yaml.
func exampleConfig(dir string) string {
	cfg := filepath.Join(dir, "config.yaml")
	if _, err := os.Stat(cfg); err != nil {
		return rootConfig
	}
	return cfg
}

func exampleDirs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	// A routing example is a folder with an expect.yaml; the others (docker, prometheus,
	// cluster) show deployment files.
	var dirs []string
	for _, e := range entries {
		dir := filepath.Join(examplesDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "expect.yaml")); e.IsDir() && err == nil {
			dirs = append(dirs, dir)
		}
	}
	if len(dirs) < 5 {
		t.Fatalf("%d routing examples (folders with an expect.yaml) in %s, want at least 5", len(dirs), examplesDir)
	}
	return dirs
}

var envReference = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// emptyEnvironment unsets, for the test, every variable the config refers to, so that it is
// checked as on a machine where none is set: each needs its ${VAR:-default}.
func emptyEnvironment(t *testing.T, cfg string) {
	t.Helper()
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range envReference.FindAllStringSubmatch(string(data), -1) {
		t.Setenv(m[1], "") // restores the old value after the test
		if err := os.Unsetenv(m[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// checkClean runs `fanout check` and wants exit 0 and no problem, not even a warning.
func checkClean(t *testing.T, cfg string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", cfg}, strings.NewReader(""), &stdout, &stderr)
	out := strings.TrimRight(stdout.String(), "\n")
	want := cfg + ": ok (0 errors, 0 warnings)"
	if code != exitOK || out != want || stderr.Len() > 0 {
		t.Fatalf("fanout check %s: exit %d, want 0 and only %q\nstdout:\n%s\nstderr:\n%s", cfg, code, want, out, &stderr)
	}
}

func readExpectations(t *testing.T, dir string) []expectation {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "expect.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var cases []expectation
	if err := dec.Decode(&cases); err != nil {
		t.Fatalf("%s/expect.yaml: %v", dir, err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s/expect.yaml lists no payload", dir)
	}
	for i, c := range cases {
		if c.Payload == "" || c.Routes == nil || c.Destinations == nil {
			t.Fatalf("%s/expect.yaml entry %d: payload, routes and destinations are required (routes: [] for none)", dir, i)
		}
	}
	return cases
}

// checkRoute runs `fanout route --format json --expect ...` on one payload and compares
// the result with the expectation.
func checkRoute(t *testing.T, cfg, dir string, c expectation) {
	args := []string{"route", "--config", cfg, "--format", "json"}
	if c.Query != "" {
		args = append(args, "--query", c.Query)
	}
	if len(c.Routes) > 0 {
		// An empty --expect means "no expectation", so "no route" is checked below only.
		args = append(args, "--expect", strings.Join(c.Routes, ","))
	}
	args = append(args, filepath.Join(dir, c.Payload))
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(""), &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("fanout %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, &stdout, &stderr)
	}
	var results []routeResult
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, &stdout)
	}
	if len(results) != 1 {
		t.Fatalf("got %d results for one payload", len(results))
	}
	r := results[0]
	if r.Error != "" || len(r.RuleErrors) > 0 {
		t.Errorf("error %q, rule errors %q", r.Error, r.RuleErrors)
	}
	if got := sorted(r.Routes); !slices.Equal(got, sorted(c.Routes)) {
		t.Errorf("routes %v, want %v", got, sorted(c.Routes))
	}

	var dests []string
	byName := map[string]dryrun.Delivery{}
	for _, d := range r.Deliveries {
		dests = append(dests, d.Destination)
		byName[d.Destination] = d
		if d.BodyError != "" {
			t.Errorf("%s: body error %s", d.Destination, d.BodyError)
		}
	}
	if got := sorted(dests); !slices.Equal(got, sorted(c.Destinations)) {
		t.Errorf("destinations %v, want %v", got, sorted(c.Destinations))
	}

	switch {
	case c.Respond == "" && r.Respond != nil:
		t.Errorf("answered by %s, want no respond rule to match", r.Respond.From)
	case c.Respond != "" && r.Respond == nil:
		t.Errorf("no respond rule matches, want one answered by %s", c.Respond)
	case c.Respond != "" && r.Respond.From != c.Respond:
		t.Errorf("answered by %s, want %s", r.Respond.From, c.Respond)
	}

	for dest, want := range c.Bodies {
		d, ok := byName[dest]
		if !ok {
			t.Errorf("bodies: %s gets no delivery", dest)
			continue
		}
		if !d.Transformed {
			t.Errorf("%s: body not transformed", dest)
		}
		var got any
		if err := json.Unmarshal(d.Body, &got); err != nil {
			t.Errorf("%s: body is not JSON: %v\n%s", dest, err, d.Body)
			continue
		}
		if w := jsonValue(t, want); !reflect.DeepEqual(got, w) {
			wb, _ := json.Marshal(w)
			t.Errorf("%s: body\n got %s\nwant %s", dest, d.Body, wb)
		}
	}
}

// jsonValue turns a value decoded from YAML into what encoding/json decodes from the same
// JSON (float64 numbers, map[string]any objects).
func jsonValue(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("expected body is not JSON: %v", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
