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

// Pending counts the jobs stored for destination and not yet acknowledged: waiting, handed
// out, in its lanes, and waiting for a retry (a job being stored again for a retry counts twice for a
// moment: see Message.Later). It returns the ReceivedAt of the oldest it finds (zero when
// none): the first one stored of those waiting or handed out, and of those waiting for a
// retry. It costs a few small requests answered from the stream's subject index and the
// consumers' state, so it can run every few seconds per destination for metrics.
func (q *Queue) Pending(ctx context.Context, destination string) (count int, oldest time.Time, err error) {
	if err := checkDestination(destination); err != nil {
		return 0, time.Time{}, fmt.Errorf("queue: pending: %w", err)
	}
	subject := jobsSubjectPrefix + destination
	count, err = q.count(ctx, destination)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("queue: pending of %q: %w", destination, err)
	}
	if count == 0 {
		return 0, time.Time{}, nil
	}
	for _, filter := range []string{subject, retrySubjectPrefix + destination + ".*", laneFilter(destination)} {
		first, err := q.jobs.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // none, or acknowledged meanwhile
		}
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("queue: pending of %q: oldest job: %w", destination, err)
		}
		at, err := receivedAtOf(first.Data)
		if err != nil || at.IsZero() {
			at = first.Time // not a job frame: when it was stored is the best we know
		}
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	return count, oldest, nil
}

// censusName is the consumer that counts destination's retries waiting for their time. It
// is never consumed: its pending count is the number of schedules stored on the
// destination's retry subjects. '~' cannot appear in a destination name, so it cannot
// collide with a destination's own consumer.
func censusName(destination string) string { return "retries~" + destination }

// ensureCensus creates the census consumer of destination if it does not exist.
func (q *Queue) ensureCensus(ctx context.Context, destination string) error {
	_, err := q.jobs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       censusName(destination),
		Description:   "Counts the retries of " + destination + " waiting for their time (never consumed)",
		FilterSubject: retrySubjectPrefix + destination + ".*",
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return fmt.Errorf("queue: create the retry census of %q: %w", destination, err)
	}
	return nil
}

// retries counts destination's retries waiting for their time. Consume creates the census
// before the first retry can be stored; without one there is none.
func (q *Queue) retries(ctx context.Context, destination string) (int, error) {
	c, err := q.jobs.Consumer(ctx, censusName(destination))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("retry census: %w", err)
	}
	return int(c.CachedInfo().NumPending), nil
}

// QueuedDestinations returns, sorted, the destinations that have a consumer
// or stored jobs, so that jobs of a destination no longer configured can be
// found and removed.
func (q *Queue) QueuedDestinations(ctx context.Context) ([]string, error) {
	seen := make(map[string]struct{})
	consumers := q.jobs.ListConsumers(ctx)
	for ci := range consumers.Info() {
		filter := ci.Config.FilterSubject
		if d, ok := strings.CutPrefix(filter, jobsSubjectPrefix); ok {
			seen[d] = struct{}{}
		} else if d, ok := strings.CutPrefix(filter, retrySubjectPrefix); ok {
			seen[strings.TrimSuffix(d, ".*")] = struct{}{}
		} else if d, ok := strings.CutPrefix(filter, lanesSubjectPrefix); ok {
			seen[d[:max(strings.IndexByte(d, '.'), 0)]] = struct{}{}
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
	info, err = q.jobs.Info(ctx, jetstream.WithSubjectFilter(lanesSubjectPrefix+"*.*"))
	if err != nil {
		return nil, fmt.Errorf("queue: list queued subjects: %w", err)
	}
	for subject := range info.State.Subjects {
		d := strings.TrimPrefix(subject, lanesSubjectPrefix)
		seen[d[:max(strings.IndexByte(d, '.'), 0)]] = struct{}{}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

// RemoveDestination moves every stored job of destination to the dead-letter
// queue with reason, then deletes its consumers and its lanes' records. Each job is deleted only after
// its dead letter is acknowledged, so an error or a crash midway loses
// nothing (a job may then be dead-lettered twice, stored once within the
// dedup window). The caller must have stopped consuming destination and its lanes.
//
// progress, when set, is called after each job moved with the count so far; when it
// returns false, RemoveDestination stops there (the destination is wanted again), leaving
// the rest of the jobs, the consumers and the lanes in place.
func (q *Queue) RemoveDestination(ctx context.Context, destination, reason string, progress func(moved int) bool) (moved int, err error) {
	if err := checkDestination(destination); err != nil {
		return 0, fmt.Errorf("queue: remove destination: %w", err)
	}
	if progress == nil {
		progress = func(int) bool { return true }
	}
	for _, filter := range []string{jobsSubjectPrefix + destination, retrySubjectPrefix + destination + ".*", laneFilter(destination)} {
		n, stopped, err := q.deadLetterAll(ctx, destination, filter, reason, moved, progress)
		moved += n
		if err != nil || stopped {
			return moved, err
		}
	}
	if err := q.removeLanes(ctx, destination); err != nil {
		return moved, fmt.Errorf("queue: remove destination %q: %w", destination, err)
	}
	for _, name := range []string{consumerName(destination), censusName(destination)} {
		err = q.jobs.DeleteConsumer(ctx, name)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return moved, fmt.Errorf("queue: remove destination %q: delete consumer %s: %w", destination, name, err)
		}
	}
	return moved, nil
}

// deadLetterAll moves every job stored on subjects matching filter to the dead-letter queue,
// until progress (told the total so far, from before) says stop.
func (q *Queue) deadLetterAll(ctx context.Context, destination, filter, reason string, before int, progress func(int) bool) (moved int, stopped bool, err error) {
	for seq := uint64(0); ; {
		raw, err := q.jobs.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return moved, false, fmt.Errorf("queue: remove destination %q: read job: %w", destination, err)
		}
		job, derr := decodeFrame(raw.Data)
		info := DeadLetterInfo{Reason: reason}
		if derr != nil {
			job = Job{Destination: destination, Body: raw.Data}
			info.Reason = reason + "; undecodable job: " + derr.Error()
		}
		if err := q.publishDeadLetter(ctx, &job, raw.Sequence, info); err != nil {
			return moved, false, fmt.Errorf("queue: remove destination %q: dead-letter job %d: %w", destination, raw.Sequence, err)
		}
		if err := q.jobs.DeleteMsg(ctx, raw.Sequence); err != nil {
			if _, gerr := q.jobs.GetMsg(ctx, raw.Sequence); !errors.Is(gerr, jetstream.ErrMsgNotFound) {
				return moved, false, fmt.Errorf("queue: remove destination %q: delete job %d: %w", destination, raw.Sequence, err)
			}
		}
		moved++
		seq = raw.Sequence + 1
		if !progress(before + moved) {
			return moved, true, nil
		}
	}
	return moved, false, nil
}
