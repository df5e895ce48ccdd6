package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// logWriter sends the event log's blocks and their index entries, and counts the store's
// answers, without waiting for them. A block is a plain publish whose reply subject names
// it (<inbox>.b.<n>); its answer carries the block's position, with which the writer sends
// the block's index entry (<inbox>.i.<n>); the entry's answer frees the block's place. An
// error at either step is reported with the block's records. No future, timer or JSON
// decoding per message.
//
// An answer that never comes (a store that lost its quorum, a connection that dropped)
// would hold its place for good: when every place is held and no answer came for
// ackGiveUp, the places are freed and the records they held counted as failed.
type logWriter struct {
	nc     *nats.Conn
	sub    *nats.Subscription
	inbox  string
	failed func(records int, err error)

	places chan struct{} // one held per block sent and not yet indexed

	mu       sync.Mutex
	next     uint64                  // the number of the next block
	pending  map[uint64]pendingBlock // the blocks holding a place, by number
	lastSeen time.Time               // the last answer, or the first block sent after a quiet time
}

// pendingBlock is a block sent and not yet indexed: the entry to send once it is stored.
type pendingBlock struct {
	index   []byte
	records int
}

const (
	// logStallWait is how long a block waits for a free place before it fails: the log's
	// buffer then fills and drops, rather than a writer blocking on a slow store.
	logStallWait = 200 * time.Millisecond
	// ackGiveUp is how long the places may all be held with no answer before they are freed.
	ackGiveUp = 10 * time.Second
)

var errNoAnswer = errors.New("no answer from the store")

func newLogWriter(nc *nats.Conn, failed func(int, error)) (*logWriter, error) {
	w := &logWriter{nc: nc, inbox: nc.NewInbox(), failed: failed, places: make(chan struct{}, eventLogMaxPending),
		pending: map[uint64]pendingBlock{}, lastSeen: time.Now()}
	sub, err := nc.Subscribe(w.inbox+".>", w.answered)
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil { // bounded by places already
		return nil, err
	}
	w.sub = sub
	return w, nil
}

// publish sends a block, holding a place until the store has it and its index entry.
func (w *logWriter) publish(block, index []byte, records int) error {
	select {
	case w.places <- struct{}{}:
	default:
		t := time.NewTimer(logStallWait)
		defer t.Stop()
		select {
		case w.places <- struct{}{}:
		case <-t.C:
			w.giveUpIfSilent()
			return fmt.Errorf("%d blocks sent and not yet stored: the store is slow", eventLogMaxPending)
		}
	}
	w.mu.Lock()
	if len(w.pending) == 0 { // the first after a quiet time: the wait for an answer starts now
		w.lastSeen = time.Now()
	}
	n := w.next
	w.next++
	w.pending[n] = pendingBlock{index: bytes.Clone(index), records: records}
	w.mu.Unlock()
	if err := w.nc.PublishMsg(&nats.Msg{Subject: blocksSubject, Reply: w.inbox + ".b." + strconv.FormatUint(n, 10), Data: block}); err != nil {
		w.done(n)
		return err
	}
	return nil
}

// done forgets block n and frees its place; false when it was forgotten already.
func (w *logWriter) done(n uint64) (pendingBlock, bool) {
	w.mu.Lock()
	p, ok := w.pending[n]
	delete(w.pending, n)
	w.mu.Unlock()
	if ok {
		<-w.places
	}
	return p, ok
}

// answered takes one answer of the store: to a block, whose index entry it then sends,
// or to an entry, whose block's place is free again.
func (w *logWriter) answered(m *nats.Msg) {
	step, num, _ := strings.Cut(strings.TrimPrefix(m.Subject, w.inbox+"."), ".")
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	w.lastSeen = time.Now()
	p, ok := w.pending[n]
	w.mu.Unlock()
	if !ok {
		return // its place was given up already
	}
	if err := answerError(m); err != nil {
		w.done(n)
		w.failed(p.records, err)
		return
	}
	if step != "b" {
		w.done(n)
		return
	}
	seq, ok := ackSeq(m.Data)
	if !ok {
		w.done(n)
		w.failed(p.records, fmt.Errorf("the store answered a block without its position: %q", m.Data))
		return
	}
	entry := &nats.Msg{Subject: indexSubject, Reply: w.inbox + ".i." + num, Header: nats.Header{blockHeader: []string{strconv.FormatUint(seq, 10)}}, Data: p.index}
	if err := w.nc.PublishMsg(entry); err != nil {
		w.done(n)
		w.failed(p.records, err)
	}
}

// answerError is the error an answer of the store reports, nil when it took the message.
func answerError(m *nats.Msg) error {
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		return fmt.Errorf("the store answered %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
	}
	if i := bytes.Index(m.Data, []byte(`"description":"`)); i >= 0 && bytes.Contains(m.Data, []byte(`"error"`)) {
		desc := m.Data[i+len(`"description":"`):]
		if j := bytes.IndexByte(desc, '"'); j >= 0 {
			desc = desc[:j]
		}
		return fmt.Errorf("the store refused a block: %s", desc)
	}
	return nil
}

// ackSeq reads the stream position out of a publish acknowledgement.
func ackSeq(data []byte) (uint64, bool) {
	_, rest, ok := bytes.Cut(data, []byte(`"seq":`))
	if !ok {
		return 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	seq, err := strconv.ParseUint(string(rest[:end]), 10, 64)
	return seq, err == nil && seq > 0
}

// giveUpIfSilent frees every place when no answer came for ackGiveUp, counting the records
// the blocks held as failed.
func (w *logWriter) giveUpIfSilent() {
	w.mu.Lock()
	silent := time.Since(w.lastSeen) >= ackGiveUp
	var lost []pendingBlock
	if silent {
		w.lastSeen = time.Now()
		for n, p := range w.pending {
			lost = append(lost, p)
			delete(w.pending, n)
			<-w.places
		}
	}
	w.mu.Unlock()
	for _, p := range lost {
		w.failed(p.records, errNoAnswer)
	}
}

// flush waits until every block sent is stored and indexed, or ctx ends.
func (w *logWriter) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, closeFlushTimeout)
		defer cancel()
	}
	if err := w.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("%d blocks unanswered: %w", len(w.places), err)
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for len(w.places) > 0 {
		if !w.nc.IsConnected() { // the answers will not come
			return fmt.Errorf("%d blocks unanswered: %w", len(w.places), nats.ErrDisconnected)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d blocks unanswered: %w", len(w.places), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
