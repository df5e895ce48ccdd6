package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The event log's store: the stream FANOUT_EVENTS, beside the jobs and the dead letters.
// It holds history only (what happened to each callback), never a delivery, so that its
// limits (age, size, discard old) can evict anything in it without losing a job.
//
// Its subjects are its indexes, answered from JetStream's subject index instead of a scan:
//
//	fanout.events.<event id>   every record of one callback: received, attempts, outcomes
//	fanout.index.<key>         one entry per callback whose indexed field has the value
//	                           the key stands for (a hash of field=value, made by the caller)
//
// Reading one subject is a lookup whatever the size of the log. The price is memory in
// the JetStream server: its subject index keeps an entry per distinct subject, and a logged
// callback that carries a MsgKey makes two (about 650 bytes together in BenchmarkSearch).
const (
	eventsStream       = "FANOUT_EVENTS"
	eventSubjectPrefix = "fanout.events."
	indexSubjectPrefix = "fanout.index."

	// eventLogMaxPending caps the records sent and not yet acknowledged. Past it a write
	// waits a moment and fails: the caller's buffer then fills and drops, rather than
	// records piling up in the connection while the store is slow.
	eventLogMaxPending = 4096
	// directBatch and directMaxBytes bound one read of the log.
	directBatch    = 512
	directMaxBytes = 4 << 20
	// directWait bounds the wait for one read's answer.
	directWait = 10 * time.Second
)

// LogRecord is one record of the event log as stored: Seq is its position in the log (the
// stream sequence), Time when the store took it, EventID the callback it belongs to (""
// for an index entry), Index the key of an index entry ("" for an event record).
//
// It is an unnamed struct, the same as gateway/eventlog's Stored, so that *EventLog is an
// eventlog.Store as it is: the event log's model stays free of NATS, and this package of it.
type LogRecord = struct {
	Seq     uint64
	Time    time.Time
	EventID string
	Index   string
	Data    []byte
}

// LogState is the extent of the log.
type LogState struct {
	FirstSeq, LastSeq uint64
	Records           uint64
	Bytes             uint64
}

// EventLogOptions configure OpenEventLog.
type EventLogOptions struct {
	MaxAge   time.Duration
	MaxBytes int64
	// Failed is told of every record the store refused after Append sent it (the write is
	// asynchronous): full, unreachable, or no acknowledgement in time.
	Failed func(err error)
}

// EventLog is the event log's stream, written asynchronously on a connection of its own,
// so that its traffic never queues in front of a job's write or acknowledgement. It is
// safe for concurrent use.
type EventLog struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	w      *logWriter

	closeOnce sync.Once
	closing   chan struct{}
}

// OpenEventLog creates or updates the event log's stream with o's limits and connects to it.
func (q *Queue) OpenEventLog(ctx context.Context, o EventLogOptions) (*EventLog, error) {
	if o.MaxAge <= 0 || o.MaxBytes <= 0 {
		return nil, fmt.Errorf("queue: event log: max age %s and max bytes %d must be positive", o.MaxAge, o.MaxBytes)
	}
	l := &EventLog{closing: make(chan struct{})}
	var err error
	if q.srv != nil {
		l.nc, err = nats.Connect("", nats.InProcessServer(q.srv), nats.Name("fanout-events"))
	} else {
		l.nc, err = connectExternal(q.opts, q.log.With("connection", "events"))
	}
	if err != nil {
		return nil, fmt.Errorf("queue: event log: connect: %w", err)
	}
	failed := o.Failed
	if failed == nil {
		failed = func(error) {}
	}
	l.w, err = newLogWriter(l.nc, failed)
	if err == nil {
		l.js, err = jetstream.New(l.nc)
	}
	replicas := max(q.opts.Replicas, 1)
	persist := jetstream.DefaultPersistMode
	if replicas == 1 {
		// Written to disk in batches rather than one write per record: the log is history,
		// and a crash may take its last moments (a replicated stream flushes so anyway).
		persist = jetstream.AsyncPersistMode
	}
	if err == nil {
		l.stream, err = l.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        eventsStream,
			Description: "Fanout event log: callbacks, routes and delivery attempts, kept for tracing and backfills",
			Subjects:    []string{eventSubjectPrefix + "*", indexSubjectPrefix + "*"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      o.MaxAge,
			MaxBytes:    o.MaxBytes,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			PersistMode: persist,
			// Reads are direct gets, by subject and in batches: no consumer per lookup.
			AllowDirect: true,
			Duplicates:  dedupWindow(0), // records carry no message id
		})
	}
	if err != nil {
		l.nc.Close()
		return nil, fmt.Errorf("queue: create or update stream %s: %w", eventsStream, err)
	}
	return l, nil
}

