package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/httpapi"
)

// fanout trace, events, replay and tail: the event log over the admin API.

const (
	eventTimes = "--since and --until take an RFC 3339 time or a duration back from now (90m, 2h, 1d);\n" +
		"they bound when callbacks were received."
	// traceLimit bounds the callbacks fanout trace shows for one field value.
	traceLimit = 20
)

// eventIDPattern is an event id: 32 lowercase hex digits.
var eventIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// eventOptions are the flags of the event log's commands.
type eventOptions struct {
	admin, token string
	json         bool

	since, until, app, command, route, destination, outcome string
	fields                                                  fieldValues
	limit                                                   int
	after                                                   uint64
	field                                                   string // trace: what a value that is not an id is
	to                                                      string
	reroute, dryRun                                         bool
	batch                                                   int

	set map[string]bool // the flags given
	now func() time.Time
}

// fieldValues is a repeatable --field NAME=VALUE.
type fieldValues []string

func (f *fieldValues) String() string { return strings.Join(*f, ",") }
func (f *fieldValues) Set(v string) error {
	if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
		return fmt.Errorf("%q: want NAME=VALUE, such as MsgKey=144115198_1_1700000000", v)
	}
	*f = append(*f, v)
	return nil
}

// flags returns the flag set of command name with the admin flags, and the filter
// flags unless noFilter.
func (o *eventOptions) flags(name, usage, does string, noFilter bool) *flag.FlagSet {
	fs := newFlagSet(name, usage, does)
	adminFlags(fs, &o.admin, &o.token, &o.json)
	if noFilter {
		return fs
	}
	fs.StringVar(&o.since, "since", "", "only callbacks received at or after this (RFC 3339, or a duration back from now: 2h)")
	fs.StringVar(&o.until, "until", "", "only callbacks received before this (RFC 3339, or a duration back from now)")
	fs.StringVar(&o.app, "app", "", "only callbacks of this SdkAppid")
	fs.StringVar(&o.command, "command", "", "only callbacks of this CallbackCommand (a glob: C2C.*)")
	fs.StringVar(&o.route, "route", "", "only callbacks this route matched")
	fs.StringVar(&o.destination, "destination", "", "only callbacks routed (or replayed) to this destination")
	fs.StringVar(&o.outcome, "outcome", "", "only callbacks with this outcome (at --destination, when given): "+strings.Join(eventlog.Outcomes, ", "))
	fs.Var(&o.fields, "field", "only callbacks whose indexed body field NAME has VALUE (NAME=VALUE; repeatable)")
	return fs
}

// parse parses args with fs and resolves the admin flags; it returns the positional arguments.
func (o *eventOptions) parse(fs *flag.FlagSet, args []string, help io.Writer) ([]string, *adminClient, error) {
	pos, err := parseFlags(fs, args, help)
	if err != nil {
		return nil, nil, err
	}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	adminDefaults(&o.admin, &o.token, o.set["token"])
	c, err := newAdminClient(o.admin, o.token)
	return pos, c, err
}

// filter is the filter flags as they are sent: the query of GET /api/v1/events.
func (o *eventOptions) filter() (url.Values, error) {
	q := url.Values{}
	for _, t := range []struct{ flag, v string }{{"since", o.since}, {"until", o.until}} {
		at, err := pastTime(t.flag, t.v, o.now())
		if err != nil {
			return nil, err
		}
		if at != "" {
			q.Set(t.flag, at)
		}
	}
	for k, v := range map[string]string{"app": o.app, "command": o.command, "route": o.route, "destination": o.destination, "outcome": o.outcome} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for _, f := range o.fields {
		q.Add("field", f)
	}
	return q, nil
}

func newEventOptions() *eventOptions {
	return &eventOptions{set: map[string]bool{}, now: time.Now, limit: 50, field: "MsgKey", batch: httpapi.DefaultReplayLimit}
}

