// Package eventlog owns the event log's model and logic: what is recorded of a callback
// (received, its routes and destinations, every delivery attempt, each round's end, the
// replays), how the records of one callback add up to where its deliveries stand, how
// callbacks are searched (by indexed field, or by time with filters), selected for a replay,
// and followed live.
//
// It writes without waiting: the callback path and the delivery workers hand records to
// a bounded buffer, and one goroutine sends them to the Store, which does not wait for the
// store's answers either. A record that finds the buffer full, or that the store refuses,
// is dropped and counted: the log never slows or fails a callback or a delivery.
//
// The storage is behind Store (gateway/queue's EventLog, on JetStream, which the gateway
// adapts): this package speaks no NATS, serves no HTTP and evaluates no rules. Its types
// are the admin API's JSON for the event endpoints.
package eventlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// Stored is one record as the Store keeps it: Seq is its position in the log, Time when
// the store took it, EventID the callback it belongs to ("" for an index entry), Index the
// key of an index entry.
//
// It is an unnamed struct, the same as gateway/queue's LogRecord, so that the queue's
// EventLog is a Store as it is, and this package imports no NATS.
type Stored = struct {
	Seq     uint64
	Time    time.Time
	EventID string
	Index   string
	Data    []byte
}

// Store keeps the records: gateway/queue's EventLog. Appends do not wait for the store;
// reads call fn for each record in log order until it returns false.
type Store interface {
	Append(eventID string, data []byte) error
	AppendIndex(key string, data []byte) error
	Flush(ctx context.Context) error
	// Event reads every record of one callback.
	Event(ctx context.Context, eventID string, fn func(Stored) bool) error
	// Index reads the entries under key whose position is in [from, to) (0: no bound).
	Index(ctx context.Context, key string, from, to uint64, fn func(Stored) bool) error
	// Scan reads every event record whose position is in [from, to) (to 0: to the end).
	Scan(ctx context.Context, from, to uint64, fn func(Stored) bool) error
	// SeqAt is the position of the first record stored at or after t (Bounds' last+1 when none).
	SeqAt(ctx context.Context, t time.Time) (uint64, error)
	Bounds(ctx context.Context) (first, last uint64, err error)
	// Follow calls fn with every event record stored from now on, until ctx ends.
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

// End is how a round of attempts ended: a retry is due, or the delivery is dead. (A
// delivery shows in its 2xx attempt; it needs no record of its own.)
type End struct {
	EventID, Destination string
	At                   time.Time // when the round ended; zero: when Ended is called
	Dead                 bool
	Attempt              int       // the last attempt made
	Due                  time.Time // retrying: the next attempt
	Reason               string    // dead: why
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
	index   []string
	indexed map[string]bool
	log     *slog.Logger

	ch       chan item
	done     chan struct{} // Close began
	finished chan struct{} // the writer returned
	started  atomic.Bool
	closed   atomic.Bool
	once     sync.Once

	buffered    atomic.Int64 // bytes the buffered records hold, about
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
	l := &Log{store: store, index: o.Index, indexed: map[string]bool{}, log: o.Logger,
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

// Failed counts a record the store refused after it was sent: the Store calls it.
func (l *Log) Failed(err error) {
	if l == nil {
		return
	}
	l.writeFailed.Add(1)
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

// run writes the buffered records until Close, then those still buffered; every
// dropReportEvery it logs the records dropped meanwhile.
func (l *Log) run() {
	defer close(l.finished)
	tick := time.NewTicker(dropReportEvery)
	defer tick.Stop()
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
	for {
		select {
		case it := <-l.ch:
			l.write(it)
			l.buffered.Add(-it.size())
		case <-tick.C:
			report()
		case <-l.done:
			// What is still buffered is written, until a write fails: a store that fails
			// now would only make each of the others wait its turn to fail, and hold up
			// the stop. They are counted instead.
			failing := false
			for {
				select {
				case it := <-l.ch:
					if failing {
						l.writeFailed.Add(1)
					} else {
						failing = !l.write(it)
					}
					l.buffered.Add(-it.size())
				default:
					report()
					return
				}
			}
		}
	}
}

// write writes one buffered record; false says the store refused it (or one of them).
func (l *Log) write(it item) bool {
	var (
		id string
		e  Entry
	)
	switch {
	case it.cb != nil:
		return l.writeCallback(it.cb)
	case it.att != nil:
		a := it.att
		id = a.EventID
		e = Entry{At: a.Started, Kind: KindAttempt, Destination: a.Destination, Attempt: a.Number, Status: a.Status,
			Result: a.Result, DurationMS: float64(a.Took.Microseconds()) / 1000, RespondTo: a.Respond}
		if a.Err != nil {
			e.Error = a.Err.Error()
		}
	case it.end != nil:
		x := it.end
		id = x.EventID
		e = Entry{At: x.At, Kind: KindRetrying, Destination: x.Destination, Attempt: x.Attempt, Due: x.Due}
		if x.Dead {
			e.Kind, e.Due, e.Reason = KindDead, time.Time{}, x.Reason
		}
	case it.replay != nil:
		id, e = it.replay.EventID, *it.replay
		e.EventID = ""
	}
	return l.append(id, &e, nil)
}

// writeCallback writes a callback's received record and its index entries.
func (l *Log) writeCallback(cb *Callback) bool {
	if cb.Duplicate {
		return l.append(cb.EventID, &Entry{At: cb.ReceivedAt, Kind: KindDuplicate, RequestID: cb.RequestID}, nil)
	}
	e := Entry{At: cb.ReceivedAt, Kind: KindReceived, RequestID: cb.RequestID, SdkAppID: cb.App, Command: cb.Command,
		// Sign and RequestTime go: the pair proves a request came from Tencent. A delivery
		// makes them anew (tim_token) or leaves them out, so a replay needs neither.
		Query:  tencentim.Resign(cb.Query, "", time.Time{}),
		Routes: cb.Routes, Deliveries: cb.Deliveries, Respond: cb.Respond, BodySize: len(cb.Body)}
	for _, name := range l.index {
		if v, ok := fieldValue(cb.Fields[name]); ok {
			e.fields = append(e.fields, Field{Name: name, Value: v})
		}
	}
	if !l.append(cb.EventID, &e, cb.Body) {
		return false
	}
	entry := encodeIndexEntry(cb.EventID, cb.ReceivedAt)
	for i, f := range e.fields {
		if err := l.store.AppendIndex(indexKey(f.Name, f.Value), entry); err != nil {
			l.Failed(err)
			l.writeFailed.Add(uint64(len(e.fields) - i - 1)) // the entries not tried
			return false
		}
	}
	return true
}

func (l *Log) append(id string, e *Entry, body []byte) bool {
	data := encode(make([]byte, 0, 256+len(e.Query)+len(body)), e, body)
	if err := l.store.Append(id, data); err != nil {
		l.Failed(err)
		return false
	}
	return true
}

// indexEntry is the data of an index entry (encodeIndexEntry): the callback the field
// value belongs to.
type indexEntry struct {
	EventID string    `json:"event_id"`
	At      time.Time `json:"at"` // received at
}

// indexKey is the key of the index entries of field = value: a hash, so that any value is
// one subject token of a bounded length.
func indexKey(field, value string) string {
	sum := sha256.Sum256([]byte(field + "=" + value))
	return hex.EncodeToString(sum[:16])
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
