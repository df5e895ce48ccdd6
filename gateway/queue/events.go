package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The event log's store: two streams beside the jobs and the dead letters. They hold
// history only (what happened to each callback), never a delivery, so that their limits
// (age, size, discard old) can evict anything in them without losing a job.
//
//	FANOUT_EVENTLOG        fanout.eventlog.blocks: the blocks of records, each one message
//	FANOUT_EVENTLOG_INDEX  fanout.eventlog.index: one small entry per block, stored once the
//	                       block is, carrying the block's position (header Fanout-Block)
//
// What a block and an entry hold is the caller's (gateway/eventlog): to this package they
// are opaque. A block gathers the records of many callbacks, so that logging costs the
// store a message every few milliseconds rather than several per callback; the entries,
// kept apart from the blocks, are what a search reads to know which blocks to fetch: a
// read of the index never loads the blocks' bytes from disk. Both streams have one subject
// each: the log adds nothing to JetStream's subject index as it grows.
//
// The previous version's stream, FANOUT_EVENTS (a message per record and per indexed
// value), is deleted when the log opens: it is history in a form no longer read, and its
// subject index took memory in proportion to the callbacks it held.
const (
	blocksStream   = "FANOUT_EVENTLOG"
	indexStream    = "FANOUT_EVENTLOG_INDEX"
	blocksSubject  = "fanout.eventlog.blocks"
	indexSubject   = "fanout.eventlog.index"
	oldEventStream = "FANOUT_EVENTS"

	// blockHeader carries, on an index entry, the position of the block it indexes.
	blockHeader = "Fanout-Block"

	// indexShare is the part of the log's max bytes given to the index. An entry takes
	// a few bytes per callback and a compressed block often no more than a hundred or two:
	// an index too small for its blocks would evict the entries of blocks still kept, which
	// searches then no longer find.
	indexShare = 8

	// eventLogMaxPending caps the blocks sent and not yet stored with their index entry.
	// Past it a write waits a moment and fails: the caller's buffer then fills and drops,
	// rather than blocks piling up in the connection while the store is slow.
	eventLogMaxPending = 64
	// directBatch and directMaxBytes bound one read of the log.
	directBatch    = 512
	directMaxBytes = 4 << 20
	// directWait bounds the wait for one read's answer.
	directWait = 10 * time.Second
)

// LogRecord is one message of the event log as stored: Seq is its position in its stream
// (a block's in the blocks, an entry's in the index), Time when the store took it, Block
// the position of the block an index entry indexes (0 for a block).
//
// It is an unnamed struct, the same as gateway/eventlog's Stored, so that *EventLog is an
// eventlog.Store as it is: the event log's model stays free of NATS, and this package of it.
type LogRecord = struct {
	Seq   uint64
	Time  time.Time
	Block uint64
	Data  []byte
}

// LogState is the extent of the log: the positions of its index's first and last entries,
// its blocks, and the bytes of both streams.
type LogState struct {
	FirstSeq, LastSeq uint64
	Blocks            uint64
	Bytes             uint64
}

// EventLogOptions configure OpenEventLog.
type EventLogOptions struct {
	MaxAge   time.Duration
	MaxBytes int64
	// Failed is told of every block the store refused after AppendBlock sent it (the
	// write is asynchronous): full, unreachable, or no acknowledgement in time, with the
	// number of records it held.
	Failed func(records int, err error)
}

// EventLog is the event log's streams, written asynchronously on a connection of its own,
// so that its traffic never queues in front of a job's write or acknowledgement. It is
// safe for concurrent use.
type EventLog struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	blocks jetstream.Stream
	index  jetstream.Stream
	w      *logWriter

	closeOnce sync.Once
	closing   chan struct{}
}

// OpenEventLog creates or updates the event log's streams with o's limits and connects to
// them. The index takes an eighth of MaxBytes, the blocks the rest.
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
		failed = func(int, error) {}
	}
	l.w, err = newLogWriter(l.nc, failed)
	if err == nil {
		l.js, err = jetstream.New(l.nc)
	}
	if err != nil {
		l.nc.Close()
		return nil, fmt.Errorf("queue: event log: %w", err)
	}
	if err := l.js.DeleteStream(ctx, oldEventStream); err == nil {
		q.log.Info("event log: deleted the previous version's stream; its history is not carried over", "stream", oldEventStream)
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		q.log.Warn("event log: the previous version's stream could not be deleted", "stream", oldEventStream, "err", err)
	}
	replicas := max(q.opts.Replicas, 1)
	persist := jetstream.DefaultPersistMode
	if replicas == 1 {
		// Written to disk in batches rather than one write per block: the log is history,
		// and a crash may take its last moments (a replicated stream flushes so anyway).
		persist = jetstream.AsyncPersistMode
	}
	indexBytes := max(o.MaxBytes/indexShare, 64<<10)
	for _, s := range []struct {
		stream   *jetstream.Stream
		name     string
		subject  string
		maxBytes int64
		desc     string
	}{
		{&l.blocks, blocksStream, blocksSubject, max(o.MaxBytes-indexBytes, indexBytes), "Fanout event log: callbacks, routes and delivery attempts, kept for tracing and backfills"},
		{&l.index, indexStream, indexSubject, indexBytes, "Fanout event log's index: the callbacks and field values each block of " + blocksStream + " holds"},
	} {
		*s.stream, err = l.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        s.name,
			Description: s.desc,
			Subjects:    []string{s.subject},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      o.MaxAge,
			MaxBytes:    s.maxBytes,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			PersistMode: persist,
			// Reads are direct gets, by position and in batches: no consumer per lookup.
			AllowDirect: true,
			Duplicates:  dedupWindow(0), // blocks carry no message id
		})
		if err != nil {
			l.nc.Close()
			return nil, fmt.Errorf("queue: create or update stream %s: %w", s.name, err)
		}
	}
	return l, nil
}

