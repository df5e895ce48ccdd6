package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// WatchConfig reloads the config whenever the file's content changes, until ctx ends. It
// watches the file's directory rather than the file, so that a file replaced by rename
// (most editors) and a Kubernetes ConfigMap update (a ..data symlink swapped to a new
// timestamped folder) are seen like an edit in place; it compares content hashes, so
// events that change nothing (a touch, the symlink dance) do not reload.
func (g *Gateway) WatchConfig(ctx context.Context) {
	path := g.opts.ConfigPath
	// Compared with the file as it was loaded, not as it is now: a change made between the
	// load and this call (a ConfigMap updated while Fanout starts) is a change.
	last := g.live.Load().cfg.Hash
	check := func() {
		h := fileHash(path)
		if h == last || h == "" {
			return
		}
		last = h
		g.log.Info("config file changed, reloading", "file", path)
		_ = g.Reload(ctx) // logged by Reload
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
		g.log.Warn("cannot watch the config file; polling it instead", "file", path, "every", watchPoll, "err", err)
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
			g.log.Warn("config watch error; polling continues", "err", err)
		case <-debounce.C:
			check()
		case <-poll.C:
			check()
		}
	}
}

// fileHash is the SHA-256 of the file's content in hex, as config.Config.Hash, following
// symlinks; "" when unreadable (a file being replaced is briefly missing: that is not a
// change).
func fileHash(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
