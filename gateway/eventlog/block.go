package eventlog

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/klauspost/compress/s2"
)

// The stored form of the log: blocks of records, each with an index entry.
//
// The writer gathers the records it has in hand, up to maxBlockRecords or maxBlockBytes or
// what came within blockLinger of the first, into a block that the Store keeps as one
// message: a callback costs the store a share of a message instead of a message per record
// and per indexed value. Each block has an index entry, stored apart from the blocks: a
// Bloom filter of the callbacks (event ids) its records belong to and of the indexed field
// values its received records carry. A search reads the entries (a few bytes per callback)
// and fetches only the blocks whose filter may hold what it looks for, then checks the
// records themselves: a false positive costs a block read, never a wrong answer.
//
// A record's position in the log is its block's entry's position in the index, shifted by
// posBits, plus its place in the block: positions grow with the log and are the cursors
// of searches.
//
// The stored forms, each led by its version (a reader skips a version it does not know):
//
//	block, version 2: 0x02, then S2 (klauspost/compress/s2) of, per record:
//	                  len(event id) (uvarint), event id, len(record) (uvarint), record
//	                  (encode's form)
//	entry, version 1: 0x01, records (uvarint), hashes (1 byte), len(bits) (uvarint), bits:
//	                  a Bloom filter of keyHash's keys (bit k is bit k%8 of byte k/8)
const (
	blockVersion = 2
	entryVersion = 1

	// posBits is the room a block's records take in a position.
	posBits = 16
	// maxBlockBytes bounds a block (a record bigger than it is a block of its own).
	maxBlockBytes = 256 << 10
	// blockLinger is how long the first record of a block waits for others; maxLinger how
	// long while traffic is light: a block written by its linger with fewer than
	// lingerFill records doubles the next one's, a fuller block brings it back.
	blockLinger = 5 * time.Millisecond
	maxLinger   = time.Second
	lingerFill  = 32

	// bloomBitsPerKey and bloomHashes make a filter that says yes to about one key in
	// 2000 it does not hold.
	bloomBitsPerKey = 16
	bloomHashes     = 11
)

// maxBlockRecords bounds the records of a block; a variable so that a test makes blocks of
// a few records (SetSearchBatches). It is below 1<<posBits.
var maxBlockRecords = 1024

// blockBuilder gathers records into a block and the keys of its index entry.
type blockBuilder struct {
	buf     []byte
	scratch []byte
	packed  []byte // the block as stored
	records int
	most    int      // records
	keys    []uint64 // with repeats: a filter sized by them is a little sparser
}

func newBlockBuilder(most int) *blockBuilder {
	b := &blockBuilder{most: most}
	b.reset()
	return b
}

func (b *blockBuilder) reset() {
	b.buf = append(b.buf[:0], blockVersion)
	b.records = 0
	b.keys = b.keys[:0]
}

// fits reports whether a record of about n bytes goes in the block without making it too big.
func (b *blockBuilder) fits(n int) bool {
	return b.records == 0 || b.records < b.most && len(b.buf)+n+48 <= maxBlockBytes
}

// packed is the block as stored: its records compressed.
func (b *blockBuilder) pack() []byte {
	n := 1 + s2.MaxEncodedLen(len(b.buf)-1)
	if cap(b.packed) < n {
		b.packed = make([]byte, n)
	}
	b.packed = b.packed[:n]
	b.packed[0] = blockVersion
	enc := s2.Encode(b.packed[1:], b.buf[1:])
	return b.packed[:1+len(enc)]
}

// full reports whether the block takes no more records.
func (b *blockBuilder) full() bool { return b.records >= b.most || len(b.buf) >= maxBlockBytes }

// add appends the record e of callback id, with its body and the indexed fields it carries.
func (b *blockBuilder) add(id string, e *Entry, body []byte) {
	b.scratch = encode(b.scratch[:0], e, body)
	b.buf = binary.AppendUvarint(b.buf, uint64(len(id)))
	b.buf = append(b.buf, id...)
	b.buf = binary.AppendUvarint(b.buf, uint64(len(b.scratch)))
	b.buf = append(b.buf, b.scratch...)
	b.records++
	b.keys = append(b.keys, eventKey(id))
	for _, f := range e.fields {
		b.keys = append(b.keys, fieldKey(f.Name, f.Value))
	}
}

