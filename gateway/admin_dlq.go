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
		Reason: dl.Reason, LastStatus: dl.LastStatus, BodyExcerpt: dl.BodyExcerpt, LastError: dl.LastError, Attempts: dl.Attempts,
		FirstAttempt: dl.FirstAttempt, LastAttempt: dl.LastAttempt, DeadAt: dl.DeadAt, ReceivedAt: dl.ReceivedAt,
		RequestID: dl.RequestID, Command: q.CallbackCommand, SdkAppID: q.SdkAppID, BodySize: len(dl.Body),
	}
}

// ReplayDeadLetters queues the selected dead letters again (queue.ReplayDeadLetters). A
// dead letter whose destination is no longer configured is not replayed (it would only
// come back with reason "destination removed"): it is an error of its own, as is an id
// that does not exist.
func (a adminAPI) ReplayDeadLetters(ctx context.Context, s httpapi.Selection, dryRun bool) (httpapi.ReplayResult, error) {
	out := httpapi.ReplayResult{DryRun: dryRun, Replayed: []uint64{}, Errors: []httpapi.IDError{}}
	sel, q, err := a.selection(s)
	if err != nil {
		return out, err
	}
	live := a.g.live.Load().dests
	res, err := q.ReplayDeadLetters(ctx, sel, dryRun, func(destination string) error {
		if live[destination] == nil {
			return fmt.Errorf("destination %q is not configured: add it back to replay, or purge the dead letter", destination)
		}
		return nil
	})
	out.Matched, out.WouldReplay, out.Errors = res.Matched, res.WouldReplay, idErrors(res.Errors)
	out.Replayed = append(out.Replayed, res.Replayed...)
	if err == nil && len(res.Replayed) > 0 {
		a.g.log.Info("dead letters replayed", "count", len(res.Replayed), "errors", len(res.Errors))
	}
	return out, err
}

// PurgeDeadLetters deletes the selected dead letters (queue.PurgeDeadLetters).
func (a adminAPI) PurgeDeadLetters(ctx context.Context, s httpapi.Selection, dryRun bool) (httpapi.PurgeResult, error) {
	out := httpapi.PurgeResult{DryRun: dryRun, Errors: []httpapi.IDError{}}
	sel, q, err := a.selection(s)
	if err != nil {
		return out, err
	}
	res, err := q.PurgeDeadLetters(ctx, sel, dryRun)
	out.Matched, out.Deleted, out.Errors = res.Matched, res.Deleted, idErrors(res.Errors)
	if err == nil && res.Deleted > 0 {
		a.g.log.Info("dead letters purged", "count", res.Deleted, "errors", len(res.Errors))
	}
	return out, err
}

// selection converts s for the queue, which it returns too.
func (a adminAPI) selection(s httpapi.Selection) (queue.Selection, *queue.Queue, error) {
	f, err := queueFilter(s.Filter)
	if err != nil {
		return queue.Selection{}, nil, err
	}
	q, err := a.openQueue()
	return queue.Selection{IDs: s.IDs, Filter: f}, q, err
}

// idErrors are the queue's errors as the API shows them: without the "queue: ... dead
// letter N:" prefix the answer already carries in its id.
func idErrors(errs []queue.IDError) []httpapi.IDError {
	out := make([]httpapi.IDError, len(errs))
	for i, e := range errs {
		msg := e.Err.Error()
		if errors.Is(e.Err, queue.ErrNotFound) {
			msg = "not found"
		}
		out[i] = httpapi.IDError{ID: e.ID, Error: msg}
	}
	return out
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
	q := a.g.queue.Load()
	if q == nil {
		return nil, errors.New("queue not open")
	}
	return q, nil
}
