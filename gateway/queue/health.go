package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// The embedded store's health. JetStream's file store treats a failed write (a full or
// read-only file system) as permanent for the life of the stream: every later write gets
// no answer at all, and space coming back does not change that. And a queue.dir deleted
// while running goes unnoticed: the server keeps writing to the open, unlinked files, and
// what it acknowledges is gone at the next start. So the queue watches for both: the
// server's own reports of a write error (the store is then broken until it is opened
// again), and a probe of the directory every storeProbeEvery (the same directory, still
// there, still writable). Either makes Health report the reason, and Enqueue fail at once.
const (
	storeProbeEvery = time.Second
	// storeProbeBytes is written and removed by each probe: about a JetStream block write.
	storeProbeBytes = 64 << 10
	// storeProbeFile is the probe's file name inside the store directory.
	storeProbeFile = ".fanout-write-probe"
)

// Health returns why the queue cannot take writes now, or nil: closed, disconnected from
// the external JetStream, or, for the embedded store, broken by a write error or with a
// directory that is gone or not writable.
func (q *Queue) Health() error {
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	switch {
	case closed:
		return errClosed
	case !q.nc.IsConnected():
		return fmt.Errorf("queue: %w", nats.ErrDisconnected)
	}
	return q.storeError()
}

// storeError is the embedded store's trouble, if any (nil for an external JetStream).
func (q *Queue) storeError() error {
	select {
	case <-q.broken:
		return q.brokenErr
	default:
	}
	if p := q.probeErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Broken is closed when the embedded store met a write error it does not recover from
// (JetStream keeps refusing writes until it is started again): the caller closes the
// queue and opens it anew once Writable passes. It is never closed for an external
// JetStream.
func (q *Queue) Broken() <-chan struct{} { return q.broken }

// breakStore records the embedded server's report of a write it cannot recover from.
func (q *Queue) breakStore(msg string) {
	q.brokenOnce.Do(func() {
		q.brokenErr = fmt.Errorf("queue: the store failed to write (%s); it is reopened once queue.dir %s can be written again", msg, q.dir)
		close(q.broken)
	})
}

// storeWriteFailure tells whether a server log line reports a write that the store does not
// recover from: a file store's "Critical write error", or JetStream disabled for lack of
// space.
func storeWriteFailure(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "critical write error") || strings.Contains(m, "will be disabled")
}

// watchStore probes the embedded store's directory every storeProbeEvery, and at once when
// asked (a failed write), until Close.
func (q *Queue) watchStore() {
	t := time.NewTicker(storeProbeEvery)
	defer t.Stop()
	for {
		err := q.probeStore()
		prev := q.probeErr.Load()
		switch {
		case err != nil && prev == nil:
			q.log.Error("the queue cannot write: callbacks are answered 503 until it can", "error", err)
		case err == nil && prev != nil:
			q.log.Info("the queue can write again", "dir", q.dir)
		}
		if err != nil {
			q.probeErr.Store(&err)
		} else {
			q.probeErr.Store(nil)
		}
		select {
		case <-q.closing:
			return
		case <-t.C:
		case <-q.probeNow:
		}
	}
}

// probeStore checks that queue.dir is the directory the store opened and can be written.
func (q *Queue) probeStore() error {
	info, err := os.Stat(q.dir)
	switch {
	case err != nil:
		return fmt.Errorf("queue: queue.dir %s: %w (the store keeps its open files: restart Fanout)", q.dir, err)
	case !os.SameFile(info, q.dirInfo):
		return fmt.Errorf("queue: queue.dir %s was replaced while running (the store keeps the deleted one's files: restart Fanout)", q.dir)
	}
	if !q.srv.JetStreamEnabled() {
		q.breakStore("JetStream is disabled")
	}
	return Writable(q.dir)
}

// Writable checks that dir can take a write of about a JetStream block now: a full or
// read-only file system fails it.
func Writable(dir string) error {
	path := filepath.Join(dir, storeProbeFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("queue: queue.dir %s cannot be written: %w", dir, err)
	}
	_, werr := f.Write(make([]byte, storeProbeBytes))
	cerr := f.Close()
	rerr := os.Remove(path)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("queue: queue.dir %s cannot be written: %w", dir, err)
	}
	return nil
}

// probeSoon asks the store's watcher to probe now: a write just failed.
func (q *Queue) probeSoon() {
	select {
	case q.probeNow <- struct{}{}:
	default:
	}
}

// permanentError marks an error that retrying Open cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err, from Open, cannot go away by trying again: options that
// contradict each other, credentials the servers refuse, files that are missing or
// unreadable. Anything else (no server reachable, a cluster electing its leaders, a
// deadline) is worth another try.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// classifyOpenError marks err permanent when no retry can fix it.
func classifyOpenError(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrAccountAuthExpired), errors.Is(err, os.ErrPermission), errors.Is(err, os.ErrNotExist),
		strings.Contains(msg, "authorization violation"), strings.Contains(msg, "permission denied"),
		strings.Contains(msg, "tls:"), strings.Contains(msg, "x509:"):
		return permanentError{err}
	}
	return err
}
