// Package e2e holds Fanout's process-level tests: black-box, on the real fanout binary
// (built once per run) and real nats-server processes, every one on 127.0.0.1, started and
// stopped by the tests by PID. A crash under load, a NATS cluster with two replicas, an
// external JetStream, reloads by signal and by the admin API, ordered delivery across a
// crash and across two replicas. It has no code of its own;
// tests that call Fanout's Go functions in-process stay beside those functions.
//
// They are slow (the cluster test takes about a minute): `go test -short` skips the
// slowest, and `go test -run TestCrash ./test/e2e/` runs one.
package e2e
