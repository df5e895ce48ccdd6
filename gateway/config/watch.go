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
// systems, a watch lost to an error). Variables, for the tests.
var (
	watchDebounce = 300 * time.Millisecond
	watchPoll     = 2 * time.Second
)

// Watch calls reload whenever the content of the config file at path differs from the
// content last loaded, until ctx ends, and never after. loaded returns the Hash of the file
// as the last load read it, successful or not, whatever triggered it (SIGHUP, the admin
// port, this watcher): an edit that a SIGHUP already reloaded is not reloaded again, and a
// change made before the first call (a ConfigMap updated while Fanout starts) is a change.
// A content that failed to load is not tried again until it changes.
//
// It watches the file's directory rather than the file, so that a file replaced by rename
// (most editors) and a Kubernetes ConfigMap update (a ..data symlink swapped to a new
// timestamped folder) are seen like an edit in place; it compares content hashes, so
// events that change nothing (a touch, the symlink dance) do not reload. While events come,
// the poll waits for them to settle, and a file that is briefly missing or empty (being
// rewritten in place) is not a change: one edit is one reload.
func Watch(ctx context.Context, path string, loaded func() string, log *slog.Logger, reload func()) {
	tried := ""
	check := func() {
		h := fileHash(path)
		if h == "" || h == loaded() || h == tried || ctx.Err() != nil {
			return
		}
		tried = h
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
	settling := false // events came and the debounce has not fired yet
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok { // the watcher died: polling goes on
				events = nil
				continue
			}
			settling = true
			debounce.Reset(watchDebounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.Warn("config watch error; polling continues", "err", err)
		case <-debounce.C:
			settling = false
			check()
		case <-poll.C:
			if !settling {
				check()
			}
		}
	}
}

// fileHash is the Hash of the file's content, following symlinks; "" when unreadable or
// empty (a file being replaced is briefly missing, one rewritten in place briefly empty:
// neither is a change).
func fileHash(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	return hashOf(b)
}

// HashOf is the Hash of a config file whose bytes are data.
func HashOf(data []byte) string { return hashOf(data) }
