package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// deadLetterRecord is the stored form of a dead letter: JSON, since dead
// letters are few and are read by people (`nats stream view` included).
type deadLetterRecord struct {
	EventID      string    `json:"event_id"`
	Destination  string    `json:"destination"`
	Routes       []string  `json:"routes,omitempty"`
	Query        string    `json:"query,omitempty"`
	Body         []byte    `json:"body"`
	ReceivedAt   time.Time `json:"received_at,omitzero"`
	RequestID    string    `json:"request_id,omitempty"`
	Reason       string    `json:"reason"`
	LastStatus   int       `json:"last_status,omitempty"`
	BodyExcerpt  string    `json:"body_excerpt,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	Attempts     int       `json:"attempts,omitempty"`
	FirstAttempt time.Time `json:"first_attempt,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	DeadAt       time.Time `json:"dead_at"`
	// Ordered and Key: the job's lane, which a replay goes back to.
	Ordered bool   `json:"ordered,omitempty"`
	Key     string `json:"key,omitempty"`
}

func newDeadLetterRecord(j *Job, info DeadLetterInfo, deadAt time.Time) deadLetterRecord {
	return deadLetterRecord{
		EventID:      j.EventID,
		Destination:  j.Destination,
		Routes:       j.Routes,
		Query:        j.Query,
		Body:         j.Body,
		ReceivedAt:   j.ReceivedAt,
		RequestID:    j.RequestID,
		Reason:       clipText(info.Reason, maxTextStored),
		LastStatus:   info.LastStatus,
		BodyExcerpt:  clipText(info.BodyExcerpt, maxExcerptStored),
		LastError:    clipText(info.LastError, maxTextStored),
		Attempts:     info.Attempts,
		FirstAttempt: info.FirstAttempt,
		LastAttempt:  info.LastAttempt,
		DeadAt:       deadAt,
		Ordered:      j.Ordered,
		Key:          j.Key,
	}
}

func (r *deadLetterRecord) deadLetter(id uint64) DeadLetter {
	return DeadLetter{
		ID: id,
		Job: Job{
			EventID:     r.EventID,
			Destination: r.Destination,
			Routes:      r.Routes,
			Query:       r.Query,
			Body:        r.Body,
			ReceivedAt:  r.ReceivedAt,
			RequestID:   r.RequestID,
			Ordered:     r.Ordered,
			Key:         r.Key,
		},
		DeadLetterInfo: DeadLetterInfo{
			Reason:       r.Reason,
			LastStatus:   r.LastStatus,
			BodyExcerpt:  r.BodyExcerpt,
			LastError:    r.LastError,
			Attempts:     r.Attempts,
			FirstAttempt: r.FirstAttempt,
			LastAttempt:  r.LastAttempt,
		},
		DeadAt: r.DeadAt,
	}
}

// decodeDeadLetter turns a stored record into a DeadLetter. A record that
// does not decode is still returned, with its raw bytes as the body and a
// reason saying so, so it can be seen and deleted.
func decodeDeadLetter(id uint64, subject string, data []byte, stored time.Time) DeadLetter {
	var r deadLetterRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return DeadLetter{
			ID:             id,
			Job:            Job{Destination: strings.TrimPrefix(subject, dlqSubjectPrefix), Body: data},
			DeadLetterInfo: DeadLetterInfo{Reason: "undecodable dead letter: " + err.Error()},
			DeadAt:         stored,
		}
	}
	return r.deadLetter(id)
}

// deadLetterID is the dedup id of the dead letter of the job stored at seq:
// a job dead-lettered twice (a crash before its ack, RemoveDestination racing
// a consumer) is stored once within the DLQ's dedup window.
func deadLetterID(j *Job, seq uint64) string {
	return j.EventID + "." + j.Destination + "." + strconv.FormatUint(seq, 10)
}

// publishDeadLetter stores a dead letter and waits for its ack.
func (q *Queue) publishDeadLetter(ctx context.Context, j *Job, seq uint64, info DeadLetterInfo) error {
	if err := checkDestination(j.Destination); err != nil {
		return err
	}
	data, err := json.Marshal(newDeadLetterRecord(j, info, time.Now().UTC()))
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_, err = q.js.PublishMsg(ctx, &nats.Msg{
		Subject: dlqSubjectPrefix + j.Destination,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{deadLetterID(j, seq)}},
		Data:    data,
	})
	return err
}

