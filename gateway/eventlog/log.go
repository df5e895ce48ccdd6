// Package eventlog owns the event log's model and logic: what is recorded of a callback
// (received, its routes and destinations, every delivery attempt, each round's end, the
// replays), how the records of one callback add up to where its deliveries stand, how
// callbacks are searched (by indexed field, or by time with filters), selected for a replay,
// and followed live.
//
// It writes without waiting: the callback path and the delivery workers hand records to
// a bounded buffer, and one goroutine gathers them into blocks (block.go) that it sends to
// the Store, which does not wait for the store's answers either. A record that finds the
// buffer full, or that the store refuses, is dropped and counted: the log never slows or
// fails a callback or a delivery.
//
// The storage is behind Store (gateway/queue's EventLog, on JetStream, which the gateway
// adapts): this package speaks no NATS, serves no HTTP and evaluates no rules. Its types
// are the admin API's JSON for the event endpoints.
package eventlog

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// Stored is one message of the Store: a block of records, or a block's index entry. Seq
// is its position (a block's among the blocks, an entry's in the index), Time when the
// store took it, Block the position of the block an index entry indexes (0 for a block).
//
// It is an unnamed struct, the same as gateway/queue's LogRecord, so that the queue's
// EventLog is a Store as it is, and this package imports no NATS.
type Stored = struct {
	Seq   uint64
	Time  time.Time
	Block uint64
	Data  []byte
}

// Store keeps the blocks and their index (block.go): gateway/queue's EventLog. Appends do
// not wait for the store; reads call fn for each message in order until it returns false.
type Store interface {
	// AppendBlock stores a block of records and, once it is stored, its index entry with
	// its position. records is the number of records, for counting a failure.
	AppendBlock(block, index []byte, records int) error
	Flush(ctx context.Context) error
	// Index reads the entries whose position is in [from, to) (to 0: to the end).
	Index(ctx context.Context, from, to uint64, fn func(Stored) bool) error
	// Blocks reads the blocks at positions seqs (ascending), leaving out those evicted.
	Blocks(ctx context.Context, seqs []uint64, fn func(Stored) bool) error
	// IndexAt is the position of the first entry stored at or after t (Bounds' last+1 when none).
	IndexAt(ctx context.Context, t time.Time) (uint64, error)
	// Bounds are the positions of the first and last entries of the index.
	Bounds(ctx context.Context) (first, last uint64, err error)
	// Follow calls fn with every block stored from now on, until ctx ends.
	Follow(ctx context.Context, fn func(Stored)) error
}

// Callback is an accepted callback, as the intake reports it.
type Callback struct {
	EventID    string
	ReceivedAt time.Time
	RequestID  string
	App        string // SdkAppid
	Command    string
	Query      string // as received: the log keeps it without Sign and RequestTime
	Body       []byte
	// Fields is the decoded body, read only by the log's goroutine (for the indexed
	// fields): the caller must not change it once handed over.
	Fields     map[string]any
	Routes     []string
	Deliveries []Delivery
	Respond    string // the destination of the matched respond rule, "" when none
	// Duplicate: the same callback was stored within the dedup window; only the fact
	// that it came again is recorded.
	Duplicate bool
}

// Attempt is one HTTP attempt, as the Sender reports it.
type Attempt struct {
	EventID, Destination string
	Number               int // Fanout-Attempt
	Status               int // 0 when no answer came back
	Result               string
	Started              time.Time
	Took                 time.Duration
	Err                  error // nil when delivered
	Respond              bool  // a respond rule's synchronous exchange, not a delivery
}

// End is how a round of attempts ended: a retry is due, or the delivery is dead, or
// blocked. (A delivery shows in its 2xx attempt; it needs no record of its own.)
type End struct {
	EventID, Destination string
	At                   time.Time // when the round ended; zero: when Ended is called
	Dead                 bool
	// Blocked, with Dead: the delivery gave up at the head of its ordered lane and holds
	// it until an operator retries or skips it (on_exhausted: block), not a dead letter.
	Blocked bool
	Attempt int       // the last attempt made
	Due     time.Time // retrying: the next attempt
	Reason  string    // dead and blocked: why
}

