package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/fanout-gw/fanout/gateway/eventlog"
)

// The event log's endpoints: search, one callback's trace, replay and the live stream. Their
// JSON is eventlog's types (Summary, Detail, Entry) and the answers below.

// Events is the event log as the admin port serves it. An Admin that implements it gets
// the /api/v1/events endpoints.
type Events interface {
	// SearchEvents returns up to limit callbacks f selects, newest first, before the
	// cursor before (0: the newest), and the cursor of the next page (0 at the end).
	SearchEvents(ctx context.Context, f eventlog.Filter, before uint64, limit int) ([]eventlog.Summary, uint64, error)
	// Event returns one callback with its body and every record, or ErrNotFound.
	Event(ctx context.Context, id string) (eventlog.Detail, error)
	// ReplayEvents queues callbacks of the log again (or says what it would queue).
	ReplayEvents(ctx context.Context, r EventReplay) (EventReplayResult, error)
	// CheckEventFilter returns why f cannot be applied, or nil.
	CheckEventFilter(f eventlog.Filter) error
	// FollowEvents calls fn with every record f selects from now on, until ctx ends or
	// fn returns an error.
	FollowEvents(ctx context.Context, f eventlog.Filter, fn func(eventlog.Entry) error) error
}

// EventPage is the answer of GET /api/v1/events.
type EventPage struct {
	Items []eventlog.Summary `json:"items"`
	// Next is the cursor of the next page (pass it as after), 0 at the end. A page may hold
	// fewer than limit callbacks and still have a next: a search stops after a bounded
	// amount of work.
	Next uint64 `json:"next"`
}

// EventReplay is a replay of callbacks from the log: to one destination, or to wherever
// the live routes send them now.
type EventReplay struct {
	Filter  eventlog.Filter
	To      string // a configured destination
	Reroute bool   // re-evaluate the live routes
	DryRun  bool
	After   uint64 // the cursor of the previous batch
	Limit   int    // callbacks in this batch
}

// EventReplayResult is the answer of POST /api/v1/events/replay: one batch of callbacks,
// oldest first.
type EventReplayResult struct {
	DryRun bool `json:"dry_run"`
	// Matched are the callbacks selected in this batch.
	Matched int `json:"matched"`
	// Deliveries are the deliveries queued (in a dry run: that would be), by destination
	// in Destinations; Events the callbacks they carry.
	Deliveries   int            `json:"deliveries"`
	Destinations map[string]int `json:"destinations"`
	Events       []string       `json:"events"`
	// Skipped are the selected callbacks not queued, and why (no route matches now, say).
	Skipped []SkippedEvent `json:"skipped"`
	// Next is the cursor of the next batch (pass it as after), 0 when the selection is done.
	Next uint64 `json:"next"`
}

// SkippedEvent is a callback a replay did not queue.
type SkippedEvent struct {
	EventID string `json:"event_id"`
	Reason  string `json:"reason"`
}

// Replay batches.
const (
	DefaultReplayLimit = 1000
	MaxReplayLimit     = 10000
	// streamKeepAlive is how often a quiet stream sends a comment, so that proxies keep it
	// open and a client that left is noticed.
	streamKeepAlive = 15 * time.Second
)

// eventFilterParams are the query parameters of a filter.
var eventFilterParams = []string{"since", "until", "app", "command", "route", "destination", "outcome", "field"}

func mountEvents(api *gin.RouterGroup, ev Events) {
	api.GET("/events", func(c *gin.Context) { listEvents(c, ev) })
	api.GET("/events/stream", func(c *gin.Context) { streamEvents(c, ev) })
	api.GET("/events/:id", func(c *gin.Context) {
		d, err := ev.Event(c.Request.Context(), c.Param("id"))
		answer(c, d, eventError(err))
	})
	api.POST("/events/replay", func(c *gin.Context) { replayEvents(c, ev) })
}

func listEvents(c *gin.Context, ev Events) {
	q := c.Request.URL.Query()
	if err := knownParams(q, append(eventFilterParams, "limit", "after")...); err != nil {
		fail(c, err)
		return
	}
	f, err := eventFilter("", q.Get, q["field"])
	if err != nil {
		fail(c, err)
		return
	}
	after, limit, err := pageParams(q)
	if err != nil {
		fail(c, err)
		return
	}
	items, next, err := ev.SearchEvents(c.Request.Context(), f, after, int(limit))
	if items == nil {
		items = []eventlog.Summary{}
	}
	answer(c, EventPage{Items: items, Next: next}, eventError(err))
}

// eventReplayRequest is the body of POST /api/v1/events/replay.
type eventReplayRequest struct {
	Filter *struct {
		Since       string   `json:"since"`
		Until       string   `json:"until"`
		App         string   `json:"app"`
		Command     string   `json:"command"`
		Route       string   `json:"route"`
		Destination string   `json:"destination"`
		Outcome     string   `json:"outcome"`
		Field       []string `json:"field"`
	} `json:"filter"`
	To      string `json:"to"`
	Reroute bool   `json:"reroute"`
	DryRun  bool   `json:"dry_run"`
	After   uint64 `json:"after"`
	Limit   int    `json:"limit"`
}