// entry is the block's index entry.
func (b *blockBuilder) entry() []byte {
	nbits := max(64, len(b.keys)*bloomBitsPerKey)
	bits := make([]byte, (nbits+7)/8)
	nbits = len(bits) * 8
	for _, h := range b.keys {
		h1, h2 := h, h>>32|1
		for i := range uint64(bloomHashes) {
			bit := (h1 + i*h2) % uint64(nbits)
			bits[bit/8] |= 1 << (bit % 8)
		}
	}
	out := make([]byte, 0, len(bits)+16)
	out = append(out, entryVersion)
	out = binary.AppendUvarint(out, uint64(b.records))
	out = append(out, bloomHashes)
	out = binary.AppendUvarint(out, uint64(len(bits)))
	return append(out, bits...)
}

// blockEntry is an index entry as read: the block at position block in the store, which
// the position pos in the index stands for.
type blockEntry struct {
	pos, block uint64
	at         time.Time // when the store took the entry
	records    int
	hashes     uint64
	bits       []byte
}

var errEntryFormat = errors.New("not an index entry of a known version")

func decodeEntry(r Stored) (blockEntry, error) {
	e := blockEntry{pos: r.Seq, block: r.Block, at: r.Time}
	d := r.Data
	if len(d) < 1 || d[0] != entryVersion || r.Block == 0 {
		return e, errEntryFormat
	}
	d = d[1:]
	n, k := binary.Uvarint(d)
	if k <= 0 || len(d) < k+1 {
		return e, errEntryFormat
	}
	e.records, e.hashes, d = int(n), uint64(d[k]), d[k+1:]
	n, k = binary.Uvarint(d)
	if k <= 0 || uint64(len(d)-k) != n || n == 0 {
		return e, errEntryFormat
	}
	e.bits = d[k:]
	return e, nil
}

// has reports whether the block may hold key h: false is sure, true may be wrong.
func (e *blockEntry) has(h uint64) bool {
	nbits := uint64(len(e.bits)) * 8
	h1, h2 := h, h>>32|1
	for i := range e.hashes {
		bit := (h1 + i*h2) % nbits
		if e.bits[bit/8]&(1<<(bit%8)) == 0 {
			return false
		}
	}
	return true
}

// eachRecord calls fn with the records of a block in order, with their place in it,
// until fn returns false. A block of an unknown version, or cut short, ends early.
func eachRecord(block []byte, fn func(i int, id, data []byte) bool) error {
	if len(block) < 1 || block[0] != blockVersion {
		return errors.New("not a block of a known version")
	}
	d, err := s2.Decode(nil, block[1:])
	if err != nil {
		return err
	}
	for i := 0; len(d) > 0; i++ {
		n, k := binary.Uvarint(d)
		if k <= 0 || uint64(len(d)-k) < n {
			return errors.New("block cut short")
		}
		id := d[k : k+int(n)]
		d = d[k+int(n):]
		n, k = binary.Uvarint(d)
		if k <= 0 || uint64(len(d)-k) < n {
			return errors.New("block cut short")
		}
		data := d[k : k+int(n)]
		d = d[k+int(n):]
		if !fn(i, id, data) {
			return nil
		}
	}
	return nil
}

// Keys of the index: a 64-bit hash of a kind and the value, eight bytes at a time, mixed
// (the filter takes two hashes out of one). It is part of the stored form: an index entry
// written by one version is read by the next.
func eventKey(id string) uint64 { return keyHash('e', id, "") }

func fieldKey(name, value string) uint64 { return keyHash('f', name, value) }

func keyHash(kind byte, a, b string) uint64 {
	const m = 0x9e3779b97f4a7c15
	h := uint64(kind)*m ^ uint64(len(a))<<32 ^ uint64(len(b))
	for _, s := range [2]string{a, b} {
		for len(s) >= 8 {
			h = mix((h ^ binary.LittleEndian.Uint64([]byte(s[:8]))) * m)
			s = s[8:]
		}
		var tail uint64
		for i := 0; i < len(s); i++ {
			tail |= uint64(s[i]) << (8 * i)
		}
		h = mix((h ^ tail ^ uint64(len(s))<<56) * m)
	}
	return mix(h)
}

// mix is splitmix64's finalizer.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
