package queue

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// censusEvery is how often the backlog of each bounded destination is counted. A bound can
// be passed by at most the jobs stored in that time.
const censusEvery = time.Second

// SetBacklogLimits replaces the backlog bounds, by destination (destinations not named are
// unbounded). Counting starts at once; until the first count, no destination is full.
func (q *Queue) SetBacklogLimits(limits map[string]BacklogLimit) {
	q.limitsMu.Lock()
	q.limits = maps.Clone(limits)
	q.limitsMu.Unlock()
	select {
	case q.recount <- struct{}{}:
	default:
	}
}

// BacklogFull reports whether destination's backlog was at its bound at the last count.
func (q *Queue) BacklogFull(destination string) bool {
	full := q.full.Load()
	return full != nil && (*full)[destination]
}

// census counts the backlog of every bounded destination every censusEvery, until Close,
// and publishes which are full for Enqueue. A destination it cannot count keeps its last
// state.
func (q *Queue) census() {
	t := time.NewTicker(censusEvery)
	defer t.Stop()
	for {
		select {
		case <-q.closing:
			return
		case <-t.C:
		case <-q.recount:
		}
		q.limitsMu.Lock()
		limits := q.limits
		q.limitsMu.Unlock()
		next := make(map[string]bool, len(limits))
		prev := q.full.Load()
		ctx, cancel := context.WithTimeout(context.Background(), censusEvery)
		avg := q.averageJobBytes(ctx)
		for d, l := range limits {
			n, err := q.count(ctx, d)
			if err != nil {
				if prev != nil {
					next[d] = (*prev)[d]
				}
				q.log.Debug("cannot count the backlog", "destination", d, "error", err)
				continue
			}
			full := (l.Jobs > 0 && n >= l.Jobs) || (l.Bytes > 0 && int64(n)*avg >= l.Bytes)
			next[d] = full
			if was := prev != nil && (*prev)[d]; was != full {
				if full {
					q.log.Warn("backlog full: new deliveries go to the dead-letter queue until it drains",
						"destination", d, "pending", n, "max_jobs", l.Jobs, "max_bytes", l.Bytes)
				} else {
					q.log.Info("backlog below its bound again: new deliveries are queued", "destination", d, "pending", n)
				}
			}
		}
		cancel()
		q.full.Store(&next)
	}
}

// count is Pending without the oldest job.
func (q *Queue) count(ctx context.Context, destination string) (int, error) {
	subject := jobsSubjectPrefix + destination
	info, err := q.jobs.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	retries, err := q.retries(ctx, destination)
	if err != nil {
		return 0, err
	}
	lanes, err := q.laneCount(ctx, destination)
	if err != nil {
		return 0, err
	}
	return int(info.State.Subjects[subject]) + retries + lanes, nil
}

// laneFilter is the subject filter of every lane of destination.
func laneFilter(destination string) string { return lanesSubjectPrefix + destination + ".*" }

// laneCount counts the jobs stored in destination's lanes.
func (q *Queue) laneCount(ctx context.Context, destination string) (int, error) {
	info, err := q.jobs.Info(ctx, jetstream.WithSubjectFilter(laneFilter(destination)))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}

// LaneBacklog counts the jobs stored in destination's lanes: a destination whose order_by
// was removed still has its lanes consumed while it has some.
func (q *Queue) LaneBacklog(ctx context.Context, destination string) (int, error) {
	if err := checkDestination(destination); err != nil {
		return 0, fmt.Errorf("queue: lane backlog: %w", err)
	}
	n, err := q.laneCount(ctx, destination)
	if err != nil {
		return 0, fmt.Errorf("queue: lane backlog of %q: %w", destination, err)
	}
	return n, nil
}

// averageJobBytes is the mean size of a stored job, to turn a count into bytes: the jobs of
// every destination are copies of the same callbacks, so the stream's mean is a fair guess
// for each. It is 0 when unknown.
func (q *Queue) averageJobBytes(ctx context.Context) int64 {
	info, err := q.jobs.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return 0
	}
	return int64(info.State.Bytes / info.State.Msgs)
}
