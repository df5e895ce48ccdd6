package config

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch timing: events are debounced (editors write a file in several steps), and the
// content is also polled, for the cases a watch cannot see (some network and overlay file
// systems, a watch lost to an error).
const (
	watchDebounce = 300 * time.Millisecond
	watchPoll     = 2 * time.Second
)

// Watch calls reload whenever the content of the config file at path changes, until ctx
// ends. loaded is the Hash of the file as it was last loaded, not as it is now: a change
// made between that load and this call (a ConfigMap updated while Fanout starts) is a
// change.
//
// It watches the file's directory rather than the file, so that a file replaced by rename
// (most editors) and a Kubernetes ConfigMap update (a ..data symlink swapped to a new
// timestamped folder) are seen like an edit in place; it compares content hashes, so
// events that change nothing (a touch, the symlink dance) do not reload.
func Watch(ctx context.Context, path, loaded string, log *slog.Logger, reload func()) {
	last := loaded
	check := func() {
		h := fileHash(path)
		if h == last || h == "" {
			return
		}
		last = h
		log.Info("config file changed, reloading", "file", path)
		reload()
	}

	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		defer w.Close()
		if err = w.Add(filepath.Dir(path)); err == nil {
			events, errs = w.Events, w.Errors
		}
	}
	if err != nil {
		log.Warn("cannot watch the config file; polling it instead", "file", path, "every", watchPoll, "err", err)
	}

	poll := time.NewTicker(watchPoll)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok { // the watcher died: polling goes on
				events = nil
				continue
			}
			debounce.Reset(watchDebounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.Warn("config watch error; polling continues", "err", err)
		case <-debounce.C:
			check()
		case <-poll.C:
			check()
		}
	}
}

// fileHash is the Hash of the file's content, following symlinks; "" when unreadable (a
// file being replaced is briefly missing: that is not a change).
func fileHash(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return hashOf(b)
}
