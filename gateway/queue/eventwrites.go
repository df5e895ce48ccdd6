package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// logWriter sends the event log's records and counts the store's answers, without waiting
// for them. It is the jetstream package's asynchronous publish made lean for a record per
// callback and per attempt: every record is a plain publish whose reply subject is one
// subscription of the log's own; an answer frees the record's place and, when it is an
// error, is reported. No future, channel, timer or JSON decoding per record: those were
// most of what writing the log cost the process.
//
// The server answers the records of one connection in order, so the count is all that is
// needed. An answer that never comes (a store that lost its quorum, a connection that
// dropped) would hold its place for good: when every place is held and no answer came for
// ackGiveUp, the places are freed and the records they held counted as failed.
type logWriter struct {
	nc     *nats.Conn
	sub    *nats.Subscription
	inbox  string
	failed func(error)

	places chan struct{} // one held per record sent and not yet answered

	mu       sync.Mutex
	lastSeen time.Time // the last answer, or the first record sent after a quiet time
}

const (
	// logStallWait is how long a record waits for a free place before it fails: the log's
	// buffer then fills and drops, rather than a writer blocking on a slow store.
	logStallWait = 200 * time.Millisecond
	// ackGiveUp is how long the places may all be held with no answer before they are freed.
	ackGiveUp = 10 * time.Second
)

var errNoAnswer = errors.New("no answer from the store")

func newLogWriter(nc *nats.Conn, failed func(error)) (*logWriter, error) {
	w := &logWriter{nc: nc, inbox: nc.NewInbox(), failed: failed, places: make(chan struct{}, eventLogMaxPending), lastSeen: time.Now()}
	sub, err := nc.Subscribe(w.inbox, w.answered)
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil { // bounded by places already
		return nil, err
	}
	w.sub = sub
	return w, nil
}

// publish sends a record to subject, holding a place until the store answers.
func (w *logWriter) publish(subject string, data []byte) error {
	select {
	case w.places <- struct{}{}:
	default:
		t := time.NewTimer(logStallWait)
		defer t.Stop()
		select {
		case w.places <- struct{}{}:
		case <-t.C:
			w.giveUpIfSilent()
			return fmt.Errorf("%d records sent and not yet stored: the store is slow", eventLogMaxPending)
		}
	}
	if len(w.places) == 1 { // the first after a quiet time: the wait for an answer starts now
		w.mu.Lock()
		w.lastSeen = time.Now()
		w.mu.Unlock()
	}
	if err := w.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: w.inbox, Data: data}); err != nil {
		<-w.places
		return err
	}
	return nil
}

// answered takes one answer of the store: a place is free again.
func (w *logWriter) answered(m *nats.Msg) {
	select {
	case <-w.places:
	default: // its place was given up already
	}
	w.mu.Lock()
	w.lastSeen = time.Now()
	w.mu.Unlock()
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		w.failed(fmt.Errorf("the store answered %s %s", m.Header.Get("Status"), m.Header.Get("Description")))
		return
	}
	if i := bytes.Index(m.Data, []byte(`"description":"`)); i >= 0 && bytes.Contains(m.Data, []byte(`"error"`)) {
		desc := m.Data[i+len(`"description":"`):]
		if j := bytes.IndexByte(desc, '"'); j >= 0 {
			desc = desc[:j]
		}
		w.failed(fmt.Errorf("the store refused a record: %s", desc))
	}
}

// giveUpIfSilent frees every place when no answer came for ackGiveUp, counting the records
// they held as failed.
func (w *logWriter) giveUpIfSilent() {
	w.mu.Lock()
	silent := time.Since(w.lastSeen) >= ackGiveUp
	if silent {
		w.lastSeen = time.Now()
	}
	w.mu.Unlock()
	if !silent {
		return
	}
	for {
		select {
		case <-w.places:
			w.failed(errNoAnswer)
		default:
			return
		}
	}
}

// flush waits until every record sent is answered, or ctx ends.
func (w *logWriter) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, closeFlushTimeout)
		defer cancel()
	}
	if err := w.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("%d records unanswered: %w", len(w.places), err)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for len(w.places) > 0 {
		if !w.nc.IsConnected() { // the answers will not come
			return fmt.Errorf("%d records unanswered: %w", len(w.places), nats.ErrDisconnected)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d records unanswered: %w", len(w.places), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
