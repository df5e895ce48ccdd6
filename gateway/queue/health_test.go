package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var discard = slog.New(slog.DiscardHandler)

// waitUntil polls cond until it holds, failing the test after waitTimeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitTimeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
	}
}

// mountSmallFS mounts a tmpfs of size bytes for the test, or skips the test where mounting
// is not allowed (not root, no CAP_SYS_ADMIN).
func mountSmallFS(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small file system here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// enqueueOne stores one job of size bytes with the callback path's deadline.
func enqueueOne(q *Queue, event string, size int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	job := testJob(event, "d")
	job.Body = []byte(strings.Repeat("x", size))
	return q.Enqueue(ctx, []Job{job})
}

// TestStoreFull fills a real file system under the embedded store. It reproduces the store
// that, after one failed write, left every later write unanswered (each caller waiting out
// its deadline) and Health saying nothing, even once space was back: now the failure shows in
// Health and Broken, writes fail at once, and a queue opened again on the same directory takes
// writes once space is back, with every job acknowledged before the failure still there.
func TestStoreFull(t *testing.T) {
	mnt := mountSmallFS(t, 8<<20)
	dir := filepath.Join(mnt, "data")
	filler := filepath.Join(mnt, "filler")
	q, err := Open(testContext(t), Options{Dir: dir, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// Something else fills the file system once the store runs (JetStream sizes its own
	// bound from the free space it finds at start).
	if err := os.WriteFile(filler, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	stored := 0
	for i := range 2000 {
		if err := enqueueOne(q, fmt.Sprint("e", i), 4000); err != nil {
			break
		}
		stored++
	}
	if stored == 0 || stored == 2000 {
		t.Fatalf("%d jobs stored before the file system was full", stored)
	}
	waitUntil(t, "the queue to report that it cannot write", func() bool { return q.Health() != nil })
	select {
	case <-q.Broken():
	case <-time.After(waitTimeout):
		t.Fatal("the store was not reported broken after a failed write")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := q.Enqueue(ctx, []Job{testJob("late", "d")}); err == nil {
		t.Fatal("Enqueue on a broken store succeeded")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "queue.dir to be writable again", func() bool { return Writable(dir) == nil })
	if err := q.Close(); err != nil {
		t.Logf("Close of the broken store: %v", err)
	}
	q2 := openWith(t, Options{Dir: dir})
	if err := q2.Health(); err != nil {
		t.Fatalf("Health after reopening: %v", err)
	}
	if err := enqueueOne(q2, "after", 4000); err != nil {
		t.Fatalf("Enqueue after reopening: %v", err)
	}
	if n := pending(t, q2, "d"); n < stored+1 {
		t.Errorf("%d jobs pending after reopening, want at least %d (stored before the failure) + 1", n, stored)
	}
}

// TestStoreReadOnly opens the store on a read-only file system: Open fails with an error
// worth trying again (not IsPermanent), and succeeds once the file system is writable. (A
// file system cannot be made read-only under a running store here: the kernel refuses while
// files are open for writing; a running store that meets it is broken, as in TestStoreFull.)
func TestStoreReadOnly(t *testing.T) {
	mnt := mountSmallFS(t, 64<<20)
	dir := filepath.Join(mnt, "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot remount read-only: %v %s", err, out)
	}
	_, err := Open(testContext(t), Options{Dir: dir, Logger: discard})
	if err == nil || IsPermanent(err) {
		t.Fatalf("Open on a read-only file system: %v (permanent %v), want an error worth retrying", err, IsPermanent(err))
	}
	if out, err := exec.Command("mount", "-o", "remount,rw", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount read-write: %v %s", err, out)
	}
	q := openWith(t, Options{Dir: dir})
	if err := enqueueOne(q, "rw", 100); err != nil {
		t.Fatalf("Enqueue once writable: %v", err)
	}
}

// TestStoreDirDeleted deletes queue.dir under a running store. It reproduces the callbacks
// answered OK and lost: the server writes on into the unlinked files, so Enqueue succeeded.
// Now Health reports it and Enqueue fails.
func TestStoreDirDeleted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	q := openWith(t, Options{Dir: dir})
	if err := enqueueOne(q, "before", 100); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the queue to report its directory gone", func() bool { return q.Health() != nil })
	if err := enqueueOne(q, "after", 100); err == nil {
		t.Error("Enqueue into a deleted queue.dir succeeded")
	}
	// Recreated by hand, it is still not the store's directory.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := q.probeStore(); err == nil {
		t.Fatal("the probe passes with queue.dir replaced by another directory")
	}
}

// TestOpenPermanentErrors: errors that no retry fixes are marked, others are not.
func TestOpenPermanentErrors(t *testing.T) {
	_, err := Open(testContext(t), Options{Dir: t.TempDir(), URL: "nats://127.0.0.1:1"})
	if !IsPermanent(err) {
		t.Errorf("dir and url: %v, IsPermanent false", err)
	}
	_, err = Open(testContext(t), Options{URL: "nats://127.0.0.1:1", Credentials: filepath.Join(t.TempDir(), "missing.creds")})
	if !IsPermanent(err) {
		t.Errorf("missing credentials file: %v, IsPermanent false", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = Open(ctx, Options{URL: "nats://127.0.0.1:1", Logger: discard})
	if err == nil || IsPermanent(err) {
		t.Errorf("no server: %v, IsPermanent %v", err, IsPermanent(err))
	}
	if err := classifyOpenError(errors.New("nats: authorization violation")); !IsPermanent(err) {
		t.Error("authorization violation is not permanent")
	}
}
