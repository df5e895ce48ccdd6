package fanouttest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers: a log, a process's output.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Process is a program a test runs. It is stopped by its PID only: Kill, Stop, or at the
// end of the test, which kills it if it still runs and shows its output if the test failed.
type Process struct {
	Name   string      // for messages: "fanout", "nats-server n1"
	Cmd    *exec.Cmd   // started
	Output *SyncBuffer // stdout and stderr

	exited chan struct{} // closed once the process has been reaped
	err    error         // its exit status, once exited is closed
}

// StartProcess runs bin with args, its output in Output.
func StartProcess(t testing.TB, name, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Cmd: exec.Command(bin, args...), Output: &SyncBuffer{}, exited: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Output, p.Output
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s (%s): %v", name, bin, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Kill(t)
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", p.Name, p.Cmd.Process.Pid, p.Output)
		}
	})
	return p
}

// Exited is closed once the process has ended and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is the process's exit status (nil for 0) once Exited is closed.
func (p *Process) Err() error {
	<-p.exited
	return p.err
}

// Running reports whether the process has not ended yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s (pid %d): %s: %v", p.Name, p.Cmd.Process.Pid, sig, err)
	}
}

// Kill sends SIGKILL to the process, if it still runs, and reaps it.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	if !p.Running() {
		return
	}
	if err := p.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill %s (pid %d): %v", p.Name, p.Cmd.Process.Pid, err)
	}
	<-p.exited
}

// Stop sends SIGTERM, as an orchestrator stops a container, and wants the process to exit
// with status 0 within WaitTimeout; if it does not stop by then, it fails the test and
// kills it.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if !p.Running() {
		return
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGTERM to %s (pid %d): %v", p.Name, p.Cmd.Process.Pid, err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("%s (pid %d) exited with %v after SIGTERM, want status 0", p.Name, p.Cmd.Process.Pid, p.err)
		}
	case <-time.After(WaitTimeout):
		t.Errorf("%s (pid %d) still runs %s after SIGTERM; killing it", p.Name, p.Cmd.Process.Pid, WaitTimeout)
		p.Kill(t)
	}
}