// Options configure New.
type Options struct {
	// Index are the body fields a callback can be found by.
	Index []string
	// Buffer is the number of records held while the store is slow (0: DefaultBuffer).
	Buffer int
	Logger *slog.Logger // nil = slog.Default()
}

// DefaultBuffer is the records held in memory, at most, while the store is slow: seconds of
// a gateway taking a thousand callbacks a second.
const DefaultBuffer = 16384

// maxBufferBytes bounds the memory the buffered records hold (callbacks hold their body).
const maxBufferBytes = 64 << 20

// dropReportEvery is how often a log line reports the records dropped meanwhile.
const dropReportEvery = 10 * time.Second

// Log is the event log: the writer of the records and the reader that searches them.
// The methods of a nil *Log do nothing, so that a gateway with the log off calls them
// as they are.
type Log struct {
	store   Store
	records int // the most records in a block: maxBlockRecords
	index   []string
	indexed map[string]bool
	log     *slog.Logger
	cache   entryCache

	ch       chan item
	done     chan struct{} // Close began
	finished chan struct{} // the writer returned
	started  atomic.Bool
	closed   atomic.Bool
	once     sync.Once

	linger      time.Duration // the writer: how long a block waits for records
	fields      []Field       // the writer: the indexed fields of the record at hand
	failing     bool          // the writer: a write failed while closing
	buffered    atomic.Int64  // bytes the buffered records hold, about
	bufferFull  atomic.Uint64
	writeFailed atomic.Uint64
	lastErrMu   sync.Mutex
	lastErr     string
}

// item is one record waiting in the buffer: exactly one field is set.
type item struct {
	cb     *Callback
	att    *Attempt
	end    *End
	replay *Entry
}

// New returns a log writing to store once Start runs; records handed to it before are
// buffered (and dropped past the buffer).
func New(store Store, o Options) *Log {
	n := o.Buffer
	if n <= 0 {
		n = DefaultBuffer
	}
	l := &Log{store: store, records: maxBlockRecords, linger: blockLinger, index: o.Index, indexed: map[string]bool{}, log: o.Logger,
		ch: make(chan item, n), done: make(chan struct{}), finished: make(chan struct{})}
	if l.log == nil {
		l.log = slog.Default()
	}
	l.log = l.log.With("component", "event_log")
	for _, f := range o.Index {
		l.indexed[f] = true
	}
	return l
}

// Start starts the goroutine that writes the buffered records.
func (l *Log) Start() {
	if l != nil && !l.started.Swap(true) {
		go l.run()
	}
}

// Close stops taking records, writes those buffered and waits, until ctx ends, for the
// store to have them. It is idempotent.
func (l *Log) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	var err error
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.done)
		if l.started.Load() {
			select {
			case <-l.finished:
			case <-ctx.Done():
				err = ctx.Err()
				return
			}
		}
		err = l.store.Flush(ctx)
	})
	return err
}

// Dropped returns the records dropped so far: those that found the buffer full, and those
// the store refused or could not be sent.
func (l *Log) Dropped() (bufferFull, writeFailed uint64) {
	if l == nil {
		return 0, 0
	}
	return l.bufferFull.Load(), l.writeFailed.Load()
}

// Failed counts the records of a block the store refused after it was sent: the Store
// calls it.
func (l *Log) Failed(records int, err error) {
	if l == nil {
		return
	}
	l.writeFailed.Add(uint64(records))
	l.lastErrMu.Lock()
	l.lastErr = err.Error()
	l.lastErrMu.Unlock()
}

// Received records an accepted callback. It never blocks.
func (l *Log) Received(cb *Callback) {
	if l != nil {
		l.put(item{cb: cb})
	}
}

