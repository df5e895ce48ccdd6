package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// goTool is the go command of the toolchain running the tests.
func goTool(t testing.TB) string {
	t.Helper()
	tool := filepath.Join(goruntime.GOROOT(), "bin", "go")
	if _, err := os.Stat(tool); err != nil {
		if tool, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go tool: %v", err)
		}
	}
	return tool
}

// buildFanout builds the fanout binary from the module root into dir.
func buildFanout(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "fanout")
	cmd := exec.Command(goTool(t), "build", "-o", bin, "./cmd/fanout")
	cmd.Dir = ".." // the module root, seen from gateway/
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/fanout: %v\n%s", err, out)
	}
	return bin
}

// fanoutProcess is one run of the real binary: `fanout serve --config FILE`.
type fanoutProcess struct {
	cmd    *exec.Cmd
	addr   string // callback address, read from the "fanout started" log line
	logs   *syncBuffer
	exited chan struct{} // closed when the process has been reaped
	err    error         // its exit status, once exited is closed
}

// startFanout runs the binary and waits until it logs that it listens. The process is
// killed (by its pid) at the end of the test if it still runs.
func startFanout(t testing.TB, bin, config string) *fanoutProcess {
	t.Helper()
	p := &fanoutProcess{logs: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--config", config, "--log-format", "json", "--log-level", "info")
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.logs.Write(append(line, '\n'))
			var l struct{ Msg, Listen string }
			if json.Unmarshal(line, &l) == nil && l.Msg == "fanout started" {
				started <- l.Listen
			}
		}
		io.Copy(io.Discard, stderr)
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			t.Logf("log of fanout pid %d:\n%s", p.cmd.Process.Pid, p.logs)
		}
	})
	select {
	case p.addr = <-started:
	case <-p.exited:
		t.Fatalf("fanout exited before listening: %v\n%s", p.err, p.logs)
	case <-time.After(waitTimeout):
		t.Fatalf("fanout did not log that it listens within %s\n%s", waitTimeout, p.logs)
	}
	return p
}

// kill sends SIGKILL to the process (if it still runs) and reaps it.
func (p *fanoutProcess) kill(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill fanout pid %d: %v", p.cmd.Process.Pid, err)
	}
	<-p.exited
}

