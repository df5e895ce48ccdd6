package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/gateway/webhook"
)

// The dead-letter side of adminAPI: list, show, replay and purge over the queue.

// scanPage is how many dead letters a replay or purge by filter reads at once.
const scanPage = 1000

// DeadLetters lists one page of dead letters.
func (a adminAPI) DeadLetters(ctx context.Context, f httpapi.DeadLetterFilter, after uint64, limit int) ([]httpapi.DeadLetter, uint64, error) {
	qf, err := queueFilter(f)
	if err != nil {
		return nil, 0, err
	}
	q, err := a.openQueue()
	if err != nil {
		return nil, 0, err
	}
	items, next, err := q.ListDeadLetters(ctx, qf, after, limit)
	if err != nil {
		return nil, 0, err
	}
	out := make([]httpapi.DeadLetter, len(items))
	for i := range items {
		out[i] = deadLetterInfo(&items[i])
	}
	return out, next, nil
}

// DeadLetter returns one dead letter with its callback.
func (a adminAPI) DeadLetter(ctx context.Context, id uint64) (httpapi.DeadLetterDetail, error) {
	q, err := a.openQueue()
	if err != nil {
		return httpapi.DeadLetterDetail{}, err
	}
	dl, err := q.GetDeadLetter(ctx, id)
	if errors.Is(err, queue.ErrNotFound) {
		return httpapi.DeadLetterDetail{}, fmt.Errorf("dead letter %d: %w", id, httpapi.ErrNotFound)
	}
	if err != nil {
		return httpapi.DeadLetterDetail{}, err
	}
	d := httpapi.DeadLetterDetail{
		DeadLetter: deadLetterInfo(&dl),
		// Sign and RequestTime go: the pair proves a request came from Tencent.
		Query: tencentim.Resign(dl.Query, "", time.Time{}),
	}
	if json.Valid(dl.Body) {
		d.Body, d.BodyEncoding = json.RawMessage(dl.Body), "json"
	} else {
		d.Body, _ = json.Marshal(dl.Body) // a base64 string
		d.BodyEncoding = "base64"
	}
	return d, nil
}

// deadLetterInfo is a dead letter as listed: everything but the callback's body and query,
// of which it shows the size and the SdkAppid and command.
func deadLetterInfo(dl *queue.DeadLetter) httpapi.DeadLetter {
	q, _ := tencentim.ParseQuery(dl.Query) // an undecodable key leaves its field empty
	routes := dl.Routes
	if routes == nil {
		routes = []string{}
	}
	return httpapi.DeadLetter{
		ID: dl.ID, EventID: dl.EventID, Destination: dl.Destination, Routes: routes,
		Reason: dl.Reason, LastStatus: dl.LastStatus, BodyExcerpt: dl.BodyExcerpt, Attempts: dl.Attempts,
		FirstAttempt: dl.FirstAttempt, LastAttempt: dl.LastAttempt, DeadAt: dl.DeadAt, ReceivedAt: dl.ReceivedAt,
		RequestID: dl.RequestID, Command: q.CallbackCommand, SdkAppID: q.SdkAppID, BodySize: len(dl.Body),
	}
}

// ReplayDeadLetters queues the selected dead letters again; each leaves the dead-letter
// queue once its job is stored. A dead letter whose destination is no longer configured is
// not replayed (it would only come back with reason "destination removed"): it is an error
// of its own, as is an id that does not exist.
func (a adminAPI) ReplayDeadLetters(ctx context.Context, s httpapi.Selection, dryRun bool) (httpapi.ReplayResult, error) {
	res := httpapi.ReplayResult{DryRun: dryRun, Replayed: []uint64{}, Errors: []httpapi.IDError{}}
	q, err := a.openQueue()
	if err != nil {
		return res, err
	}
	targets, missing, err := a.selected(ctx, q, s)
	if err != nil {
		return res, err
	}
	res.Errors = append(res.Errors, missing...)
	res.Matched = len(targets)
	live := a.g.live.Load().dests
	for _, t := range targets {
		if live[t.destination] == nil {
			res.Errors = append(res.Errors, httpapi.IDError{ID: t.id,
				Error: fmt.Sprintf("destination %q is not configured: add it back to replay, or purge the dead letter", t.destination)})
			continue
		}
		if dryRun {
			res.WouldReplay = append(res.WouldReplay, t.id)
			continue
		}
		if err := q.ReplayDeadLetter(ctx, t.id); err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("replay stopped after %d of %d: %w", len(res.Replayed), len(targets), ctx.Err())
			}
			res.Errors = append(res.Errors, httpapi.IDError{ID: t.id, Error: idError(err)})
			continue
		}
		res.Replayed = append(res.Replayed, t.id)
	}
	if len(res.Replayed) > 0 {
		a.g.log.Info("dead letters replayed", "count", len(res.Replayed), "errors", len(res.Errors))
	}
	return res, nil
}