// DeadLetter stores m in the dead-letter queue with info, waits for that write
// to be acknowledged, then acknowledges m. A crash in between leaves both, and
// m is dead-lettered again on redelivery (stored once within the dedup
// window): nothing is lost.
func (q *Queue) DeadLetter(ctx context.Context, m *Message, info DeadLetterInfo) error {
	if m == nil || m.msg == nil {
		return errNotJetStream
	}
	if m.lane != nil {
		return m.lane.pt.deadLetter(ctx, m.lane, &m.Job, info)
	}
	if err := q.publishDeadLetter(ctx, &m.Job, m.seq, info); err != nil {
		return fmt.Errorf("queue: dead-letter event %s to %q: %w", m.Job.EventID, m.Job.Destination, err)
	}
	if err := m.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("queue: dead-letter event %s to %q: stored, but ack: %w", m.Job.EventID, m.Job.Destination, err)
	}
	return nil
}

// listBatch is how many dead letters ListDeadLetters fetches at once.
const listBatch = 256

// listUnreachableWait and listUnreachableTries bound how long ListDeadLetters waits for the
// consumer it just created to be reachable. On a cluster that consumer lives on one server,
// and the server this connection uses learns of it through the routes a moment later;
// meanwhile a fetch finds no responder.
const (
	listUnreachableWait  = 50 * time.Millisecond
	listUnreachableTries = 40
)

// ListDeadLetters returns up to limit dead letters with an id above after that
// match f, oldest first. next is the id to pass as after for the following
// page, 0 when there is none.
func (q *Queue) ListDeadLetters(ctx context.Context, f DeadLetterFilter, after uint64, limit int) (items []DeadLetter, next uint64, err error) {
	if limit <= 0 {
		return nil, 0, fmt.Errorf("queue: list dead letters: limit %d: must be positive", limit)
	}
	subject := dlqSubjectPrefix + "*"
	if f.Destination != "" {
		if err := checkDestination(f.Destination); err != nil {
			return nil, 0, fmt.Errorf("queue: list dead letters: %w", err)
		}
		subject = dlqSubjectPrefix + f.Destination
	}

	// A short-lived consumer reads the stream in batches from after+1; it is
	// deleted at the end (or by the server after a minute of inactivity).
	cons, err := q.dlq.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Description:       "Fanout dead-letter listing",
		FilterSubject:     subject,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       after + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("queue: list dead letters: %w", err)
	}
	defer q.deleteConsumerQuietly(q.dlq, cons.CachedInfo().Name)

	remaining := cons.CachedInfo().NumPending
	unreachable := 0
	for remaining > 0 {
		batch, err := cons.FetchNoWait(int(min(remaining, listBatch)))
		if err != nil {
			return nil, 0, fmt.Errorf("queue: list dead letters: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, 0, fmt.Errorf("queue: list dead letters: %w", err)
			}
			remaining = meta.NumPending
			dl := decodeDeadLetter(meta.Sequence.Stream, m.Subject(), m.Data(), meta.Timestamp)
			if !f.matches(&dl) {
				continue
			}
			if len(items) == limit {
				// One more match exists: there is a next page.
				return items, items[len(items)-1].ID, nil
			}
			items = append(items, dl)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			if n == 0 && errors.Is(err, nats.ErrNoResponders) && unreachable < listUnreachableTries {
				unreachable++
				select {
				case <-time.After(listUnreachableWait):
					continue
				case <-ctx.Done():
					return nil, 0, fmt.Errorf("queue: list dead letters: %w", ctx.Err())
				}
			}
			return nil, 0, fmt.Errorf("queue: list dead letters: %w", err)
		}
		if n == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("queue: list dead letters: %w", err)
		}
	}
	return items, 0, nil
}

// matches reports whether dl passes f: Since is inclusive, Until exclusive.
func (f *DeadLetterFilter) matches(dl *DeadLetter) bool {
	switch {
	case f.Destination != "" && dl.Destination != f.Destination:
		return false
	case f.Reason != "" && !strings.Contains(dl.Reason, f.Reason):
		return false
	case !f.Since.IsZero() && dl.DeadAt.Before(f.Since):
		return false
	case !f.Until.IsZero() && !dl.DeadAt.Before(f.Until):
		return false
	}
	return true
}

