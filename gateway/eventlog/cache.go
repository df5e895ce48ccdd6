package eventlog

import (
	"context"
	"sort"
	"sync"
)

// maxCachedEntryBytes bounds the memory of the index entries kept: those of about five
// million callbacks under load.
const maxCachedEntryBytes = 64 << 20

// entryCache keeps the index entries read, a run [lo, hi) of positions: an entry never
// changes once stored, so that a search reads from the store only the entries it has not
// read before (those written since, mostly), and a trace or a search by field looks
// through the filters in memory. Past its bound it forgets the oldest.
type entryCache struct {
	mu     sync.Mutex // held while loading, so that two searches do not load the same entries
	lo, hi uint64
	es     []*blockEntry // ascending positions, all in [lo, hi)
	bytes  int
}

// entrySize is about the memory an entry takes.
func entrySize(e *blockEntry) int { return 96 + len(e.bits) }

// entries calls fn with the index entries in [from, to) (block positions, to 0: to the
// end), oldest first, until fn returns false, from the cache and, for those it lacks,
// from the store.
func (l *Log) entries(ctx context.Context, from, to uint64, fn func(*blockEntry) bool) error {
	if to > 0 && from >= to {
		return nil
	}
	c := &l.cache
	c.mu.Lock()
	if c.hi == 0 {
		c.lo, c.hi = from, from
	}
	if from < c.lo {
		var before []*blockEntry
		if _, err := l.load(ctx, from, c.lo, func(e *blockEntry) { before = append(before, e) }); err != nil {
			c.mu.Unlock()
			return err
		}
		c.es, c.lo = append(before, c.es...), from
	}
	if to == 0 || to > c.hi {
		last, err := l.load(ctx, c.hi, to, func(e *blockEntry) { c.es = append(c.es, e) })
		if err != nil {
			c.mu.Unlock()
			return err
		}
		// Only the positions read are known: one past the last may be written yet.
		c.hi = max(c.hi, last+1)
	}
	c.trim()
	es := c.es
	c.mu.Unlock()

	i := sort.Search(len(es), func(i int) bool { return es[i].pos >= from })
	for ; i < len(es) && (to == 0 || es[i].pos < to); i++ {
		if !fn(es[i]) {
			return nil
		}
	}
	return nil
}

// load reads the entries in [from, to) from the store, and returns the position of the
// last one read. An entry of an unknown version is left out.
func (l *Log) load(ctx context.Context, from, to uint64, fn func(*blockEntry)) (last uint64, err error) {
	err = l.store.Index(ctx, from, to, func(r Stored) bool {
		last = r.Seq
		if e, err := decodeEntry(r); err == nil {
			l.cache.bytes += entrySize(&e)
			fn(&e)
		}
		return true
	})
	return last, err
}

// trim forgets the oldest entries past the cache's bound.
func (c *entryCache) trim() {
	n := 0
	for c.bytes > maxCachedEntryBytes && n < len(c.es)-1 {
		c.bytes -= entrySize(c.es[n])
		n++
	}
	if n > 0 {
		c.es = c.es[n:]
		c.lo = c.es[0].pos
	}
}