// TestCrashLosesNoAcknowledgedCallback runs the real binary under a continuous load of
// callbacks with unique MsgKeys, kills it with SIGKILL in the middle, starts it again on the
// same config and data directory, and finishes the load: every callback that was answered
// OK is delivered. A callback whose answer the crash interrupted is sent again, as Tencent
// IM would; such a callback, or a delivery the crash cut short, may arrive twice.
func TestCrashLosesNoAcknowledgedCallback(t *testing.T) {
	const (
		total   = 3000
		senders = 4
	)
	dir := t.TempDir()
	bin := buildFanout(t, dir)

	// Until the restart the receiver takes 25 ms per request, slower than the callbacks come
	// in, so that the kill leaves stored deliveries that were not made yet, as well as
	// some in progress.
	var slow atomic.Bool
	slow.Store(true)
	sink := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) int {
		if slow.Load() {
			time.Sleep(25 * time.Millisecond) // the receiver's processing time
		}
		return http.StatusOK
	})
	config := filepath.Join(dir, "fanout.yaml")
	err := os.WriteFile(config, fmt.Appendf(nil, `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue:
  dir: %q
  sync: always
destinations:
  # A delivery that the kill cut short is redelivered after the ack wait, which covers a
  # whole round of quick retries: 88 s with the defaults, 32 s here (timeout 2 s, no
  # quick retry, 30 s margin).
  sink:
    url: %q
    concurrency: 8
    timeout: 2s
    retry: {backoff: {initial: 6s}}
routes:
  - name: all
    to: [sink]
`, testApp, filepath.Join(dir, "data"), sink.URL()), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	first := startFanout(t, bin, config)
	var addr atomic.Pointer[string]
	addr.Store(&first.addr)

	// The load: senders take the next MsgKey and POST it until it is answered OK, moving to
	// the new address when the process is restarted. Bounded in count and time.
	type outcome struct {
		key       string
		firstSent time.Time
		acked     time.Time
		tries     int
	}
	var (
		next     atomic.Int64
		ackedN   atomic.Int64
		retried  atomic.Int64
		mu       sync.Mutex
		outcomes []outcome
		failures []string
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for range senders {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				key := fmt.Sprintf("crash-%05d", i)
				body := c2cMessage(key)
				o := outcome{key: key, firstSent: time.Now()}
				for {
					o.tries++
					if o.tries > 1000 || time.Now().After(deadline) {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: no OK after %d tries", key, o.tries-1))
						mu.Unlock()
						break
					}
					if postOK(client, *addr.Load(), body) {
						o.acked = time.Now()
						ackedN.Add(1)
						break
					}
					retried.Add(1)
					time.Sleep(20 * time.Millisecond) // pacing between tries, not a wait for a condition
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		})
	}
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()

	loadStart := time.Now()
	waitFor(t, 2*time.Minute, "a third of the load to be acknowledged", func() bool { return ackedN.Load() >= total/3 })
	first.kill(t) // SIGKILL, mid-load
	killedAt := time.Now()
	ackedAtKill := ackedN.Load()
	deliveredAtKill := len(sink.delivered())

	ackRate := float64(ackedAtKill) / killedAt.Sub(loadStart).Seconds()

	second := startFanout(t, bin, config)
	addr.Store(&second.addr)
	restartedAt := time.Now()
	slow.Store(false)
	select {
	case <-loadDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("the load did not finish")
	}
	if len(failures) > 0 {
		t.Fatalf("%d callbacks never answered OK, e.g. %s", len(failures), failures[0])
	}

	acked := map[string]bool{}
	for _, o := range outcomes {
		acked[o.key] = true
	}
	waitForNone(t, 2*time.Minute, fmt.Sprintf("the %d acknowledged callbacks at the receiver", len(acked)), func() []string {
		got := sink.delivered()
		var missing []string
		for key := range acked {
			if got[key] == 0 {
				missing = append(missing, key)
			}
		}
		slices.Sort(missing)
		if len(missing) > 20 {
			missing = append(missing[:20], fmt.Sprintf("and %d more", len(missing)-20))
		}
		return missing
	})
	late := 0 // deliveries that waited for the ack wait (or came that late for any reason)
	for _, h := range sink.all() {
		if h.At.After(restartedAt.Add(20 * time.Second)) {
			late++
		}
	}
	t.Logf("all acknowledged callbacks delivered %s after the restart (%d deliveries more than 20 s after it)",
		time.Since(restartedAt).Round(time.Millisecond), late)

	got := sink.delivered()
	duplicates, extra := 0, 0
	for key, c := range got {
		if !acked[key] {
			extra++
		}
		duplicates += c - 1
	}
	// A callback first sent after the restart was not interrupted by the crash: once.
	for _, o := range outcomes {
		if o.firstSent.After(restartedAt) && got[o.key] != 1 {
			t.Errorf("%s, sent after the restart, was delivered %d times, want once", o.key, got[o.key])
		}
	}
	if extra != 0 {
		t.Errorf("%d callbacks delivered that were never sent", extra)
	}
	if len(acked) != total {
		t.Errorf("%d callbacks acknowledged, want %d", len(acked), total)
	}
	t.Logf("crash: %d callbacks from %d senders (%.0f/s acknowledged), killed after %d were acknowledged and %d delivered, "+
		"restarted after %s; %d tries repeated around the crash; %d deliveries for %d callbacks: %d duplicates",
		total, senders, ackRate, ackedAtKill, deliveredAtKill, restartedAt.Sub(killedAt).Round(time.Millisecond),
		retried.Load(), len(sink.all()), len(got), duplicates)
	if ackedAtKill-int64(deliveredAtKill) < 50 {
		t.Errorf("only %d stored deliveries were waiting at the kill: the crash did not test what it should", ackedAtKill-int64(deliveredAtKill))
	}

	// The second process stops cleanly on SIGTERM.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-second.exited:
		if second.err != nil {
			t.Errorf("fanout exited with %v after SIGTERM, want 0", second.err)
		}
	case <-time.After(waitTimeout):
		t.Errorf("fanout still runs %s after SIGTERM", waitTimeout)
	}
}

// postOK POSTs a callback and reports whether it was answered 200 with the OK JSON.
func postOK(client *http.Client, addr string, body []byte) bool {
	resp, err := client.Post("http://"+addr+"/callback?"+tencentQuery(testApp, "C2C.CallbackAfterSendMsg"),
		"application/json", bytes.NewReader(body))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK && string(b) == okAnswer
}