// deleteConsumerQuietly removes a helper consumer; a failure only leaves it to
// the server's inactivity cleanup.
func (q *Queue) deleteConsumerQuietly(s jetstream.Stream, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		q.log.Debug("cannot delete a helper consumer", "consumer", name, "error", err)
	}
}

// GetDeadLetter returns the dead letter id, or ErrNotFound.
func (q *Queue) GetDeadLetter(ctx context.Context, id uint64) (DeadLetter, error) {
	dl, err := q.getDeadLetter(ctx, id)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("queue: dead letter %d: %w", id, err)
	}
	return dl, nil
}

func (q *Queue) getDeadLetter(ctx context.Context, id uint64) (DeadLetter, error) {
	if id == 0 {
		return DeadLetter{}, ErrNotFound
	}
	raw, err := q.dlq.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, ErrNotFound
	}
	if err != nil {
		return DeadLetter{}, err
	}
	return decodeDeadLetter(id, raw.Subject, raw.Data, raw.Time), nil
}

// DeleteDeadLetter removes the dead letter id, or returns ErrNotFound.
func (q *Queue) DeleteDeadLetter(ctx context.Context, id uint64) error {
	if err := q.deleteDeadLetter(ctx, id); err != nil {
		return fmt.Errorf("queue: delete dead letter %d: %w", id, err)
	}
	return nil
}

func (q *Queue) deleteDeadLetter(ctx context.Context, id uint64) error {
	if id == 0 {
		return ErrNotFound
	}
	err := q.dlq.DeleteMsg(ctx, id)
	if err == nil {
		return nil
	}
	// The server reports a missing message as a plain delete failure; ask.
	if _, gerr := q.dlq.GetMsg(ctx, id); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return ErrNotFound
	}
	return err
}

// ReplayDeadLetter queues the job of dead letter id again for its destination, as a new
// series of attempts (an ordered job at the end of its lane),
// waits for that write to be acknowledged, then deletes the dead letter. The
// replayed job gets a new dedup id, derived from id, so replaying the same
// dead letter twice within the dedup window stores it once.
func (q *Queue) ReplayDeadLetter(ctx context.Context, id uint64) error {
	dl, err := q.getDeadLetter(ctx, id)
	if err != nil {
		return fmt.Errorf("queue: replay dead letter %d: %w", id, err)
	}
	if err := checkDestination(dl.Destination); err != nil {
		return fmt.Errorf("queue: replay dead letter %d: %w", id, err)
	}
	// A replay starts again at attempt 1, and its max_age counts from now: it would
	// otherwise die again at its first failure.
	dl.Job.Attempt, dl.Job.Since = 1, time.Now()
	// An ordered job goes to the end of its lane, if the destination's lanes are consumed
	// (it still has order_by); otherwise it is delivered as any other.
	subject := jobsSubjectPrefix + dl.Destination
	if dl.Ordered && q.consumesLanes(dl.Destination) {
		subject = laneSubject(dl.Destination, LaneOf(dl.Key))
	} else {
		dl.Ordered, dl.Key = false, ""
	}
	frame := appendFrame(make([]byte, 0, frameSize(&dl.Job)), &dl.Job)
	msgID := dl.EventID + "." + dl.Destination + ".replay." + strconv.FormatUint(id, 10)
	_, err = q.js.PublishMsg(ctx, &nats.Msg{
		Subject: subject,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{msgID}},
		Data:    frame,
	})
	if err != nil {
		return fmt.Errorf("queue: replay dead letter %d to %q: %w", id, dl.Destination, err)
	}
	if err := q.deleteDeadLetter(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("queue: replay dead letter %d: queued again, but not deleted: %w", id, err)
	}
	return nil
}

// DeadLetterCount counts the dead letters of destination, of all
// destinations when destination is "".
func (q *Queue) DeadLetterCount(ctx context.Context, destination string) (int, error) {
	if destination == "" {
		info, err := q.dlq.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("queue: count dead letters: %w", err)
		}
		return int(info.State.Msgs), nil
	}
	if err := checkDestination(destination); err != nil {
		return 0, fmt.Errorf("queue: count dead letters: %w", err)
	}
	subject := dlqSubjectPrefix + destination
	info, err := q.dlq.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, fmt.Errorf("queue: count dead letters of %q: %w", destination, err)
	}
	return int(info.State.Subjects[subject]), nil
}