// Append stores a record of the callback eventID without waiting for the store: its
// failure, if any, goes to EventLogOptions.Failed. The error is for a record that could
// not even be sent (closed, disconnected, too many records unacknowledged).
func (l *EventLog) Append(eventID string, data []byte) error {
	if err := checkLogToken(eventID); err != nil {
		return fmt.Errorf("queue: event log: event id %q: %w", eventID, err)
	}
	return l.publish(eventSubjectPrefix+eventID, data)
}

// AppendIndex stores an index entry under key, as Append does.
func (l *EventLog) AppendIndex(key string, data []byte) error {
	if err := checkLogToken(key); err != nil {
		return fmt.Errorf("queue: event log: index key %q: %w", key, err)
	}
	return l.publish(indexSubjectPrefix+key, data)
}

func (l *EventLog) publish(subject string, data []byte) error {
	if err := l.w.publish(subject, data); err != nil {
		return fmt.Errorf("queue: event log: %w", err)
	}
	return nil
}

// checkLogToken refuses what cannot be one subject token.
func checkLogToken(s string) error {
	if s == "" || strings.ContainsAny(s, ".*> \t\r\n") {
		return errors.New("not a subject token")
	}
	return nil
}

// Flush waits until the store has answered every record sent, or ctx ends.
func (l *EventLog) Flush(ctx context.Context) error {
	if err := l.w.flush(ctx); err != nil {
		return fmt.Errorf("queue: event log: flush: %w", err)
	}
	return nil
}

// Close ends every Follow and closes the log's connection; records not yet acknowledged
// may be lost (Flush first). It is idempotent.
func (l *EventLog) Close() {
	l.closeOnce.Do(func() {
		close(l.closing)
		l.nc.Close()
	})
}

// State returns the extent of the log.
func (l *EventLog) State(ctx context.Context) (LogState, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return LogState{}, fmt.Errorf("queue: event log: %w", err)
	}
	s := info.State
	return LogState{FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, Records: s.Msgs, Bytes: s.Bytes}, nil
}

// Bounds returns the positions of the first and last records of the log.
func (l *EventLog) Bounds(ctx context.Context) (first, last uint64, err error) {
	st, err := l.State(ctx)
	return st.FirstSeq, st.LastSeq, err
}

// Event calls fn with every record of the callback eventID, oldest first, until fn
// returns false. A callback the log does not know has none.
func (l *EventLog) Event(ctx context.Context, eventID string, fn func(LogRecord) bool) error {
	if checkLogToken(eventID) != nil {
		return nil
	}
	return l.read(ctx, eventSubjectPrefix+eventID, 0, 0, fn)
}

// Index calls fn with the entries under key whose position is in [from, to) (0: no
// bound), oldest first, until fn returns false.
func (l *EventLog) Index(ctx context.Context, key string, from, to uint64, fn func(LogRecord) bool) error {
	if checkLogToken(key) != nil {
		return nil
	}
	return l.read(ctx, indexSubjectPrefix+key, from, to, fn)
}

// Scan calls fn with every event record (index entries left out) whose position is in
// [from, to) (to 0: up to the end), in order, until fn returns false.
func (l *EventLog) Scan(ctx context.Context, from, to uint64, fn func(LogRecord) bool) error {
	return l.read(ctx, eventSubjectPrefix+"*", max(from, 1), to, fn)
}

// SeqAt is the position of the first record stored at or after t: the state's LastSeq+1
// when there is none.
func (l *EventLog) SeqAt(ctx context.Context, t time.Time) (uint64, error) {
	var seq uint64
	found := false
	_, _, err := l.direct(ctx, directGetRequest{StartTime: &t, Batch: 1}, func(r LogRecord) bool {
		seq, found = r.Seq, true
		return false
	})
	if err != nil || found {
		return seq, err
	}
	st, err := l.State(ctx)
	return st.LastSeq + 1, err
}

