package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Black-box tests of the reload on the real binary: `fanout serve` reloads its config on
// SIGHUP and on POST /-/reload, keeps the old config live when the new one is invalid, and
// says so in its metrics. The helpers of this file are prefixed rl.

// rlReloadState is what the metrics say of the last reload.
type rlReloadState struct {
	OK   float64 // fanout_config_last_reload_successful
	At   float64 // fanout_config_last_reload_success_timestamp_seconds
	Hash float64 // fanout_config_hash
}

// rlState reads the reload state from p's /metrics.
func rlState(t testing.TB, p *fanouttest.Fanout) rlReloadState {
	t.Helper()
	m := p.Metrics(t, "")
	return rlReloadState{m.Sum("fanout_config_last_reload_successful", nil),
		m.Sum("fanout_config_last_reload_success_timestamp_seconds", nil), m.Sum("fanout_config_hash", nil)}
}

// rlReload posts to /-/reload and returns the status and the decoded answer.
func rlReload(t testing.TB, p *fanouttest.Fanout) (int, map[string]string) {
	t.Helper()
	status, body := fanouttest.Do(http.MethodPost, "http://"+p.Admin+"/-/reload", "", nil)
	var answer map[string]string
	if err := json.Unmarshal(body, &answer); err != nil {
		t.Fatalf("POST /-/reload: %d: answer %q is not a JSON object of strings: %v", status, body, err)
	}
	return status, answer
}

