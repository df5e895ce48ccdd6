package config

import (
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/webhook"
)

// Queue is the durable queue: embedded JetStream in Dir, or external at URL.
type Queue struct {
	Dir              string
	URL              Secret // may carry user:password
	Credentials      string
	TLS              TLSFiles
	Replicas         int
	SyncAlways       bool
	SyncInterval     time.Duration
	DedupWindow      time.Duration
	DeadLetterMaxAge time.Duration
	MaxBytes         int64 // embedded store's bound, all streams together; 0: JetStream's default
}

// Embedded reports whether the queue runs inside the process.
func (q Queue) Embedded() bool { return q.URL == "" }

func (q *Queue) decode(d *decoder, n *yaml.Node, p string) {
	var dirSet, replicasSet, syncSet, maxBytesSet *yaml.Node
	d.mapping(n, p, map[string]field{
		"dir": func(v *yaml.Node, p string) { dirSet = v; d.setStr(&q.Dir)(v, p) },
		"url": func(v *yaml.Node, p string) {
			s, ok := d.str(v, p)
			if !ok {
				return
			}
			for _, u := range strings.Split(s, ",") {
				u = strings.TrimSpace(u)
				scheme, _, found := strings.Cut(u, "://")
				if !found || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, scheme) {
					d.errorf(v, p, "invalid server URL %q: want nats://host:port (several separated by commas)", webhook.RedactURL(u))
				}
			}
			q.URL = Secret(s)
		},
		"credentials": d.setFile(&q.Credentials),
		"tls":         d.tlsFiles(&q.TLS, true),
		"replicas":    func(v *yaml.Node, p string) { replicasSet = v; d.setInt(&q.Replicas, 1, 5)(v, p) },
		"sync": func(v *yaml.Node, p string) {
			syncSet = v
			s, ok := d.str(v, p)
			if !ok {
				return
			}
			if s == "always" {
				q.SyncAlways = true
				return
			}
			d.setDuration(&q.SyncInterval, true)(v, p)
		},
		"dedup_window":        d.setDuration(&q.DedupWindow, false),
		"dead_letter_max_age": d.setDuration(&q.DeadLetterMaxAge, true),
		"max_bytes":           func(v *yaml.Node, p string) { maxBytesSet = v; d.setSize(&q.MaxBytes)(v, p) },
	})
	if q.URL != "" {
		if dirSet != nil {
			d.warnf(dirSet, join(p, "dir"), "ignored: queue.url is set, so the queue is external")
		}
		if syncSet != nil {
			d.warnf(syncSet, join(p, "sync"), "ignored with queue.url: the JetStream servers' own sync setting applies")
		}
		if maxBytesSet != nil {
			d.warnf(maxBytesSet, join(p, "max_bytes"), "ignored with queue.url: bound the streams on the JetStream servers (account limits)")
		}
	} else if replicasSet != nil && q.Replicas > 1 {
		d.errorf(replicasSet, join(p, "replicas"), "replicas above 1 need an external cluster (queue.url)")
	}
}

// restartOnly names the keys of q that differ from old: every one of them, since the queue
// is opened once, at start.
func (q Queue) restartOnly(old Queue) []string {
	var keys []string
	for _, k := range []struct {
		key     string
		changed bool
	}{
		{"queue.dir", q.Dir != old.Dir},
		{"queue.url", q.URL != old.URL},
		{"queue.credentials", q.Credentials != old.Credentials},
		{"queue.tls", q.TLS != old.TLS},
		{"queue.replicas", q.Replicas != old.Replicas},
		{"queue.sync", q.SyncAlways != old.SyncAlways || q.SyncInterval != old.SyncInterval},
		{"queue.dedup_window", q.DedupWindow != old.DedupWindow},
		{"queue.dead_letter_max_age", q.DeadLetterMaxAge != old.DeadLetterMaxAge},
		{"queue.max_bytes", q.MaxBytes != old.MaxBytes},
	} {
		if k.changed {
			keys = append(keys, k.key)
		}
	}
	return keys
}