// Follow calls fn with every event record stored from now on, in order, until ctx ends or
// the log closes. It returns nil then, or the error that stopped it.
func (l *EventLog) Follow(ctx context.Context, fn func(LogRecord)) error {
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return fmt.Errorf("queue: event log: follow: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("queue: event log: follow: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	go func() {
		select {
		case <-l.closing:
			it.Stop()
		case <-ctx.Done():
		}
	}()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("queue: event log: follow: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		r := LogRecord{Seq: meta.Sequence.Stream, Time: meta.Timestamp, Data: m.Data()}
		if id, ok := strings.CutPrefix(m.Subject(), eventSubjectPrefix); ok {
			r.EventID = id
			fn(r)
		}
	}
}

// read calls fn with the records on subject ("" for every subject) whose position is in
// [from, to), in batches of direct gets, until fn returns false or there are no more.
func (l *EventLog) read(ctx context.Context, subject string, from, to uint64, fn func(LogRecord) bool) error {
	seq := from
	for {
		stopped := false
		last, more, err := l.direct(ctx, directGetRequest{Seq: seq, NextFor: subject, Batch: directBatch, MaxBytes: directMaxBytes},
			func(r LogRecord) bool {
				if to > 0 && r.Seq >= to {
					stopped = true
					return false
				}
				if !fn(r) {
					stopped = true
					return false
				}
				return true
			})
		if err != nil || stopped || !more || last == 0 {
			return err
		}
		seq = last + 1
	}
}

// directGetRequest is the body of a direct get ($JS.API.DIRECT.GET.<stream>).
type directGetRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	MaxBytes  int        `json:"max_bytes,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// direct makes one batch direct get and calls fn with each record answered until it
// returns false. It returns the position of the last record read and whether the log has
// more matching records after it.
func (l *EventLog) direct(ctx context.Context, req directGetRequest, fn func(LogRecord) bool) (last uint64, more bool, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, directWait)
		defer cancel()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, false, err
	}
	// A channel sized for one batch and its end: a synchronous subscription would make one
	// of 64Ki places for every read.
	inbox, answers := l.nc.NewInbox(), make(chan *nats.Msg, max(req.Batch, 1)+2)
	sub, err := l.nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return 0, false, fmt.Errorf("queue: event log: read: %w", err)
	}
	defer sub.Unsubscribe()
	if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+eventsStream, inbox, body); err != nil {
		return 0, false, fmt.Errorf("queue: event log: read: %w", err)
	}
	for {
		var m *nats.Msg
		select {
		case m = <-answers:
		case <-ctx.Done():
			return last, false, fmt.Errorf("queue: event log: read: %w", ctx.Err())
		}
		if status := m.Header.Get("Status"); status != "" && len(m.Data) == 0 {
			switch status {
			case "204": // the end of the batch
				np, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				return last, np > 0, nil
			case "404": // nothing (more) matches
				return last, false, nil
			case "503":
				return last, false, fmt.Errorf("queue: event log: read: %w", nats.ErrNoResponders)
			}
			return last, false, fmt.Errorf("queue: event log: read: status %s %s", status, m.Header.Get("Description"))
		}
		r, err := directRecord(m)
		if err != nil {
			return last, false, fmt.Errorf("queue: event log: read: %w", err)
		}
		last = r.Seq
		if !fn(r) {
			return last, true, nil
		}
		if req.Batch <= 1 {
			// A single get has no end-of-batch marker.
			return last, true, nil
		}
	}
}

// directRecord reads a record out of a direct get's answer.
func directRecord(m *nats.Msg) (LogRecord, error) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return LogRecord{}, fmt.Errorf("answer without a sequence: %w", err)
	}
	at, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return LogRecord{}, fmt.Errorf("answer without a time: %w", err)
	}
	r := LogRecord{Seq: seq, Time: at, Data: m.Data}
	subject := m.Header.Get(jetstream.SubjectHeader)
	if id, ok := strings.CutPrefix(subject, eventSubjectPrefix); ok {
		r.EventID = id
	} else if key, ok := strings.CutPrefix(subject, indexSubjectPrefix); ok {
		r.Index = key
	}
	return r, nil
}
