package config

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/rules"
)

// EventLog is the `log` section: the log of every accepted callback, the routes it matched
// and every delivery attempt, kept in the queue's JetStream for tracing (fanout trace) and
// backfills (fanout replay), bounded by age and by size.
type EventLog struct {
	// Enabled turns the log on. It is off by default: on, it takes log.max_bytes of the
	// store (JetStream reserves it), some 35 MB of memory under load, and a few percent of
	// the CPU of each callback. Off, nothing is written and the event endpoints answer that
	// the log is off.
	Enabled bool
	// MaxAge and MaxBytes bound the log: the oldest records go first when either is
	// reached. Only history goes: deliveries live in other streams.
	MaxAge   time.Duration
	MaxBytes int64
	// Index are the top-level body fields a callback can be found by (fanout trace MSGKEY,
	// field=MsgKey=...), each a lookup in the store rather than a scan of the log.
	Index []string
}

// DefaultLogIndex are the fields indexed when log.index is not set.
var DefaultLogIndex = []string{"MsgKey", "From_Account", "To_Account", "GroupId"}

// Bounds of the log section.
const (
	minLogMaxAge   = time.Second
	minLogMaxBytes = 1 << 20
	maxLogIndex    = 8
)

// checkRoom compares the room the log takes with the embedded store's bound: JetStream
// reserves log.max_bytes of queue.max_bytes for the log, so a log as large as the store
// cannot open, and one that takes most of it leaves the jobs little room.
func (l *EventLog) checkRoom(d *decoder, q Queue, pos *nodes) {
	if !l.Enabled || !q.Embedded() || q.MaxBytes <= 0 || l.MaxBytes <= 0 {
		return
	}
	at := cmp.Or(pos.logMaxBytes, pos.logEnabled)
	switch {
	case l.MaxBytes >= q.MaxBytes:
		d.errorf(at, "log.max_bytes", "%s is all of queue.max_bytes (%s): the store reserves it for the log, which then cannot open; make it a part, e.g. %s",
			sizeText(l.MaxBytes), sizeText(q.MaxBytes), sizeText(q.MaxBytes/4))
	case l.MaxBytes > q.MaxBytes/2:
		d.warnf(at, "log.max_bytes", "%s is more than half of queue.max_bytes (%s): the store reserves it for the log, leaving %s for the deliveries",
			sizeText(l.MaxBytes), sizeText(q.MaxBytes), sizeText(q.MaxBytes-l.MaxBytes))
	}
}

// sizeText writes n bytes in the largest binary unit that divides it, as a config would.
func sizeText(n int64) string {
	for _, u := range []struct {
		unit string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.unit)
		}
	}
	return fmt.Sprintf("%dB", n)
}

func defaultEventLog() EventLog {
	return EventLog{MaxAge: 24 * time.Hour, MaxBytes: 1 << 30, Index: slices.Clone(DefaultLogIndex)}
}

func (l *EventLog) decode(d *decoder, n *yaml.Node, p string, pos *nodes) {
	var maxAge, maxBytes *yaml.Node
	d.mapping(n, p, map[string]field{
		"enabled": func(v *yaml.Node, p string) { pos.logEnabled = v; d.setBool(&l.Enabled)(v, p) },
		"max_age": func(v *yaml.Node, p string) { maxAge = v; d.setDuration(&l.MaxAge, true)(v, p) },
		"max_bytes": func(v *yaml.Node, p string) {
			maxBytes = v
			d.setSize(&l.MaxBytes)(v, p)
		},
		"index": func(v *yaml.Node, p string) { l.decodeIndex(d, v, p) },
	})
	if maxAge != nil && l.MaxAge > 0 && l.MaxAge < minLogMaxAge {
		d.errorf(maxAge, join(p, "max_age"), "%s is too short: want at least %s", l.MaxAge, minLogMaxAge)
	}
	pos.logMaxBytes = maxBytes
	if maxBytes != nil && l.MaxBytes > 0 && l.MaxBytes < minLogMaxBytes {
		d.errorf(maxBytes, join(p, "max_bytes"), "%d bytes is too small: want at least 1MiB", l.MaxBytes)
	}
}

// decodeIndex reads the indexed field names: top-level body fields, each once. A name no
// Tencent callback carries is a warning (a typo indexes nothing); query and text are what
// rules see besides the body, not body fields.
func (l *EventLog) decodeIndex(d *decoder, n *yaml.Node, p string) {
	l.Index = []string{} // an explicit empty list indexes nothing
	if resolve(n) != nil && resolve(n).Kind == yaml.SequenceNode && len(resolve(n).Content) > maxLogIndex {
		d.errorf(n, p, "%d fields: want at most %d (each costs a write per callback)", len(resolve(n).Content), maxLogIndex)
		return
	}
	d.list(n, p, func(_ int, v *yaml.Node, p string) {
		name, ok := d.str(v, p)
		switch {
		case !ok:
		case name == "":
			d.errorf(v, p, "empty field name")
		case name == "query" || name == "text":
			d.errorf(v, p, "%q is not a body field: want a top-level field of the callback body, such as MsgKey", name)
		case slices.Contains(l.Index, name):
			d.errorf(v, p, "field %q repeated", name)
		default:
			if !tencentim.KnownField(name) {
				msg := fmt.Sprintf("no known Tencent IM callback carries %s", name)
				if s, ok := rules.Suggest(name, tencentim.KnownFields()); ok {
					msg += fmt.Sprintf(" (did you mean %s?)", s)
				}
				d.warnf(v, p, "%s", msg)
			}
			l.Index = append(l.Index, name)
		}
	})
}

// restartOnly names the keys of l that differ from old: every one, since the log's stream
// and its writer are set up once, at start.
func (l EventLog) restartOnly(old EventLog) []string {
	var keys []string
	for _, k := range []struct {
		key     string
		changed bool
	}{
		{"log.enabled", l.Enabled != old.Enabled},
		{"log.max_age", l.MaxAge != old.MaxAge},
		{"log.max_bytes", l.MaxBytes != old.MaxBytes},
		{"log.index", !slices.Equal(l.Index, old.Index)},
	} {
		if k.changed {
			keys = append(keys, k.key)
		}
	}
	return keys
}