// Attempted records an HTTP attempt. It never blocks.
func (l *Log) Attempted(a Attempt) {
	if l != nil {
		l.put(item{att: &a})
	}
}

// Ended records how a round of attempts ended. It never blocks.
func (l *Log) Ended(e End) {
	if l != nil {
		if e.At.IsZero() {
			e.At = time.Now()
		}
		l.put(item{end: &e})
	}
}

// Replayed records that callback eventID was queued again for destination at the moment
// at, taken before the copy was queued. It never blocks.
func (l *Log) Replayed(eventID, destination string, reroute bool, at time.Time) {
	if l != nil {
		l.put(item{replay: &Entry{At: at, EventID: eventID, Kind: KindReplayed, Destination: destination, Reroute: reroute}})
	}
}

func (l *Log) put(it item) {
	if l.closed.Load() {
		return
	}
	size := it.size()
	if l.buffered.Add(size) > maxBufferBytes {
		l.buffered.Add(-size)
		l.bufferFull.Add(1)
		return
	}
	select {
	case l.ch <- it:
	default:
		l.buffered.Add(-size)
		l.bufferFull.Add(1)
	}
}

// size is about the memory it holds while buffered.
func (it item) size() int64 {
	if it.cb != nil {
		return int64(256 + len(it.cb.Body) + len(it.cb.Query))
	}
	return 256
}

// run writes the buffered records until Close, then those still buffered, a block at a
// time; every dropReportEvery it logs the records dropped meanwhile.
func (l *Log) run() {
	defer close(l.finished)
	tick := time.NewTicker(dropReportEvery)
	defer tick.Stop()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var reported [2]uint64
	report := func() {
		full, failed := l.Dropped()
		if full == reported[0] && failed == reported[1] {
			return
		}
		l.lastErrMu.Lock()
		last := l.lastErr
		l.lastErrMu.Unlock()
		l.log.Warn("event log: records dropped: the store is slow or unreachable; callbacks and deliveries are not affected",
			"buffer_full", full-reported[0], "write_failed", failed-reported[1], "last_error", last)
		reported = [2]uint64{full, failed}
	}
	b := newBlockBuilder(l.records)
	for {
		select {
		case it := <-l.ch:
			// The first record of a moment: the others that come within the linger are
			// taken every blockLinger at most, rather than the writer waking for each of
			// them, and the block is written when the linger ends (or once full).
			l.take(b, it)
			n, end := 1, time.Now().Add(l.linger)
			for wait := min(l.linger, blockLinger); wait > 0; wait = min(time.Until(end), blockLinger) {
				linger.Reset(wait)
				select {
				case <-linger.C:
				case <-l.done:
					linger.Stop()
					l.closeOut(b)
					report()
					return
				}
				n += l.drain(b)
			}
			l.flush(b)
			// Blocks of a few records, one after the other, would make the index as long
			// as the log: while traffic is light, blocks wait longer for their records.
			if n < lingerFill {
				l.linger = min(2*l.linger, maxLinger)
			} else {
				l.linger = blockLinger
			}
		case <-tick.C:
			report()
		case <-l.done:
			l.closeOut(b)
			report()
			return
		}
	}
}

// take puts a buffered record in block b.
func (l *Log) take(b *blockBuilder, it item) {
	l.add(b, it)
	l.buffered.Add(-it.size())
}

// drain puts the records buffered now in block b (writing it each time it is full), and
// returns how many.
func (l *Log) drain(b *blockBuilder) int {
	for n := 0; n < cap(l.ch); n++ {
		select {
		case it := <-l.ch:
			l.take(b, it)
		default:
			return n
		}
	}
	return cap(l.ch)
}