func replayEvents(c *gin.Context, ev Events) {
	var req eventReplayRequest
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if errors.Is(err, io.EOF) {
			err = &ParamError{"body", `empty: want {"filter": {"since": ...}, "to": "destination"} or "reroute": true`}
		} else {
			err = bodyError(err)
		}
		fail(c, err)
		return
	}
	if dec.More() {
		fail(c, &ParamError{"body", "more than one JSON value"})
		return
	}
	r := EventReplay{To: req.To, Reroute: req.Reroute, DryRun: req.DryRun, After: req.After, Limit: req.Limit}
	switch {
	case req.To != "" && req.Reroute:
		fail(c, &ParamError{"to", `give "to" (a destination) or "reroute": true, not both`})
		return
	case req.To == "" && !req.Reroute:
		fail(c, &ParamError{"to", `give "to" (a destination) or "reroute": true`})
		return
	case req.Filter == nil || req.Filter.Since == "":
		fail(c, &ParamError{"filter.since", "required: a replay covers a time range of the log"})
		return
	case req.Limit < 0 || req.Limit > MaxReplayLimit:
		fail(c, &ParamError{"limit", fmt.Sprintf("%d: want 1 to %d", req.Limit, MaxReplayLimit)})
		return
	case req.Limit == 0:
		r.Limit = DefaultReplayLimit
	}
	fl := req.Filter
	values := map[string]string{"since": fl.Since, "until": fl.Until, "app": fl.App, "command": fl.Command,
		"route": fl.Route, "destination": fl.Destination, "outcome": fl.Outcome}
	var err error
	if r.Filter, err = eventFilter("filter.", func(name string) string { return values[name] }, fl.Field); err != nil {
		fail(c, err)
		return
	}
	res, err := ev.ReplayEvents(c.Request.Context(), r)
	err = eventError(err)
	if pe := (*ParamError)(nil); errors.As(err, &pe) && pe.Param != "to" && !strings.HasPrefix(pe.Param, "filter.") {
		pe.Param = "filter." + pe.Param // the filter's fields are named so in this body
	}
	answer(c, res, err)
}

// streamEvents serves GET /api/v1/events/stream: server-sent events, one `data:` line of
// Entry JSON per record the filter selects, as they are stored, until the client leaves
// or the gateway stops.
func streamEvents(c *gin.Context, ev Events) {
	q := c.Request.URL.Query()
	if err := knownParams(q, eventFilterParams...); err != nil {
		fail(c, err)
		return
	}
	f, err := eventFilter("", q.Get, q["field"])
	if err == nil {
		err = eventError(ev.CheckEventFilter(f))
	}
	if err != nil {
		fail(c, err)
		return
	}
	w := c.Writer
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	var mu sync.Mutex // one writer at a time: the records and the keep-alives
	write := func(s string) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := w.WriteString(s); err != nil {
			return err
		}
		w.Flush()
		return nil
	}
	if write(": following the event log\n\n") != nil {
		return
	}
	go func() {
		t := time.NewTicker(streamKeepAlive)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if write(": keep-alive\n\n") != nil {
					cancel()
					return
				}
			}
		}
	}()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err = ev.FollowEvents(ctx, f, func(e eventlog.Entry) error {
		b.Reset()
		b.WriteString("data: ")
		if err := enc.Encode(e); err != nil {
			return err
		}
		b.WriteString("\n") // Encode ended the line; a blank line ends the event
		return write(b.String())
	})
	if err != nil && ctx.Err() == nil {
		msg, _ := json.Marshal(apiError{Error: err.Error()})
		_ = write("event: error\ndata: " + string(msg) + "\n\n")
	}
}

// eventFilter reads a filter through get and the repeated field values (Name=Value);
// prefix goes before the names in errors.
func eventFilter(prefix string, get func(string) string, fields []string) (eventlog.Filter, error) {
	f := eventlog.Filter{App: get("app"), Command: get("command"), Route: get("route"),
		Destination: get("destination"), Outcome: get("outcome")}
	times, err := parseFilter(prefix, get)
	if err != nil {
		return f, err
	}
	f.Since, f.Until = times.Since, times.Until
	for _, fv := range fields {
		name, value, ok := strings.Cut(fv, "=")
		if !ok || name == "" {
			return f, &ParamError{prefix + "field", fmt.Sprintf("%q: want NAME=VALUE, such as MsgKey=%s", fv, url.QueryEscape("144115198_1_1700000000"))}
		}
		f.Fields = append(f.Fields, eventlog.Field{Name: name, Value: value})
	}
	return f, nil
}

// eventError gives the event log's errors their status: a filter it cannot apply is the
// request's fault (400), a callback it does not know or a log that is off is 404.
func eventError(err error) error {
	var fe *eventlog.FilterError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return &ParamError{Param: fe.Param, Message: fe.Message}
	case errors.Is(err, eventlog.ErrNotFound), errors.Is(err, eventlog.ErrOff):
		return logNotFound{err}
	}
	return err
}

// logNotFound is an error that answers 404 with its own text.
type logNotFound struct{ error }

func (logNotFound) Is(target error) bool { return target == ErrNotFound }
func (e logNotFound) Unwrap() error      { return e.error }
