package queue

import (
	"context"
	"errors"
	"fmt"
)

// Selection names the dead letters a replay or purge acts on: those of IDs when IDs is not
// nil, else every one Filter selects.
type Selection struct {
	IDs    []uint64
	Filter DeadLetterFilter
}

// IDError is why one selected dead letter was not replayed or deleted.
type IDError struct {
	ID  uint64
	Err error // ErrNotFound for an id that does not exist
}

// ReplayResult is what ReplayDeadLetters did.
type ReplayResult struct {
	Matched     int      // the selected dead letters that exist
	Replayed    []uint64 // queued again
	WouldReplay []uint64 // in a dry run: what would be queued again
	Errors      []IDError
}

// PurgeResult is what PurgeDeadLetters did; in a dry run Deleted is 0 and Matched says how
// many would go.
type PurgeResult struct {
	Matched int
	Deleted int
	Errors  []IDError
}

// selectPage is how many dead letters a selection by filter reads at once.
const selectPage = 1000

// ReplayDeadLetters queues the selected dead letters again (ReplayDeadLetter, one by one);
// each leaves the dead-letter queue once its job is stored. The whole selection is read
// before anything is replayed, so that a replay whose deliveries die again at once cannot
// feed its own loop. replayable, when set, is asked about each dead letter's destination
// first: its error keeps that dead letter where it is, as one of Errors. An id that does
// not exist is one of Errors too. With dryRun nothing changes and WouldReplay says what
// would be replayed. The error is for a selection that cannot be read, or ctx ending.
func (q *Queue) ReplayDeadLetters(ctx context.Context, s Selection, dryRun bool, replayable func(destination string) error) (ReplayResult, error) {
	var res ReplayResult
	targets, missing, err := q.selectDeadLetters(ctx, s)
	if err != nil {
		return res, err
	}
	res.Errors, res.Matched = missing, len(targets)
	for _, t := range targets {
		if replayable != nil {
			if err := replayable(t.destination); err != nil {
				res.Errors = append(res.Errors, IDError{ID: t.id, Err: err})
				continue
			}
		}
		if dryRun {
			res.WouldReplay = append(res.WouldReplay, t.id)
			continue
		}
		if err := q.ReplayDeadLetter(ctx, t.id); err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("replay stopped after %d of %d: %w", len(res.Replayed), len(targets), ctx.Err())
			}
			res.Errors = append(res.Errors, IDError{ID: t.id, Err: err})
			continue
		}
		res.Replayed = append(res.Replayed, t.id)
	}
	return res, nil
}

// PurgeDeadLetters deletes the selected dead letters. One that is gone meanwhile
// (replayed, purged, or aged out) is not an error: what was asked holds. An id that did not
// exist when the selection was read is one of Errors.
func (q *Queue) PurgeDeadLetters(ctx context.Context, s Selection, dryRun bool) (PurgeResult, error) {
	var res PurgeResult
	targets, missing, err := q.selectDeadLetters(ctx, s)
	if err != nil {
		return res, err
	}
	res.Errors, res.Matched = missing, len(targets)
	if dryRun {
		return res, nil
	}
	for _, t := range targets {
		err := q.DeleteDeadLetter(ctx, t.id)
		switch {
		case err == nil:
			res.Deleted++
		case errors.Is(err, ErrNotFound):
		case ctx.Err() != nil:
			return res, fmt.Errorf("purge stopped after %d of %d: %w", res.Deleted, len(targets), ctx.Err())
		default:
			res.Errors = append(res.Errors, IDError{ID: t.id, Err: err})
		}
	}
	return res, nil
}

// target is a selected dead letter.
type target struct {
	id          uint64
	destination string
}

// selectDeadLetters resolves s to the dead letters it names: by id (each once; those that
// do not exist are returned as errors), or every one the filter matches, read a page at a
// time.
func (q *Queue) selectDeadLetters(ctx context.Context, s Selection) ([]target, []IDError, error) {
	var targets []target
	var missing []IDError
	if s.IDs != nil {
		seen := map[uint64]bool{}
		for _, id := range s.IDs {
			if seen[id] {
				continue
			}
			seen[id] = true
			dl, err := q.GetDeadLetter(ctx, id)
			switch {
			case errors.Is(err, ErrNotFound):
				missing = append(missing, IDError{ID: id, Err: ErrNotFound})
			case err != nil:
				return nil, nil, err
			default:
				targets = append(targets, target{id, dl.Destination})
			}
		}
		return targets, missing, nil
	}
	for after := uint64(0); ; {
		items, next, err := q.ListDeadLetters(ctx, s.Filter, after, selectPage)
		if err != nil {
			return nil, nil, err
		}
		for _, dl := range items {
			targets = append(targets, target{dl.ID, dl.Destination})
		}
		if next == 0 {
			return targets, nil, nil
		}
		after = next
	}
}