// rlExpectAt sends a callback with MsgKey key and waits until dest receives it with the
// Fanout-Route route.
func rlExpectAt(t testing.TB, p *fanouttest.Fanout, key string, dest *fanouttest.Receiver, route string) {
	t.Helper()
	if a := p.Callback(c2cQuery, fanouttest.C2CMessage(key)); !a.OK() {
		t.Fatalf("callback %s answered %d %s, want 200 %s", key, a.Status, a.Body, fanouttest.OKAnswer)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the delivery of "+key, func() bool { return len(dest.ByKey(key)) > 0 })
	if got := dest.ByKey(key)[0].Header.Get("Fanout-Route"); got != route {
		t.Fatalf("%s arrived with Fanout-Route %q, want %q", key, got, route)
	}
}

// rlSetup is a running binary on config A (route a-all to x) with the texts of B (route
// b-all to y), of an invalid file and of B with server.listen changed.
type rlSetup struct {
	p                 *fanouttest.Fanout
	path              string
	x, y              *fanouttest.Receiver
	a, b, bad, listen string
}

func rlStartSetup(t *testing.T, bin string) *rlSetup {
	t.Helper()
	s := &rlSetup{x: fanouttest.NewReceiver(t, nil), y: fanouttest.NewReceiver(t, nil)}
	listen, admin, qdir := fanouttest.FreeAddr(t), fanouttest.FreeAddr(t), filepath.Join(t.TempDir(), "queue")
	head := func(listen string) string {
		return fmt.Sprintf(`server: {listen: %q, path: /callback}
admin: {listen: %q}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
destinations:
  x: {url: %q}
  y: {url: %q}
`, listen, admin, fanouttest.App, qdir, s.x.URL(), s.y.URL())
	}
	s.a = head(listen) + "routes:\n  - name: a-all\n    to: [x]\n"
	s.b = head(listen) + "routes:\n  - name: b-all\n    to: [y]\n"
	// Two problems, each reported with its position: a misspelled key and an undefined
	// destination.
	s.bad = head(listen) + "routes:\n  - name: b-all\n    too: [y]\n  - name: z-all\n    to: [z]\n"
	s.listen = head(fanouttest.FreeAddr(t)) + "routes:\n  - name: b-all\n    to: [y]\n"
	s.path = fanouttest.WriteConfig(t, s.a)
	s.p = fanouttest.StartFanout(t, bin, s.path)
	rlExpectAt(t, s.p, "start", s.x, "a-all")
	return s
}

// badProblems are the problems of rlSetup.bad, as `file:line:col: path: message`.
func (s *rlSetup) badProblems() []*regexp.Regexp {
	file := regexp.QuoteMeta(s.path)
	return []*regexp.Regexp{
		regexp.MustCompile(file + `:\d+:\d+: routes\[0\]: unknown key "too"`),
		regexp.MustCompile(file + `:\d+:\d+: routes\[1\]\.to\[0\]: route "z-all" sends to undefined destination "z"`),
	}
}

// TestReloadBinary reloads `fanout serve` by POST /-/reload and by SIGHUP: an invalid file
// is refused with every problem and its position, the old config stays live and
// fanout_config_last_reload_successful is 0 until a valid file loads; then it is 1, with a
// new success timestamp and the new file's hash, and callbacks follow the new routes.
// (The binary also watches the file; the tests are written so that the watcher reloading
// the same file as well changes none of what they check.) Each run ends with SIGTERM, on
// which the process must exit with status 0.
func TestReloadBinary(t *testing.T) {
	bin := fanouttest.FanoutBinary(t)

	t.Run("POST /-/reload", func(t *testing.T) {
		t.Parallel()
		s := rlStartSetup(t, bin)
		p := s.p
		before := rlState(t, p)
		if before.OK != 1 || before.Hash != fanouttest.ConfigHash(s.a) || before.At == 0 {
			t.Fatalf("at start: %+v, want successful with the hash of the file", before)
		}

		fanouttest.ReplaceFile(t, s.path, s.bad)
		status, answer := rlReload(t, p)
		if status != http.StatusBadRequest || answer["status"] != "error" {
			t.Errorf("reload of an invalid file: %d %v, want 400 with status error", status, answer)
		}
		for _, re := range s.badProblems() {
			if !re.MatchString(answer["error"]) {
				t.Errorf("the answer does not report %s:\n%s", re, answer["error"])
			}
		}
		if got := rlState(t, p); got != (rlReloadState{0, before.At, before.Hash}) {
			t.Errorf("after an invalid file: %+v, want not successful and the old hash and timestamp %+v", got, before)
		}
		rlExpectAt(t, p, "after-invalid", s.x, "a-all")

		fanouttest.ReplaceFile(t, s.path, s.listen)
		status, answer = rlReload(t, p)
		if status != http.StatusBadRequest || !strings.Contains(answer["error"], "server.listen") ||
			!strings.Contains(answer["error"], "restart") {
			t.Errorf("reload changing server.listen: %d %v, want 400 saying that server.listen needs a restart", status, answer)
		}
		if got := rlState(t, p); got != (rlReloadState{0, before.At, before.Hash}) {
			t.Errorf("after a refused change: %+v, want not successful and the old hash and timestamp", got)
		}
		rlExpectAt(t, p, "after-refused", s.x, "a-all")

		fanouttest.ReplaceFile(t, s.path, s.b)
		status, answer = rlReload(t, p)
		if status != http.StatusOK || answer["status"] != "ok" {
			t.Errorf("reload of a valid file: %d %v, want 200 with status ok", status, answer)
		}
		after := rlState(t, p)
		if after.OK != 1 || after.Hash != fanouttest.ConfigHash(s.b) || !(after.At > before.At) {
			t.Errorf("after a valid file: %+v, want successful, the new file's hash %g and a timestamp after %g",
				after, fanouttest.ConfigHash(s.b), before.At)
		}
		rlExpectAt(t, p, "after-valid", s.y, "b-all")
	})

	t.Run("SIGHUP", func(t *testing.T) {
		t.Parallel()
		s := rlStartSetup(t, bin)
		p := s.p
		start := rlState(t, p)

		// The file is unchanged, so the watcher does nothing: a new success timestamp can
		// only come from the signal.
		p.Signal(t, syscall.SIGHUP)
		var before rlReloadState
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "a reload on SIGHUP", func() bool {
			before = rlState(t, p)
			return before.At > start.At
		})
		if before.OK != 1 || before.Hash != fanouttest.ConfigHash(s.a) {
			t.Errorf("after SIGHUP on the same file: %+v, want successful with its hash", before)
		}

		fanouttest.ReplaceFile(t, s.path, s.bad)
		p.Signal(t, syscall.SIGHUP)
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "fanout_config_last_reload_successful 0", func() bool { return rlState(t, p).OK == 0 })
		if got := rlState(t, p); got != (rlReloadState{0, before.At, before.Hash}) {
			t.Errorf("after an invalid file: %+v, want not successful and the old hash and timestamp %+v", got, before)
		}
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the problems in the log", func() bool {
			failures := p.Logged("config reload failed, the previous config stays live", "err")
			for _, re := range s.badProblems() {
				if !re.MatchString(failures) {
					return false
				}
			}
			return true
		})
		rlExpectAt(t, p, "after-invalid", s.x, "a-all")

		fanouttest.ReplaceFile(t, s.path, s.b)
		p.Signal(t, syscall.SIGHUP)
		var after rlReloadState
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the new config", func() bool {
			after = rlState(t, p)
			return after.OK == 1
		})
		if after.Hash != fanouttest.ConfigHash(s.b) || !(after.At > before.At) {
			t.Errorf("after a valid file: %+v, want the new file's hash %g and a timestamp after %g",
				after, fanouttest.ConfigHash(s.b), before.At)
		}
		rlExpectAt(t, p, "after-valid", s.y, "b-all")
		if p.Logged("SIGHUP: reloading the config", "msg") == "" {
			t.Error("the log does not say that SIGHUP reloaded the config")
		}
	})
}