// closeOut writes what is still buffered at Close, until a write fails: a store that
// fails now would only make each of the others wait its turn to fail, and hold up the
// stop. They are counted instead.
func (l *Log) closeOut(b *blockBuilder) {
	for {
		select {
		case it := <-l.ch:
			if l.failing {
				l.writeFailed.Add(1)
				l.buffered.Add(-it.size())
			} else {
				l.take(b, it)
			}
		default:
			if !l.failing {
				l.flush(b)
			} else if b.records > 0 {
				l.writeFailed.Add(uint64(b.records))
				b.reset()
			}
			return
		}
	}
}

// add puts a buffered record in block b, writing b first when the record does not fit,
// and once it is full.
func (l *Log) add(b *blockBuilder, it item) {
	id, e, body := l.entry(it)
	if !b.fits(256 + len(body) + len(e.Query)) {
		l.flush(b)
	}
	b.add(id, &e, body)
	if b.full() {
		l.flush(b)
	}
}

// flush writes block b and its index entry, and empties it; false says the store refused
// it (its records are counted as failed).
func (l *Log) flush(b *blockBuilder) bool {
	if b.records == 0 {
		return true
	}
	defer b.reset()
	if err := l.store.AppendBlock(b.pack(), b.entry(), b.records); err != nil {
		l.Failed(b.records, err)
		l.failing = l.closed.Load()
		return false
	}
	return true
}

// entry is the record a buffered item makes: its callback, the record, and the body of a
// received record.
func (l *Log) entry(it item) (id string, e Entry, body []byte) {
	switch {
	case it.cb != nil:
		cb := it.cb
		if cb.Duplicate {
			return cb.EventID, Entry{At: cb.ReceivedAt, Kind: KindDuplicate, RequestID: cb.RequestID}, nil
		}
		e = Entry{At: cb.ReceivedAt, Kind: KindReceived, RequestID: cb.RequestID, SdkAppID: cb.App, Command: cb.Command,
			// Sign and RequestTime go: the pair proves a request came from Tencent. A delivery
			// makes them anew (tim_token) or leaves them out, so a replay needs neither.
			Query:  tencentim.Resign(cb.Query, "", time.Time{}),
			Routes: cb.Routes, Deliveries: cb.Deliveries, Respond: cb.Respond, BodySize: len(cb.Body)}
		e.fields = l.fields[:0] // encoded before the next record reuses it
		for _, name := range l.index {
			if v, ok := fieldValue(cb.Fields[name]); ok {
				e.fields = append(e.fields, Field{Name: name, Value: v})
			}
		}
		l.fields = e.fields
		return cb.EventID, e, cb.Body
	case it.att != nil:
		a := it.att
		e = Entry{At: a.Started, Kind: KindAttempt, Destination: a.Destination, Attempt: a.Number, Status: a.Status,
			Result: a.Result, DurationMS: float64(a.Took.Microseconds()) / 1000, RespondTo: a.Respond}
		if a.Err != nil {
			e.Error = a.Err.Error()
		}
		return a.EventID, e, nil
	case it.end != nil:
		x := it.end
		e = Entry{At: x.At, Kind: KindRetrying, Destination: x.Destination, Attempt: x.Attempt, Due: x.Due}
		if x.Dead {
			e.Kind, e.Due, e.Reason = KindDead, time.Time{}, x.Reason
			if x.Blocked {
				e.Kind = KindBlocked
			}
		}
		return x.EventID, e, nil
	}
	e = *it.replay
	e.EventID = ""
	return it.replay.EventID, e, nil
}

// fieldValue is a body field's value as indexed and shown: strings as they are, numbers
// and booleans as JSON writes them. Objects, lists, null and "" are not indexed.
func fieldValue(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != ""
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// Indexed reports whether field is one of the indexed fields.
func (l *Log) Indexed(field string) bool { return l != nil && l.indexed[field] }

// IndexFields are the indexed fields, in config order.
func (l *Log) IndexFields() []string {
	if l == nil {
		return nil
	}
	return l.index
}