// PurgeDeadLetters deletes the selected dead letters.
func (a adminAPI) PurgeDeadLetters(ctx context.Context, s httpapi.Selection, dryRun bool) (httpapi.PurgeResult, error) {
	res := httpapi.PurgeResult{DryRun: dryRun, Errors: []httpapi.IDError{}}
	q, err := a.openQueue()
	if err != nil {
		return res, err
	}
	targets, missing, err := a.selected(ctx, q, s)
	if err != nil {
		return res, err
	}
	res.Errors = append(res.Errors, missing...)
	res.Matched = len(targets)
	if dryRun {
		return res, nil
	}
	for _, t := range targets {
		err := q.DeleteDeadLetter(ctx, t.id)
		switch {
		case err == nil:
			res.Deleted++
		case errors.Is(err, queue.ErrNotFound):
			// Gone meanwhile (replayed, purged, or aged out): what was asked holds.
		case ctx.Err() != nil:
			return res, fmt.Errorf("purge stopped after %d of %d: %w", res.Deleted, len(targets), ctx.Err())
		default:
			res.Errors = append(res.Errors, httpapi.IDError{ID: t.id, Error: idError(err)})
		}
	}
	if res.Deleted > 0 {
		a.g.log.Info("dead letters purged", "count", res.Deleted, "errors", len(res.Errors))
	}
	return res, nil
}

// target is a dead letter a replay or purge acts on.
type target struct {
	id          uint64
	destination string
}

// selected resolves s to the dead letters it names: by id (those that do not exist are
// returned as errors), or every one the filter matches. The whole selection is read before
// anything is done, so that a replay whose deliveries die again at once cannot feed its
// own loop.
func (a adminAPI) selected(ctx context.Context, q *queue.Queue, s httpapi.Selection) ([]target, []httpapi.IDError, error) {
	var targets []target
	var missing []httpapi.IDError
	if s.IDs != nil {
		seen := map[uint64]bool{}
		for _, id := range s.IDs {
			if seen[id] {
				continue
			}
			seen[id] = true
			dl, err := q.GetDeadLetter(ctx, id)
			switch {
			case errors.Is(err, queue.ErrNotFound):
				missing = append(missing, httpapi.IDError{ID: id, Error: "not found"})
			case err != nil:
				return nil, nil, err
			default:
				targets = append(targets, target{id, dl.Destination})
			}
		}
		return targets, missing, nil
	}
	f, err := queueFilter(s.Filter)
	if err != nil {
		return nil, nil, err
	}
	for after := uint64(0); ; {
		items, next, err := q.ListDeadLetters(ctx, f, after, scanPage)
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

// queueFilter converts f, refusing a destination name that cannot be one.
func queueFilter(f httpapi.DeadLetterFilter) (queue.DeadLetterFilter, error) {
	if f.Destination != "" {
		if err := webhook.CheckDestinationName(f.Destination); err != nil {
			return queue.DeadLetterFilter{}, &httpapi.ParamError{Param: "destination", Message: fmt.Sprintf("%q: %v", f.Destination, err)}
		}
	}
	return queue.DeadLetterFilter{Destination: f.Destination, Reason: f.Reason, Since: f.Since, Until: f.Until}, nil
}

func (a adminAPI) openQueue() (*queue.Queue, error) {
	if a.g.queue == nil {
		return nil, errors.New("queue not open")
	}
	return a.g.queue, nil
}

// idError is err as shown for one id: without the "queue: ... dead letter N:" prefix the
// answer already carries in its id.
func idError(err error) string {
	if errors.Is(err, queue.ErrNotFound) {
		return "not found"
	}
	return err.Error()
}
