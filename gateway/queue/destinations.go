package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Pending counts the jobs stored for destination and not yet acknowledged
// (those in flight and those waiting for a retry included), and returns the
// ReceivedAt of the first one stored (zero when none). It costs two small
// requests answered from the stream's subject index, so it can run every few
// seconds per destination for metrics.
func (q *Queue) Pending(ctx context.Context, destination string) (count int, oldest time.Time, err error) {
	if err := checkDestination(destination); err != nil {
		return 0, time.Time{}, fmt.Errorf("queue: pending: %w", err)
	}
	subject := jobsSubjectPrefix + destination
	info, err := q.jobs.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("queue: pending of %q: %w", destination, err)
	}
	count = int(info.State.Subjects[subject])
	if count == 0 {
		return 0, time.Time{}, nil
	}
	first, err := q.jobs.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return count, time.Time{}, nil // acknowledged meanwhile
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("queue: pending of %q: oldest job: %w", destination, err)
	}
	oldest, err = receivedAtOf(first.Data)
	if err != nil || oldest.IsZero() {
		oldest = first.Time // not a job frame: when it was stored is the best we know
	}
	return count, oldest, nil
}

// QueuedDestinations returns, sorted, the destinations that have a consumer
// or stored jobs, so that jobs of a destination no longer configured can be
// found and removed.
func (q *Queue) QueuedDestinations(ctx context.Context) ([]string, error) {
	seen := make(map[string]struct{})
	consumers := q.jobs.ListConsumers(ctx)
	for ci := range consumers.Info() {
		if d, ok := strings.CutPrefix(ci.Config.FilterSubject, jobsSubjectPrefix); ok {
			seen[d] = struct{}{}
		}
	}
	if err := consumers.Err(); err != nil {
		return nil, fmt.Errorf("queue: list consumers: %w", err)
	}
	info, err := q.jobs.Info(ctx, jetstream.WithSubjectFilter(jobsSubjectPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("queue: list queued subjects: %w", err)
	}
	for subject := range info.State.Subjects {
		seen[strings.TrimPrefix(subject, jobsSubjectPrefix)] = struct{}{}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

// RemoveDestination moves every stored job of destination to the dead-letter
// queue with reason, then deletes its consumer. Each job is deleted only after
// its dead letter is acknowledged, so an error or a crash midway loses
// nothing (a job may then be dead-lettered twice, stored once within the
// dedup window). The caller must have stopped consuming destination.
func (q *Queue) RemoveDestination(ctx context.Context, destination, reason string) (moved int, err error) {
	if err := checkDestination(destination); err != nil {
		return 0, fmt.Errorf("queue: remove destination: %w", err)
	}
	subject := jobsSubjectPrefix + destination
	for seq := uint64(0); ; {
		raw, err := q.jobs.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return moved, fmt.Errorf("queue: remove destination %q: read job: %w", destination, err)
		}
		job, derr := decodeFrame(raw.Data)
		info := DeadLetterInfo{Reason: reason}
		if derr != nil {
			job = Job{Destination: destination, Body: raw.Data}
			info.Reason = reason + "; undecodable job: " + derr.Error()
		}
		if err := q.publishDeadLetter(ctx, &job, raw.Sequence, info); err != nil {
			return moved, fmt.Errorf("queue: remove destination %q: dead-letter job %d: %w", destination, raw.Sequence, err)
		}
		if err := q.jobs.DeleteMsg(ctx, raw.Sequence); err != nil {
			if _, gerr := q.jobs.GetMsg(ctx, raw.Sequence); !errors.Is(gerr, jetstream.ErrMsgNotFound) {
				return moved, fmt.Errorf("queue: remove destination %q: delete job %d: %w", destination, raw.Sequence, err)
			}
		}
		moved++
		seq = raw.Sequence + 1
	}
	err = q.jobs.DeleteConsumer(ctx, consumerName(destination))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return moved, fmt.Errorf("queue: remove destination %q: delete consumer: %w", destination, err)
	}
	return moved, nil
}
