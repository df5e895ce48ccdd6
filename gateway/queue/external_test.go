package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

const natsServerModule = "github.com/nats-io/nats-server/v2"

// natsServerBinary builds the nats-server of go.mod once per version and
// caches it under os.TempDir().
func natsServerBinary(t *testing.T) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go tool to build nats-server: %v", err)
		}
	}
	// Test binaries carry no module list, so ask go.mod.
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{.Version}}", natsServerModule).Output()
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
	// Build beside the target, then rename: concurrent test runs never see
	// a half-written binary.
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	out, err = exec.Command(goTool, "build", "-o", tmp, natsServerModule).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", natsServerModule, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// natsServer is a nats-server process with JetStream on 127.0.0.1.
type natsServer struct {
	t      *testing.T
	bin    string
	dir    string
	port   int
	cmd    *exec.Cmd
	output bytes.Buffer
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startNATSServer(t *testing.T) *natsServer {
	s := &natsServer{t: t, bin: natsServerBinary(t), dir: t.TempDir(), port: freePort(t)}
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("nats-server output:\n%s", s.output.String())
		}
	})
	return s
}

func (s *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// start runs the server (again, on the same port and store) and waits
// until it accepts connections.
func (s *natsServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "-js", "-sd", s.dir, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port))
	s.cmd.Stdout = &s.output
	s.cmd.Stderr = &s.output
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	waitFor(s.t, "nats-server to listen", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// stop kills the process it started, by its PID, and reaps it.
func (s *natsServer) stop() {
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("kill nats-server %d: %v", s.cmd.Process.Pid, err)
	}
	s.cmd.Wait()
	s.cmd = nil
}

func TestExternalJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a nats-server process")
	}
	srv := startNATSServer(t)
	q, err := Open(testContext(t), Options{
		URL:              " " + srv.url() + " , " + srv.url(), // a list, spaces tolerated
		DedupWindow:      time.Minute,
		DeadLetterMaxAge: time.Hour,
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	ctx := testContext(t)
	if !q.Connected() {
		t.Fatal("Connected() = false after Open")
	}

	// Core flow: "ok" is acknowledged, "bad" dead-lettered then replayed.
	var mu sync.Mutex
	received := map[string]int{}
	handler := func(ctx context.Context, m *Message) {
		mu.Lock()
		received[m.Job.EventID+">"+m.Job.Destination]++
		first := received[m.Job.EventID+">"+m.Job.Destination] == 1
		mu.Unlock()
		if m.Job.Destination == "bad" && first {
			if err := q.DeadLetter(ctx, m, DeadLetterInfo{Reason: "status 400", LastStatus: 400, Attempts: m.Attempt()}); err != nil {
				t.Errorf("DeadLetter: %v", err)
			}
			return
		}
		if err := m.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
	}
	seen := func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		return received[key]
	}
	for _, d := range []string{"ok", "bad"} {
		consume(t, q, d, 2, handler)
	}
	if err := q.Enqueue(ctx, []Job{testJob("1", "ok"), testJob("1", "bad")}); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	waitFor(t, "the dead letter", func() bool {
		n, err := q.DeadLetterCount(ctx, "bad")
		return err == nil && n == 1 && seen("ev-1>ok") == 1
	})
	items, _, err := q.ListDeadLetters(ctx, DeadLetterFilter{Reason: "400"}, 0, 10)
	if err != nil || len(items) != 1 || sameJob(items[0].Job, testJob("1", "bad")) != "" {
		t.Fatalf("ListDeadLetters = %+v, %v; want the job of bad", items, err)
	}
	if err := q.ReplayDeadLetter(ctx, items[0].ID); err != nil {
		t.Fatalf("ReplayDeadLetter: %v", err)
	}
	waitFor(t, "the replayed job", func() bool { return seen("ev-1>bad") == 2 && pending(t, q, "bad") == 0 })
	if n, err := q.DeadLetterCount(ctx, ""); err != nil || n != 0 {
		t.Errorf("DeadLetterCount after replay = %d, %v; want 0", n, err)
	}

	// The server goes away: writes fail within their deadline, and come
	// back with it.
	srv.stop()
	waitFor(t, "Connected() to turn false", func() bool { return !q.Connected() })
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = q.Enqueue(short, []Job{testJob("2", "ok")})
	cancel()
	if err == nil {
		t.Fatal("Enqueue succeeded with the server down")
	}

	srv.start()
	waitFor(t, "Connected() to turn true", q.Connected)
	waitFor(t, "Enqueue to work again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return q.Enqueue(ctx, []Job{testJob("3", "ok")}) == nil
	})
	// The consumption that ran before the outage delivers it.
	waitFor(t, "the job enqueued after the restart", func() bool { return seen("ev-3>ok") == 1 })
	if n := seen("ev-2>ok"); n != 0 {
		t.Errorf("the job refused while down was delivered %d times", n)
	}
}
