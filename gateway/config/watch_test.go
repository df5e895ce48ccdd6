package config

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWatch changes a watched file: in place, by rename, with a touch that changes nothing
// and by a change made before Watch started. Each change of content reloads; nothing else
// does.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a: 1\n")
	var loaded atomic.Value // as the gateway keeps it: what the last load read
	loaded.Store(hashOf([]byte("a: 1\n")))
	write("a: 2\n") // changed after the load, before Watch

	// seen are the contents each reload found: a reload without a change would show one
	// twice.
	var mu sync.Mutex
	var seen []string
	reload := func() {
		b, _ := os.ReadFile(path)
		loaded.Store(hashOf(b))
		mu.Lock()
		seen = append(seen, strings.TrimSpace(string(b)))
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, func() string { return loaded.Load().(string) }, slog.New(slog.DiscardHandler), reload)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitReloads := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := slices.Clone(seen)
			mu.Unlock()
			if slices.Equal(got, want) {
				return
			}
			if len(got) > len(want) || time.Now().After(deadline) {
				t.Fatalf("reloads found %q, want %q", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitReloads("a: 2") // seen by the first poll

	write("a: 3\n")
	waitReloads("a: 2", "a: 3")

	tmp := filepath.Join(dir, "config.yaml.tmp")
	if err := os.WriteFile(tmp, []byte("a: 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitReloads("a: 2", "a: 3", "a: 4")

	// A touch and a rewrite of the same bytes change nothing.
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	write("a: 4\n")
	write("a: 5\n")
	waitReloads("a: 2", "a: 3", "a: 4", "a: 5")
}

// watchFast shortens the watcher's debounce and poll for a test.
func watchFast(t *testing.T) {
	debounce, poll := watchDebounce, watchPoll
	watchDebounce, watchPoll = 20*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { watchDebounce, watchPoll = debounce, poll })
}

// watchCounting runs Watch on path with a reload that counts and records what it read,
// until the returned stop is called; other reads the same way a reload by another trigger
// (SIGHUP) does.
func watchCounting(t *testing.T, path string) (reloads *atomic.Int32, other func(), stop func()) {
	var loaded atomic.Value
	b, _ := os.ReadFile(path)
	loaded.Store(hashOf(b))
	reloads = &atomic.Int32{}
	read := func() {
		b, _ := os.ReadFile(path)
		loaded.Store(hashOf(b))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, func() string { return loaded.Load().(string) }, slog.New(slog.DiscardHandler), func() {
			read()
			reloads.Add(1)
		})
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return reloads, read, stop
}

// settle gives the watcher many debounce and poll periods to act.
func settle() { time.Sleep(20 * watchPoll) }

// TestWatchOnePerEdit reproduces a file edit reloaded twice: once by a SIGHUP sent with the
// edit, once more by the watcher (which compared the file with what it had loaded itself),
// and a rewrite in place reloaded once empty (failing) and once written. Each edit is now
// one reload.
func TestWatchOnePerEdit(t *testing.T) {
	watchFast(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("a: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloads, sighup, _ := watchCounting(t, path)

	if err := os.WriteFile(path, []byte("a: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sighup() // the operator's SIGHUP reloads the edit at once
	settle()
	if n := reloads.Load(); n != 0 {
		t.Fatalf("the watcher reloaded %d times an edit that SIGHUP had reloaded", n)
	}

	// An editor that truncates the file, then writes it.
	f, err := os.OpenFile(path, os.O_TRUNC|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * watchPoll) // empty for several polls
	if _, err := f.WriteString("a: 3\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	settle()
	if n := reloads.Load(); n != 1 {
		t.Fatalf("%d reloads for one edit written in place, want 1", n)
	}
}

// TestWatchNotAfterStop: once its context ends, the watcher reloads nothing, whatever it
// had seen.
func TestWatchNotAfterStop(t *testing.T) {
	watchFast(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("a: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloads, _, stop := watchCounting(t, path)
	if err := os.WriteFile(path, []byte("a: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stop()
	n := reloads.Load()
	if err := os.WriteFile(path, []byte("a: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	settle()
	if got := reloads.Load(); got != n {
		t.Fatalf("%d reloads after the watcher was stopped", got-n)
	}
}
