package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Enqueue stores jobs and returns nil only once every write is acknowledged
// by JetStream (a job already stored within the dedup window counts as
// acknowledged). Any failure, or ctx ending first, returns an error: the
// caller must then not tell the sender the callback was accepted. Jobs whose
// write was sent before the failure may still be stored; a retry of the same
// callback is then suppressed as a duplicate. A job the server cannot store in
// one message (or as a dead letter) fails the call with ErrTooLarge before
// anything is written.
//
// An ordered job (Job.Ordered) is stored in its key's lane (see ConsumeLanes).
//
// A job whose destination's backlog is full (see SetBacklogLimits) is stored
// as a dead letter with reason ReasonBacklogFull instead, and
// Options.BacklogFull is told once the writes are acknowledged.
//
// This is the hot path of every callback, so all jobs are published before
// any ack is awaited, and the frames, subjects and ids of one call share a
// few allocations.
func (q *Queue) Enqueue(ctx context.Context, jobs []Job) error {
	if len(jobs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("queue: enqueue: %w", err)
	}
	if err := q.storeError(); err != nil {
		return fmt.Errorf("queue: enqueue: %w", err)
	}
	if !q.nc.IsConnected() {
		if q.nc.IsClosed() {
			return fmt.Errorf("queue: enqueue: %w", errClosed)
		}
		return fmt.Errorf("queue: enqueue: %w", nats.ErrDisconnected)
	}

	frames, names := 0, 0
	maxPayload := q.nc.MaxPayload()
	for i := range jobs {
		j := &jobs[i]
		if err := checkDestination(j.Destination); err != nil {
			return fmt.Errorf("queue: enqueue event %s: %w", j.EventID, err)
		}
		if err := tooLarge(j, maxPayload); err != nil {
			return fmt.Errorf("queue: enqueue event %s to %q: %w", j.EventID, j.Destination, err)
		}
		frames += frameSize(j)
		names += len(jobsSubjectPrefix) + 2*len(j.Destination) + len(j.EventID) + 1
	}

	// The subject and the dedup id of every job are substrings of one string.
	var sb strings.Builder
	sb.Grow(names)
	for i := range jobs {
		sb.WriteString(jobsSubjectPrefix)
		sb.WriteString(jobs[i].Destination)
		sb.WriteString(jobs[i].EventID)
		sb.WriteByte('.')
		sb.WriteString(jobs[i].Destination)
	}
	all := sb.String()

	buf := make([]byte, 0, frames)
	msgs := make([]nats.Msg, len(jobs))
	ids := make([]string, len(jobs))
	var stack [4]jetstream.PubAckFuture
	futures := stack[:0]
	full := q.full.Load()
	diverted := 0
	off := 0
	for i := range jobs {
		j := &jobs[i]
		subjectLen := len(jobsSubjectPrefix) + len(j.Destination)
		idLen := len(j.EventID) + 1 + len(j.Destination)
		ids[i] = all[off+subjectLen : off+subjectLen+idLen]
		if full != nil && (*full)[j.Destination] {
			off += subjectLen + idLen
			f, err := q.publishBacklogFull(j)
			if err != nil {
				return fmt.Errorf("queue: enqueue event %s to %q: %w", j.EventID, j.Destination, err)
			}
			futures = append(futures, f)
			diverted++
			continue
		}
		start := len(buf)
		buf = appendFrame(buf, j)
		msgs[i] = nats.Msg{
			Subject: all[off : off+subjectLen],
			Data:    buf[start:len(buf):len(buf)],
		}
		if j.Ordered {
			msgs[i].Subject = laneSubject(j.Destination, LaneOf(j.Key))
		}
		if q.dedup {
			msgs[i].Header = nats.Header{jetstream.MsgIDHeader: ids[i : i+1 : i+1]}
		}
		off += subjectLen + idLen
		f, err := q.js.PublishMsgAsync(&msgs[i])
		if err != nil {
			return fmt.Errorf("queue: enqueue event %s to %q: %w", j.EventID, j.Destination, err)
		}
		futures = append(futures, f)
	}

	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			q.probeSoon()
			return fmt.Errorf("queue: enqueue event %s to %q: %w", jobs[i].EventID, jobs[i].Destination, err)
		case <-ctx.Done():
			q.probeSoon()
			return fmt.Errorf("queue: enqueue event %s to %q: waiting for the ack: %w", jobs[i].EventID, jobs[i].Destination, ctx.Err())
		case <-q.closing:
			return fmt.Errorf("queue: enqueue event %s to %q: %w", jobs[i].EventID, jobs[i].Destination, errClosed)
		}
	}
	if diverted > 0 && q.backlogFull != nil {
		for i := range jobs {
			if (*full)[jobs[i].Destination] {
				q.backlogFull(jobs[i].Destination)
			}
		}
	}
	return nil
}

// publishBacklogFull stores j as a dead letter with reason ReasonBacklogFull, without
// waiting for the ack.
func (q *Queue) publishBacklogFull(j *Job) (jetstream.PubAckFuture, error) {
	data, err := json.Marshal(newDeadLetterRecord(j, DeadLetterInfo{Reason: ReasonBacklogFull}, time.Now().UTC()))
	if err != nil {
		return nil, fmt.Errorf("encode the dead letter: %w", err)
	}
	return q.js.PublishMsgAsync(&nats.Msg{
		Subject: dlqSubjectPrefix + j.Destination,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{j.EventID + "." + j.Destination + ".full"}},
		Data:    data,
	})
}
