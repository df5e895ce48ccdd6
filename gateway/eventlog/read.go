package eventlog

import (
	"context"
	"slices"
	"time"
)

// Reading the log: index entries, then the blocks they point to, then the records in them.

// raw is one record as read from its block: its position, the time its block's index entry
// was stored, its callback, and its stored form.
type raw struct {
	pos  uint64
	at   time.Time
	id   string
	data []byte
}

// blocksAtOnce is the most blocks held in memory at once by a read.
const blocksAtOnce = 16

// blockOf is the position of the block of record position pos.
func blockOf(pos uint64) uint64 { return pos >> posBits }

// endBlock is the end (exclusive) of the blocks holding record positions before to (0: no end).
func endBlock(to uint64) uint64 {
	if to == 0 {
		return 0
	}
	return blockOf(to-1) + 1
}

// readBlocks calls fn with the records of the blocks of es (ascending positions) whose
// position is in [from, to) (to 0: no end) and whose callback want accepts (nil: all), in
// order, until fn returns false. Blocks evicted since their entry was read are left out.
func (l *Log) readBlocks(ctx context.Context, es []*blockEntry, from, to uint64, want func(id []byte) bool, fn func(raw) bool) error {
	for len(es) > 0 {
		chunk := es[:min(len(es), blocksAtOnce)]
		es = es[len(chunk):]
		seqs := make([]uint64, len(chunk))
		for i, e := range chunk {
			seqs[i] = e.block
		}
		// Several writers index their blocks in the order the store answers them: the
		// blocks are read in their order, then taken in the index's.
		slices.Sort(seqs)
		seqs = slices.Compact(seqs)
		data := make(map[uint64][]byte, len(seqs))
		if err := l.store.Blocks(ctx, seqs, func(r Stored) bool {
			data[r.Seq] = r.Data
			return true
		}); err != nil {
			return err
		}
		for _, e := range chunk {
			b, ok := data[e.block]
			if !ok {
				continue
			}
			stopped := false
			_ = eachRecord(b, func(i int, id, rec []byte) bool {
				pos := e.pos<<posBits | uint64(i)
				if pos < from || to > 0 && pos >= to || want != nil && !want(id) {
					return true
				}
				if !fn(raw{pos: pos, at: e.at, id: string(id), data: rec}) {
					stopped = true
					return false
				}
				return true
			})
			if stopped {
				return nil
			}
		}
	}
	return nil
}

// scan calls fn with every record whose position is in [from, to) (to 0: to the end), in
// order, until fn returns false.
func (l *Log) scan(ctx context.Context, from, to uint64, fn func(raw) bool) error {
	var es []*blockEntry
	if err := l.entries(ctx, blockOf(from), endBlock(to), func(e *blockEntry) bool {
		es = append(es, e)
		return true
	}); err != nil {
		return err
	}
	return l.readBlocks(ctx, es, from, to, nil, fn)
}

// withKey returns the index entries in [from, to) (record positions) of the blocks that
// may hold key h, and the number of entries read.
func (l *Log) withKey(ctx context.Context, h, from, to uint64) (es []*blockEntry, read int, err error) {
	err = l.entries(ctx, blockOf(from), endBlock(to), func(e *blockEntry) bool {
		read++
		if e.has(h) {
			es = append(es, e)
		}
		return true
	})
	return es, read, err
}

// event calls fn with every record of callback id at a position from on, in order, until
// fn returns false.
func (l *Log) event(ctx context.Context, id string, from uint64, fn func(raw) bool) error {
	es, _, err := l.withKey(ctx, eventKey(id), from, 0)
	if err != nil {
		return err
	}
	return l.readBlocks(ctx, es, from, 0, func(b []byte) bool { return string(b) == id }, fn)
}

// posAt is the position of the first record stored at or after t, about: that of the
// first block whose index entry was stored at or after t.
func (l *Log) posAt(ctx context.Context, t time.Time) (uint64, error) {
	p, err := l.store.IndexAt(ctx, t)
	return p << posBits, err
}
