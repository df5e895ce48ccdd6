package fanouttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Fanout is a run of the real binary, `fanout serve --config FILE`, with the addresses it
// listens on.
type Fanout struct {
	*Process
	Listen string // the callback receiver's address, from the "fanout started" log line
	Admin  string // the admin port's address, from the same line
}

// StartFanout runs `fanout serve --config config` (JSON logs) and returns once it has
// logged that it started and its /readyz answers 200. The config may listen on port 0: the
// addresses are read from the log. At the end of the test a process still running is
// stopped with SIGTERM and must exit with status 0 (see Process.Stop).
func StartFanout(t testing.TB, bin, config string) *Fanout {
	t.Helper()
	f := &Fanout{Process: StartProcess(t, "fanout", bin, "serve", "--config", config, "--log-format", "json", "--log-level", "info")}
	t.Cleanup(func() { f.Stop(t) }) // runs before StartProcess's kill
	WaitFor(t, WaitTimeout, "fanout to log that it started", func() bool {
		if !f.Running() {
			t.Fatalf("fanout exited before it started: %v\n%s", f.Err(), f.Output)
		}
		started := f.logLines("fanout started")
		if len(started) == 0 {
			return false
		}
		f.Listen, _ = started[0]["listen"].(string)
		f.Admin, _ = started[0]["admin"].(string)
		return true
	})
	WaitFor(t, WaitTimeout, "fanout's /readyz to answer 200", func() bool {
		if !f.Running() {
			t.Fatalf("fanout exited before it was ready: %v\n%s", f.Err(), f.Output)
		}
		return f.Readyz() == http.StatusOK
	})
	return f
}

// Readyz is the status of the admin port's /readyz (0 when it does not answer).
func (f *Fanout) Readyz() int {
	status, _ := Do(http.MethodGet, "http://"+f.Admin+"/readyz", "", nil)
	return status
}

// Callback POSTs a callback to the process's /callback with query.
func (f *Fanout) Callback(query string, body []byte) CallbackAnswer {
	return PostCallback(f.Listen, query, body)
}

// Metrics scrapes the admin port's /metrics (token: the admin token, if the config sets one).
func (f *Fanout) Metrics(t testing.TB, token string) Metrics {
	t.Helper()
	return ScrapeMetrics(t, "http://"+f.Admin+"/metrics", token)
}

// Logged returns the values of key in the JSON log lines whose msg is msg, one a line.
func (f *Fanout) Logged(msg, key string) string {
	var out strings.Builder
	for _, l := range f.logLines(msg) {
		fmt.Fprintf(&out, "%v\n", l[key])
	}
	return out.String()
}

// logLines are the JSON log lines so far whose msg is msg, decoded.
func (f *Fanout) logLines(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(f.Output.String()) {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}
