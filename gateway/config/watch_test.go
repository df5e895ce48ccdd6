package config

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	loaded := hashOf([]byte("a: 1\n"))
	write("a: 2\n") // changed after the load, before Watch

	// seen are the contents each reload found: a reload without a change would show one
	// twice.
	var mu sync.Mutex
	var seen []string
	reload := func() {
		b, _ := os.ReadFile(path)
		mu.Lock()
		seen = append(seen, strings.TrimSpace(string(b)))
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, loaded, slog.New(slog.DiscardHandler), reload)
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
