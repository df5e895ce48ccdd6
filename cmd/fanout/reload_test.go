package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Black-box tests of SPEC section 6 on the real binary: `fanout serve` reloads its config on
// SIGHUP and on POST /-/reload, keeps the old config live when the new one is invalid, and
// says so in its metrics. The helpers of this file are prefixed rl.

const (
	rlApp     = "1400000000"
	rlOK      = `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`
	rlTimeout = 30 * time.Second
)

var rlClient = &http.Client{Timeout: rlTimeout}

// rlWaitFor polls cond until it holds, and fails the test when timeout passes first.
func rlWaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rlBuild builds the fanout binary into a temporary folder, from the module root.
func rlBuild(t testing.TB) string {
	t.Helper()
	tool := filepath.Join(goruntime.GOROOT(), "bin", "go")
	if _, err := os.Stat(tool); err != nil {
		if tool, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go tool: %v", err)
		}
	}
	bin := filepath.Join(t.TempDir(), "fanout")
	cmd := exec.Command(tool, "build", "-o", bin, "./cmd/fanout")
	cmd.Dir = "../.." // the module root, seen from cmd/fanout
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/fanout: %v\n%s", err, out)
	}
	return bin
}

// rlFreeAddr is a loopback address nothing listens on (listened on, then closed).
func rlFreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// rlLog is the process's stderr, safe for concurrent use.
type rlLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *rlLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *rlLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// rlProcess is one run of `fanout serve`.
type rlProcess struct {
	cmd     *exec.Cmd
	listen  string
	admin   string
	log     *rlLog
	exited  chan struct{}
	exitErr error
}

// rlServe runs the binary on config until the end of the test and waits until it is ready.
func rlServe(t testing.TB, bin, config, listen, admin string) *rlProcess {
	t.Helper()
	p := &rlProcess{listen: listen, admin: admin, log: &rlLog{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--config", config, "--log-format", "json")
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		// SIGTERM, as an orchestrator stops it; SIGKILL if it does not stop in time.
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			if p.exitErr != nil {
				t.Errorf("fanout pid %d stopped on SIGTERM with %v, want exit status 0", p.cmd.Process.Pid, p.exitErr)
			}
		case <-time.After(rlTimeout):
			t.Errorf("fanout pid %d did not stop within %s of SIGTERM; killing it", p.cmd.Process.Pid, rlTimeout)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("log of fanout pid %d:\n%s", p.cmd.Process.Pid, p.log)
		}
	})
	rlWaitFor(t, rlTimeout, "fanout to be ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("fanout exited: %v\n%s", p.exitErr, p.log)
		default:
		}
		resp, err := rlClient.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// metrics scrapes the admin /metrics: each series as written (`name` or `name{...}`) with
