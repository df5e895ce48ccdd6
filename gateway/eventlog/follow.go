package eventlog

import (
	"context"
	"slices"
)

// followMemory bounds the callbacks Follow remembers a decision about.
const followMemory = 65536

// Follow calls fn with every record written from now on whose callback f selects, as it
// is stored, until ctx ends, the log closes or fn returns an error (which it returns).
// Received records come without the body. The filter applies as it does to a search, each
// record standing for its callback: the time range, app, command, route and fields are
// the callback's (read once per callback from its received record); Destination selects
// the records about that destination, and the received records routing to it; Outcome
// selects the records that bring a delivery to that state (a 2xx attempt for delivered,
// retrying, dead and blocked records, received records with no route).
func (l *Log) Follow(ctx context.Context, f Filter, fn func(Entry) error) error {
	if l == nil {
		return ErrOff
	}
	if err := l.Check(f); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fnErr error
	fl := &follower{l: l, f: f, decided: map[string]bool{}}
	err := l.store.Follow(ctx, func(b Stored) {
		_ = eachRecord(b.Data, func(_ int, id, data []byte) bool {
			if fnErr != nil {
				return false
			}
			e := decode(raw{at: b.Time, id: string(id), data: data}, false).entry
			if !fl.selects(ctx, &e) {
				return true
			}
			if fnErr = fn(e); fnErr != nil {
				cancel()
			}
			return fnErr == nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// follower remembers, per callback, whether the callback-wide parts of its filter hold.
type follower struct {
	l       *Log
	f       Filter
	decided map[string]bool
}

func (fl *follower) selects(ctx context.Context, e *Entry) bool {
	f := &fl.f
	if !fl.callback(ctx, e) {
		return false
	}
	if f.Destination != "" {
		if e.Kind == KindReceived {
			if !slices.ContainsFunc(e.Deliveries, func(d Delivery) bool { return d.Destination == f.Destination }) {
				return false
			}
		} else if e.Destination != f.Destination {
			return false
		}
	}
	switch f.Outcome {
	case "":
		return true
	case OutcomeDelivered:
		return e.Kind == KindAttempt && e.Result == "2xx" && !e.RespondTo
	case OutcomeRetrying:
		return e.Kind == KindRetrying
	case OutcomeDead:
		return e.Kind == KindDead
	case OutcomeBlocked:
		return e.Kind == KindBlocked
	case OutcomeNoRoute:
		return e.Kind == KindReceived && len(e.Deliveries) == 0 && e.Respond == ""
	case OutcomeResponded:
		return e.Kind == KindAttempt && e.RespondTo
	case OutcomePending:
		return e.Kind == KindReceived && len(e.Deliveries) > 0 || e.Kind == KindReplayed
	}
	return false
}

// callback applies the parts of the filter that are the callback's: from its received
// record, the one at hand or the one in the log.
func (fl *follower) callback(ctx context.Context, e *Entry) bool {
	f := &fl.f
	if f.Since.IsZero() && f.Until.IsZero() && f.App == "" && f.Command == "" && f.Route == "" && len(f.Fields) == 0 {
		return true
	}
	if ok, known := fl.decided[e.EventID]; known {
		return ok
	}
	if len(fl.decided) >= followMemory {
		clear(fl.decided)
	}
	ok := false
	if e.Kind == KindReceived {
		ok = f.received(e)
	} else {
		// A callback received before the follow began: its received record tells.
		_ = fl.l.event(ctx, e.EventID, 0, func(r raw) bool {
			if kindOf(r.data) != KindReceived {
				return true
			}
			rec := decode(r, false).entry
			ok = f.received(&rec)
			return false
		})
	}
	fl.decided[e.EventID] = ok
	return ok
}