// AppendBlock stores a block of records, then its index entry, without waiting for the
// store: the entry is sent once the block is stored, with the block's position. A failure
// of either goes to EventLogOptions.Failed with records, the number of records the block
// holds. The error is for a block that could not even be sent (closed, disconnected, too
// many blocks unacknowledged).
func (l *EventLog) AppendBlock(block, index []byte, records int) error {
	if err := l.w.publish(block, index, records); err != nil {
		return fmt.Errorf("queue: event log: %w", err)
	}
	return nil
}

// Flush waits until the store has answered every block and index entry sent, or ctx ends.
func (l *EventLog) Flush(ctx context.Context) error {
	if err := l.w.flush(ctx); err != nil {
		return fmt.Errorf("queue: event log: flush: %w", err)
	}
	return nil
}

// Close ends every Follow and closes the log's connection; blocks not yet acknowledged
// may be lost (Flush first). It is idempotent.
func (l *EventLog) Close() {
	l.closeOnce.Do(func() {
		close(l.closing)
		l.nc.Close()
	})
}

// State returns the extent of the log.
func (l *EventLog) State(ctx context.Context) (LogState, error) {
	bi, err := l.blocks.Info(ctx)
	if err != nil {
		return LogState{}, fmt.Errorf("queue: event log: %w", err)
	}
	ii, err := l.index.Info(ctx)
	if err != nil {
		return LogState{}, fmt.Errorf("queue: event log: %w", err)
	}
	return LogState{FirstSeq: ii.State.FirstSeq, LastSeq: ii.State.LastSeq, Blocks: bi.State.Msgs,
		Bytes: bi.State.Bytes + ii.State.Bytes}, nil
}

// Bounds returns the positions of the first and last entries of the index.
func (l *EventLog) Bounds(ctx context.Context) (first, last uint64, err error) {
	info, err := l.index.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("queue: event log: %w", err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

// Index calls fn with the index entries whose position is in [from, to) (to 0: to the
// end), oldest first, until fn returns false.
func (l *EventLog) Index(ctx context.Context, from, to uint64, fn func(LogRecord) bool) error {
	return l.read(ctx, indexStream, max(from, 1), to, fn)
}

// Blocks calls fn with the blocks at the positions seqs (ascending), in order, until fn
// returns false. A block the log no longer holds is left out.
func (l *EventLog) Blocks(ctx context.Context, seqs []uint64, fn func(LogRecord) bool) error {
	for i := 0; i < len(seqs); {
		// A run of positions close together is one batched read.
		j := i + 1
		for j < len(seqs) && seqs[j]-seqs[j-1] <= 4 {
			j++
		}
		run, k, stopped := seqs[i:j], 0, false
		err := l.read(ctx, blocksStream, run[0], run[len(run)-1]+1, func(r LogRecord) bool {
			for k < len(run) && run[k] < r.Seq {
				k++
			}
			if k < len(run) && run[k] == r.Seq && !fn(r) {
				stopped = true
				return false
			}
			return true
		})
		if err != nil || stopped {
			return err
		}
		i = j
	}
	return nil
}

// IndexAt is the position of the first index entry stored at or after t: the index's last
// position + 1 when there is none.
func (l *EventLog) IndexAt(ctx context.Context, t time.Time) (uint64, error) {
	var seq uint64
	found := false
	_, _, err := l.direct(ctx, indexStream, directGetRequest{StartTime: &t, Batch: 1}, func(r LogRecord) bool {
		seq, found = r.Seq, true
		return false
	})
	if err != nil || found {
		return seq, err
	}
	_, last, err := l.Bounds(ctx)
	return last + 1, err
}

// Follow calls fn with every block stored from now on, in order, until ctx ends or the
// log closes. It returns nil then, or the error that stopped it.
func (l *EventLog) Follow(ctx context.Context, fn func(LogRecord)) error {
	cons, err := l.blocks.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
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
		fn(LogRecord{Seq: meta.Sequence.Stream, Time: meta.Timestamp, Data: m.Data()})
	}
}

// read calls fn with the messages of stream whose position is in [from, to), in batches
// of direct gets, until fn returns false or there are no more.
func (l *EventLog) read(ctx context.Context, stream string, from, to uint64, fn func(LogRecord) bool) error {
	seq := from
	for {
		if to > 0 && seq >= to {
			return nil
		}
		stopped := false
		req := directGetRequest{Seq: seq, Batch: directBatch, MaxBytes: directMaxBytes}
		if to > 0 {
			req.Batch = int(min(to-seq, directBatch))
		}
		last, more, err := l.direct(ctx, stream, req, func(r LogRecord) bool {
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
	Batch     int        `json:"batch,omitempty"`
	MaxBytes  int        `json:"max_bytes,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// direct makes one batch direct get and calls fn with each message answered until it
// returns false. It returns the position of the last message read and whether the stream
// has more after it.
func (l *EventLog) direct(ctx context.Context, stream string, req directGetRequest, fn func(LogRecord) bool) (last uint64, more bool, err error) {
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
	if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
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

// directRecord reads a message out of a direct get's answer.
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
	if b := m.Header.Get(blockHeader); b != "" {
		if r.Block, err = strconv.ParseUint(b, 10, 64); err != nil {
			return LogRecord{}, fmt.Errorf("index entry with a bad %s header %q", blockHeader, b)
		}
	}
	return r, nil
}
