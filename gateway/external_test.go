package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

const natsServerModule = "github.com/nats-io/nats-server/v2"

// natsServerBinary builds the nats-server of go.mod once per version and caches it under
// os.TempDir(), at the path the queue package's tests use, so either builds it for both.
func natsServerBinary(t testing.TB) string {
	t.Helper()
	tool := goTool(t)
	out, err := exec.Command(tool, "list", "-m", "-f", "{{.Version}}", natsServerModule).Output()
	version := string(bytes.TrimSpace(out))
	if err != nil || version == "" {
		t.Fatalf("go list -m %s: %v", natsServerModule, err)
	}
	bin := filepath.Join(os.TempDir(), "fanout-test-nats-server-"+version, "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	// Build beside the target, then rename: a concurrent run never sees half a binary.
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	if out, err := exec.Command(tool, "build", "-o", tmp, natsServerModule).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", natsServerModule, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// startNATSServer runs a nats-server process with JetStream, its store in storeDir, on a
// free port of 127.0.0.1, and returns its URL. It is killed (by its pid) at the end of the test.
func startNATSServer(t testing.TB, storeDir string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var output syncBuffer
	cmd := exec.Command(natsServerBinary(t), "-js", "-sd", storeDir, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("kill nats-server pid %d: %v", cmd.Process.Pid, err)
		}
		cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server output:\n%s", output.String())
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitFor(t, waitTimeout, "nats-server to listen on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return "nats://" + addr
}

// TestExternalJetStream runs the end-to-end routing scenario on a real nats-server process
// (queue.url) instead of the embedded queue: a few payloads to several destinations.
func TestExternalJetStream(t *testing.T) {
	store := t.TempDir()
	url := startNATSServer(t, store)
	runRouting(t, fmt.Sprintf("  url: %q", url), []string{
		"Alert.RequestOverLimit.json",
		"C2C.CallbackAfterSendMsg.json",
		"Group.CallbackBeforeSendMsg.json",
		"Sns.CallbackFriendAdd.json",
		"State.StateChange.json",
	})
	// The jobs went through that server: its store holds Fanout's streams.
	for _, stream := range []string{"FANOUT_JOBS", "FANOUT_DLQ"} {
		matches, _ := filepath.Glob(filepath.Join(store, "jetstream", "*", "streams", stream))
		if len(matches) == 0 {
			t.Errorf("no stream %s in the nats-server store %s", stream, store)
		}
	}
}