// its value.
func (p *rlProcess) metrics(t testing.TB) map[string]float64 {
	t.Helper()
	resp, err := rlClient.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// logged returns the values of key in the JSON log lines whose msg is msg, one a line.
func (p *rlProcess) logged(msg, key string) string {
	var out strings.Builder
	for line := range strings.Lines(p.log.String()) {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil || l["msg"] != msg {
			continue
		}
		fmt.Fprintf(&out, "%v\n", l[key])
	}
	return out.String()
}

// rlReloadState is what the metrics say of the last reload.
type rlReloadState struct {
	OK   float64 // fanout_config_last_reload_successful
	At   float64 // fanout_config_last_reload_success_timestamp_seconds
	Hash float64 // fanout_config_hash
}

func (p *rlProcess) reloadState(t testing.TB) rlReloadState {
	t.Helper()
	m := p.metrics(t)
	return rlReloadState{m["fanout_config_last_reload_successful"],
		m["fanout_config_last_reload_success_timestamp_seconds"], m["fanout_config_hash"]}
}

// reload posts to /-/reload and returns the status and the decoded answer.
func (p *rlProcess) reload(t testing.TB) (int, map[string]string) {
	t.Helper()
	resp, err := rlClient.Post("http://"+p.admin+"/-/reload", "application/json", nil)
	if err != nil {
		t.Fatalf("POST /-/reload: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var answer map[string]string
	if err := json.Unmarshal(b, &answer); err != nil {
		t.Fatalf("POST /-/reload: %s: answer %q is not a JSON object of strings: %v", resp.Status, b, err)
	}
	return resp.StatusCode, answer
}

// rlHashValue is the fanout_config_hash of a file holding text: the first 48 bits of its
// SHA-256 (SPEC section 8).
func rlHashValue(text string) float64 {
	sum := sha256.Sum256([]byte(text))
	return float64(binary.BigEndian.Uint64(sum[:8]) >> 16)
}

// rlReceiver is a downstream webhook recording the Fanout-Route of each MsgKey it receives.
type rlReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	routes map[string]string
}

func rlNewReceiver(t testing.TB) *rlReceiver {
	rc := &rlReceiver{routes: map[string]string{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ MsgKey string }
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &m)
		rc.mu.Lock()
		rc.routes[m.MsgKey] = r.Header.Get("Fanout-Route")
		rc.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *rlReceiver) route(key string) (string, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r, ok := rc.routes[key]
	return r, ok
}

// expectAt sends a callback with MsgKey key and waits until dest receives it with the
// Fanout-Route route.
func (p *rlProcess) expectAt(t testing.TB, key string, dest *rlReceiver, route string) {
	t.Helper()
	url := "http://" + p.listen + "/callback?SdkAppid=" + rlApp + "&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json"
	body := fmt.Sprintf(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh","MsgKey":%q,`+
		`"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`, key)
	resp, err := rlClient.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("callback %s: %v", key, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != rlOK {
		t.Fatalf("callback %s answered %s %s, want 200 %s", key, resp.Status, b, rlOK)
	}
	rlWaitFor(t, rlTimeout, "the delivery of "+key, func() bool { _, ok := dest.route(key); return ok })
	if got, _ := dest.route(key); got != route {
		t.Fatalf("%s arrived with Fanout-Route %q, want %q", key, got, route)
	}
}

// rlWrite replaces the file at path with text by renaming a new file over it.
func rlWrite(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// rlSetup is a running binary on config A (route a-all to x) with the texts of B (route
// b-all to y), of an invalid file and of B with server.listen changed.
type rlSetup struct {
	p                 *rlProcess
	path              string
	x, y              *rlReceiver
	a, b, bad, listen string
}

func rlStartSetup(t *testing.T, bin string) *rlSetup {
	t.Helper()
	s := &rlSetup{x: rlNewReceiver(t), y: rlNewReceiver(t)}
	listen, admin, qdir := rlFreeAddr(t), rlFreeAddr(t), filepath.Join(t.TempDir(), "queue")
	head := func(listen string) string {
		return fmt.Sprintf(`server: {listen: %q, path: /callback}
admin: {listen: %q}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
destinations:
  x: {url: %q}
  y: {url: %q}
`, listen, admin, rlApp, qdir, s.x.srv.URL, s.y.srv.URL)
	}
	s.a = head(listen) + "routes:\n  - name: a-all\n    to: [x]\n"
	s.b = head(listen) + "routes:\n  - name: b-all\n    to: [y]\n"
	// Two problems, each reported with its position: a misspelled key and an undefined
	// destination.
	s.bad = head(listen) + "routes:\n  - name: b-all\n    too: [y]\n  - name: z-all\n    to: [z]\n"
	s.listen = head(rlFreeAddr(t)) + "routes:\n  - name: b-all\n    to: [y]\n"
	s.path = filepath.Join(t.TempDir(), "fanout.yaml")
	rlWrite(t, s.path, s.a)
	s.p = rlServe(t, bin, s.path, listen, admin)
	s.p.expectAt(t, "start", s.x, "a-all")
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
// the same file as well changes none of what they check.)
func TestReloadBinary(t *testing.T) {
	bin := rlBuild(t)

	t.Run("POST /-/reload", func(t *testing.T) {
		t.Parallel()
		s := rlStartSetup(t, bin)
		p := s.p
		before := p.reloadState(t)
		if before.OK != 1 || before.Hash != rlHashValue(s.a) || before.At == 0 {
			t.Fatalf("at start: %+v, want successful with the hash of the file", before)
		}

		rlWrite(t, s.path, s.bad)
		status, answer := p.reload(t)
		if status != http.StatusBadRequest || answer["status"] != "error" {
			t.Errorf("reload of an invalid file: %d %v, want 400 with status error", status, answer)
		}
		for _, re := range s.badProblems() {
			if !re.MatchString(answer["error"]) {
				t.Errorf("the answer does not report %s:\n%s", re, answer["error"])
			}
		}
		if got := p.reloadState(t); got != (rlReloadState{0, before.At, before.Hash}) {
			t.Errorf("after an invalid file: %+v, want not successful and the old hash and timestamp %+v", got, before)
		}
		p.expectAt(t, "after-invalid", s.x, "a-all")

		rlWrite(t, s.path, s.listen)
		status, answer = p.reload(t)
		if status != http.StatusBadRequest || !strings.Contains(answer["error"], "server.listen") ||
			!strings.Contains(answer["error"], "restart") {
			t.Errorf("reload changing server.listen: %d %v, want 400 saying that server.listen needs a restart", status, answer)
		}
		if got := p.reloadState(t); got != (rlReloadState{0, before.At, before.Hash}) {
			t.Errorf("after a refused change: %+v, want not successful and the old hash and timestamp", got)
		}
		p.expectAt(t, "after-refused", s.x, "a-all")

		rlWrite(t, s.path, s.b)
		status, answer = p.reload(t)
		if status != http.StatusOK || answer["status"] != "ok" {
			t.Errorf("reload of a valid file: %d %v, want 200 with status ok", status, answer)
		}
		after := p.reloadState(t)
		if after.OK != 1 || after.Hash != rlHashValue(s.b) || !(after.At > before.At) {
			t.Errorf("after a valid file: %+v, want successful, the new file's hash %g and a timestamp after %g",
				after, rlHashValue(s.b), before.At)
		}
		p.expectAt(t, "after-valid", s.y, "b-all")
	})

	t.Run("SIGHUP", func(t *testing.T) {
		t.Parallel()
		s := rlStartSetup(t, bin)
		p := s.p
		hup := func() {
			t.Helper()
			if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatalf("SIGHUP: %v", err)
			}
		}
		start := p.reloadState(t)

		// The file is unchanged, so the watcher does nothing: a new success timestamp can
		// only come from the signal.
		hup()
		var before rlReloadState
		rlWaitFor(t, rlTimeout, "a reload on SIGHUP", func() bool {
			before = p.reloadState(t)
			return before.At > start.At
		})
		if before.OK != 1 || before.Hash != rlHashValue(s.a) {
			t.Errorf("after SIGHUP on the same file: %+v, want successful with its hash", before)
		}

		rlWrite(t, s.path, s.bad)
		hup()
		rlWaitFor(t, rlTimeout, "fanout_config_last_reload_successful 0", func() bool { return p.reloadState(t).OK == 0 })
		if got := p.reloadState(t); got != (rlReloadState{0, before.At, before.Hash}) {
			t.Errorf("after an invalid file: %+v, want not successful and the old hash and timestamp %+v", got, before)
		}
		rlWaitFor(t, rlTimeout, "the problems in the log", func() bool {
			failures := p.logged("config reload failed, the previous config stays live", "err")
			for _, re := range s.badProblems() {
				if !re.MatchString(failures) {
					return false
				}
			}
			return true
		})
		p.expectAt(t, "after-invalid", s.x, "a-all")

		rlWrite(t, s.path, s.b)
		hup()
		var after rlReloadState
		rlWaitFor(t, rlTimeout, "the new config", func() bool {
			after = p.reloadState(t)
			return after.OK == 1
		})
		if after.Hash != rlHashValue(s.b) || !(after.At > before.At) {
			t.Errorf("after a valid file: %+v, want the new file's hash %g and a timestamp after %g",
				after, rlHashValue(s.b), before.At)
		}
		p.expectAt(t, "after-valid", s.y, "b-all")
		if p.logged("SIGHUP: reloading the config", "msg") == "" {
			t.Error("the log does not say that SIGHUP reloaded the config")
		}
	})
}
