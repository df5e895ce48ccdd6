package queue

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Enqueue stores jobs and returns nil only once every write is acknowledged
// by JetStream (a job already stored within the dedup window counts as
// acknowledged). Any failure, or ctx ending first, returns an error: the
// caller must then not tell the sender the callback was accepted. Jobs whose
// write was sent before the failure may still be stored; a retry of the same
// callback is then suppressed as a duplicate.
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
	if !q.nc.IsConnected() {
		if q.nc.IsClosed() {
			return fmt.Errorf("queue: enqueue: %w", errClosed)
		}
		return fmt.Errorf("queue: enqueue: %w", nats.ErrDisconnected)
	}

	frames, names := 0, 0
	for i := range jobs {
		j := &jobs[i]
		if err := checkDestination(j.Destination); err != nil {
			return fmt.Errorf("queue: enqueue event %s: %w", j.EventID, err)
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
	off := 0
	for i := range jobs {
		j := &jobs[i]
		subjectLen := len(jobsSubjectPrefix) + len(j.Destination)
		idLen := len(j.EventID) + 1 + len(j.Destination)
		ids[i] = all[off+subjectLen : off+subjectLen+idLen]
		start := len(buf)
		buf = appendFrame(buf, j)
		msgs[i] = nats.Msg{
			Subject: all[off : off+subjectLen],
			Data:    buf[start:len(buf):len(buf)],
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
			return fmt.Errorf("queue: enqueue event %s to %q: %w", jobs[i].EventID, jobs[i].Destination, err)
		case <-ctx.Done():
			return fmt.Errorf("queue: enqueue event %s to %q: waiting for the ack: %w", jobs[i].EventID, jobs[i].Destination, ctx.Err())
		case <-q.closing:
			return fmt.Errorf("queue: enqueue event %s to %q: %w", jobs[i].EventID, jobs[i].Destination, errClosed)
		}
	}
	return nil
}