// runEvents lists callbacks from the event log.
func runEvents(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	o := newEventOptions()
	fs := o.flags("events", "[--since T] [--until T] [--app A] [--command C] [--route R] [--destination D] [--outcome O] [--field K=V]... [--limit N] [--after CURSOR]",
		"Lists callbacks from the event log, newest first, with where each delivery stands.\n"+eventTimes, false)
	fs.IntVar(&o.limit, "limit", o.limit, fmt.Sprintf("at most this many (1 to %d)", httpapi.MaxListLimit))
	fs.Uint64Var(&o.after, "after", 0, "continue after this cursor (the next page)")
	pos, c, err := o.parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("events takes no argument (got %q): filter with --field, --since, ... (see fanout events -h)", pos[0])
	}
	if o.limit < 1 || o.limit > httpapi.MaxListLimit {
		return usagef("--limit %d: want 1 to %d", o.limit, httpapi.MaxListLimit)
	}
	q, err := o.filter()
	if err != nil {
		return err
	}
	q.Set("limit", strconv.Itoa(o.limit))
	if o.after > 0 {
		q.Set("after", strconv.FormatUint(o.after, 10))
	}
	ctx, cancel := context.WithTimeout(ctx, dlqTimeout)
	defer cancel()
	var page httpapi.EventPage
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/events", q, nil, &page)
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(stdout, raw)
	}
	if len(page.Items) == 0 {
		fmt.Fprintln(stdout, "no callbacks")
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RECEIVED\tID\tCOMMAND\tOUTCOME\tFIELDS\tDELIVERIES")
		for _, s := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ReceivedAt.UTC().Format("2006-01-02T15:04:05.000Z"), s.ID,
				dash(s.Command), s.Outcome, dash(fieldList(s.Fields)), dash(deliveryList(s.Deliveries)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if page.Next != 0 {
		fmt.Fprintf(stderr, "more callbacks: add --after %d for the next page\n", page.Next)
	}
	return nil
}

// runTrace shows callbacks as timelines: one by its event id, or every one whose MsgKey (or
// --field) is the value given.
func runTrace(ctx context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	o := newEventOptions()
	fs := o.flags("trace", "ID|VALUE [--field NAME]",
		"Shows callbacks from the event log as timelines: when each was received, where it was\n"+
			"routed, every delivery attempt with its status and duration, the retries and their\n"+
			"due times, and where each delivery stands. The argument is an event id (the middle of\n"+
			"webhook-id: msg_<event id>_<destination>), or the value of an indexed field (MsgKey by\n"+
			"default): every callback carrying it is shown, oldest first.", true)
	fs.StringVar(&o.field, "field", o.field, "the indexed body field the value is of")
	pos, c, err := o.parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("trace takes one event id or %s value", o.field)
	}
	ctx, cancel := context.WithTimeout(ctx, dlqTimeout)
	defer cancel()
	value := pos[0]
	var details []eventlog.Detail
	var raws [][]byte
	if eventIDPattern.MatchString(value) && !o.set["field"] {
		var d eventlog.Detail
		raw, err := c.call(ctx, http.MethodGet, "/api/v1/events/"+value, nil, nil, &d)
		var se *statusError
		if err != nil && !(errors.As(err, &se) && se.status == http.StatusNotFound) {
			return err // not "no such callback", which may be a field value that looks like an id
		}
		if err == nil {
			details, raws = append(details, d), append(raws, raw)
		}
	}
	if len(details) == 0 {
		q := url.Values{"field": {o.field + "=" + value}, "limit": {strconv.Itoa(traceLimit)}}
		var page httpapi.EventPage
		if _, err := c.call(ctx, http.MethodGet, "/api/v1/events", q, nil, &page); err != nil {
			return err
		}
		if len(page.Items) == 0 {
			return fmt.Errorf("no callback with %s %s in the event log (it may be older than log.max_age, or evicted by log.max_bytes)", o.field, value)
		}
		for _, s := range slices.Backward(page.Items) {
			var d eventlog.Detail
			raw, err := c.call(ctx, http.MethodGet, "/api/v1/events/"+s.ID, nil, nil, &d)
			if err != nil {
				return err
			}
			details, raws = append(details, d), append(raws, raw)
		}
	}
	for i, d := range details {
		if o.json {
			if err := writeRaw(stdout, compactJSON(raws[i])); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if err := printTrace(stdout, d); err != nil {
			return err
		}
	}
	return nil
}

// compactJSON is raw on one line, for JSON lines output.
func compactJSON(raw []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// printTrace writes a callback as a timeline.
func printTrace(w io.Writer, d eventlog.Detail) error {
	fmt.Fprintf(w, "callback %s  %s  sdkappid %s  request %s\n", d.ID, dash(d.Command), dash(d.SdkAppID), dash(d.RequestID))
	if d.Evicted {
		fmt.Fprintln(w, "  (its received record has left the log: what follows is what remains)")
	}
	if f := fieldList(d.Fields); f != "" {
		fmt.Fprintf(w, "  %s\n", f)
	}
	fmt.Fprintf(w, "  received %s, routes: %s, outcome: %s\n", d.ReceivedAt.UTC().Format(time.RFC3339Nano), dash(strings.Join(d.Routes, ", ")), d.Outcome)
	if d.Duplicates > 0 {
		fmt.Fprintf(w, "  received again %d time(s) within the dedup window (not delivered again)\n", d.Duplicates)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range d.Timeline {
		at := e.At.UTC().Format("15:04:05.000")
		rel := "+" + e.At.Sub(d.ReceivedAt).Round(time.Millisecond).String()
		if d.Evicted {
			rel = ""
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", at, rel, entryLine(e))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.Deliveries) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, dl := range d.Deliveries {
			state := dl.State
			switch {
			case dl.State == eventlog.OutcomeRetrying && !dl.Due.IsZero():
				state += ", next attempt due " + dl.Due.UTC().Format("15:04:05.000")
			case dl.State == eventlog.OutcomeDead, dl.State == eventlog.OutcomeBlocked:
				state += ": " + dl.Reason
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\twebhook-id %s\n", dl.Destination, state, plural(dl.Attempts, "attempt"), dl.WebhookID)
		}
		return tw.Flush()
	}
	return nil
}

// entryLine is one record of a timeline, after its time.
func entryLine(e eventlog.Entry) string {
	switch e.Kind {
	case eventlog.KindReceived:
		var dests []string
		for _, d := range e.Deliveries {
			dests = append(dests, d.Destination)
		}
		s := "received\t" + dash(e.Command)
		if len(dests) > 0 {
			s += " -> " + strings.Join(dests, ", ")
		} else if e.Respond == "" {
			s += " (no route)"
		}
		if e.Respond != "" {
			s += " (answered by " + e.Respond + ")"
		}
		return s
	case eventlog.KindDuplicate:
		return "duplicate\treceived again within the dedup window: not delivered again"
	case eventlog.KindAttempt:
		s := fmt.Sprintf("%s\tattempt %d: %s %s in %s", e.Destination, e.Attempt, status(e.Status), e.Result, duration(e.DurationMS))
		switch {
		case e.RespondTo:
			s = fmt.Sprintf("%s\trespond exchange: %s %s in %s", e.Destination, status(e.Status), e.Result, duration(e.DurationMS))
		case e.Result == "2xx":
			s += ": delivered"
		}
		if e.Error != "" && e.Result != "2xx" {
			s += " (" + oneLine(e.Error) + ")"
		}
		return s
	case eventlog.KindRetrying:
		return fmt.Sprintf("%s\tretrying: attempt %d due %s", e.Destination, e.Attempt+1, e.Due.UTC().Format("15:04:05.000"))
	case eventlog.KindDead:
		return fmt.Sprintf("%s\tdead after attempt %d: %s (in the dead-letter queue)", e.Destination, e.Attempt, e.Reason)
	case eventlog.KindBlocked:
		return fmt.Sprintf("%s\tblocked after attempt %d: %s (its lane waits for an operator: fanout lanes)", e.Destination, e.Attempt, e.Reason)
	case eventlog.KindReplayed:
		how := "replayed from the event log"
		if e.Reroute {
			how += " (routes re-evaluated)"
		}
		return e.Destination + "\t" + how
	}
	return e.Kind + "\t" + oneLine(e.Error)
}

func duration(ms float64) string {
	return (time.Duration(ms * float64(time.Millisecond))).Round(10 * time.Microsecond).String()
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// fieldList shows indexed field values as NAME=VALUE, sorted.
func fieldList(fields map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		out = append(out, k+"="+fields[k])
	}
	return strings.Join(out, " ")
}

// deliveryList shows deliveries as destination:state(attempts).
func deliveryList(ds []eventlog.DeliveryState) string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s:%s(%d)", d.Destination, d.State, d.Attempts))
	}
	return strings.Join(out, " ")
}

// runReplay queues callbacks of the event log again, a batch at a time until the selection
// is done: to a destination (a backfill) or to wherever the live routes send them now.
func runReplay(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	o := newEventOptions()
	fs := o.flags("replay", "--since T [--until T] [filters] (--to DESTINATION | --reroute) [--dry-run]",
		"Queues callbacks from the event log again, oldest first: to one destination (a backfill\n"+
			"of one just added, say) or, with --reroute, to wherever the live routes send them now.\n"+
			"The copies keep their webhook-id and go through the queue like any delivery.\n"+eventTimes, false)
	fs.StringVar(&o.to, "to", "", "send the callbacks to this destination")
	fs.BoolVar(&o.reroute, "reroute", false, "send the callbacks where the live routes send them now")
	fs.BoolVar(&o.dryRun, "dry-run", false, "say what would be queued, queue nothing")
	fs.IntVar(&o.batch, "batch", o.batch, fmt.Sprintf("callbacks per request to the admin API (1 to %d)", httpapi.MaxReplayLimit))
	pos, c, err := o.parse(fs, args, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usagef("replay takes no argument (got %q): select with --since and the filters", pos[0])
	case o.since == "":
		return usagef("replay needs --since: the time range of the log to replay")
	case (o.to == "") == !o.reroute:
		return usagef("replay needs --to DESTINATION or --reroute (one of them)")
	case o.batch < 1 || o.batch > httpapi.MaxReplayLimit:
		return usagef("--batch %d: want 1 to %d", o.batch, httpapi.MaxReplayLimit)
	}
	q, err := o.filter()
	if err != nil {
		return err
	}
	filter := map[string]any{}
	for k, v := range q {
		if k == "field" {
			filter[k] = v
		} else {
			filter[k] = v[0]
		}
	}
	total := httpapi.EventReplayResult{Destinations: map[string]int{}}
	for after := uint64(0); ; {
		req := map[string]any{"filter": filter, "dry_run": o.dryRun, "after": after, "limit": o.batch}
		if o.reroute {
			req["reroute"] = true
		} else {
			req["to"] = o.to
		}
		var r httpapi.EventReplayResult
		callCtx, cancel := context.WithTimeout(ctx, dlqTimeout)
		raw, err := c.call(callCtx, http.MethodPost, "/api/v1/events/replay", nil, req, &r)
		cancel()
		if err != nil {
			if total.Matched > 0 {
				fmt.Fprintf(stderr, "fanout replay: stopped after %d callbacks (%d deliveries queued)\n", total.Matched, total.Deliveries)
			}
			return err
		}
		if o.json {
			if err := writeRaw(stdout, raw); err != nil {
				return err
			}
		}
		total.Matched += r.Matched
		total.Deliveries += r.Deliveries
		total.Skipped = append(total.Skipped, r.Skipped...)
		for d, n := range r.Destinations {
			total.Destinations[d] += n
		}
		if r.Next == 0 {
			break
		}
		after = r.Next
	}
	if o.json {
		return nil
	}
	var by []string
	for _, d := range slices.Sorted(maps.Keys(total.Destinations)) {
		by = append(by, fmt.Sprintf("%s %d", d, total.Destinations[d]))
	}
	dests := ""
	if len(by) > 0 {
		dests = " (" + strings.Join(by, ", ") + ")"
	}
	if o.dryRun {
		fmt.Fprintf(stdout, "dry run: %d callbacks selected, would queue %d deliveries%s\n", total.Matched, total.Deliveries, dests)
	} else {
		fmt.Fprintf(stdout, "%d callbacks selected, queued %d deliveries%s\n", total.Matched, total.Deliveries, dests)
	}
	for _, s := range total.Skipped {
		fmt.Fprintf(stderr, "skipped %s: %s\n", s.EventID, s.Reason)
	}
	return nil
}

// runTail prints the callbacks and attempts the event log records, as they happen.
func runTail(ctx context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	o := newEventOptions()
	fs := o.flags("tail", "[filters]",
		"Prints callbacks, delivery attempts, retries and dead letters as the event log records\n"+
			"them, until interrupted. The filters are those of fanout events; --outcome selects the\n"+
			"records that bring a delivery to that state.\n"+eventTimes, false)
	pos, c, err := o.parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("tail takes no argument (got %q): filter with --field, --destination, ...", pos[0])
	}
	q, err := o.filter()
	if err != nil {
		return err
	}
	err = c.stream(ctx, "/api/v1/events/stream", q, func(data []byte) error {
		if o.json {
			return writeRaw(stdout, data)
		}
		var e eventlog.Entry
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("the stream sent %q: %w", data, err)
		}
		line := entryLine(e)
		if e.Kind == eventlog.KindReceived {
			line += "  " + fieldList(e.Fields)
		}
		_, err := fmt.Fprintf(stdout, "%s  %s  %s\n", e.At.UTC().Format("15:04:05.000"), e.EventID, strings.ReplaceAll(line, "\t", "  "))
		return err
	})
	if ctx.Err() != nil {
		return nil // interrupted: how a tail ends
	}
	return err
}

// stream reads the server-sent events of path and calls fn with each one's data, until ctx
// ends or the stream does.
func (c *adminClient) stream(ctx context.Context, path string, q url.Values, fn func(data []byte) error) error {
	target := c.base + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("GET %s: %w (is fanout serve running there? see --admin)", target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct{ Error string }
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return fmt.Errorf("GET %s: %s: %s", target, resp.Status, msg)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 4<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := []byte(strings.TrimPrefix(line, "data: "))
			if event == "error" {
				var e struct{ Error string }
				_ = json.Unmarshal(data, &e)
				return fmt.Errorf("GET %s: the stream ended: %s", target, e.Error)
			}
			if err := fn(data); err != nil {
				return err
			}
		case line == "":
			event = ""
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	return nil
}
