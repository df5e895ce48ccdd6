package fanouttest

import (
	"os"
	"strconv"
	"testing"
)

// NATSServer is a nats-server process with JetStream on 127.0.0.1, as an external queue.
// Its port and store stay the same across Kill and Start, as a server restarted in place.
type NATSServer struct {
	Name string
	Port int    // client port
	Dir  string // JetStream store
	// Args are added to the command line: a cluster's routes, a monitoring port, ...
	Args []string

	t    testing.TB // the test that owns the processes
	bin  string
	proc *Process // the current run; nil before the first Start
}

// NewNATSServer prepares a server on a free port with its store in a fresh folder, without
// starting it; args are added to its command line. Its process is killed at the end of t.
func NewNATSServer(t testing.TB, name string, args ...string) *NATSServer {
	t.Helper()
	return &NATSServer{Name: name, Port: FreePort(t), Dir: t.TempDir(), Args: args, t: t, bin: NATSServerBinary(t)}
}

// StartNATSServer runs a new server (NewNATSServer, then Start).
func StartNATSServer(t testing.TB, name string, args ...string) *NATSServer {
	t.Helper()
	s := NewNATSServer(t, name, args...)
	s.Start(t)
	return s
}

// Start runs the server, again after a Kill, and waits until it accepts connections. t is
// the caller's test, which a failure stops; the process belongs to the test that made s.
func (s *NATSServer) Start(t testing.TB) {
	t.Helper()
	args := append([]string{"-js", "-sd", s.Dir, "--server_name", s.Name, "-a", "127.0.0.1", "-p", strconv.Itoa(s.Port)}, s.Args...)
	s.proc = StartProcess(s.t, "nats-server "+s.Name, s.bin, args...)
	WaitFor(t, WaitTimeout, "nats-server "+s.Name+" to accept connections", func() bool {
		if !s.proc.Running() {
			t.Fatalf("nats-server %s exited: %v\n%s", s.Name, s.proc.Err(), s.proc.Output)
		}
		return Listening(s.Addr())()
	})
}

// Kill sends SIGKILL to the server's process, by its PID, and reaps it.
func (s *NATSServer) Kill(t testing.TB) {
	t.Helper()
	if s.proc != nil {
		s.proc.Kill(t)
	}
}

// Signal sends sig to the server's process: SIGSTOP freezes it (a server that no longer
// answers), SIGCONT wakes it.
func (s *NATSServer) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if s.proc != nil {
		s.proc.Signal(t, sig)
	}
}

// Running reports whether the server's process runs.
func (s *NATSServer) Running() bool { return s.proc != nil && s.proc.Running() }

// Addr is the client address, 127.0.0.1:PORT.
func (s *NATSServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the client URL, nats://127.0.0.1:PORT, for queue.url.
func (s *NATSServer) URL() string { return "nats://" + s.Addr() }
