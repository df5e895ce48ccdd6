package eventlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Filter selects callbacks; zero fields select everything.
type Filter struct {
	Since, Until time.Time // received at or after Since, before Until
	App          string    // SdkAppid
	Command      string    // CallbackCommand, or a glob such as C2C.*
	Route        string    // a route it matched
	Destination  string    // a destination it was (or was replayed) routed to
	// Outcome: with Destination, that delivery's state; otherwise the callback's outcome
	// (see Summary.Outcome). One of Outcomes.
	Outcome string
	Fields  []Field // indexed body fields, all of which must hold
}

// Field is an indexed body field and the value it must have.
type Field struct{ Name, Value string }

// IsZero reports a filter that selects everything.
func (f *Filter) IsZero() bool {
	return f.Since.IsZero() && f.Until.IsZero() && f.App == "" && f.Command == "" && f.Route == "" &&
		f.Destination == "" && f.Outcome == "" && len(f.Fields) == 0
}

// FilterError is a filter the log cannot apply, naming the parameter.
type FilterError struct {
	Param, Message string
}

func (e *FilterError) Error() string { return e.Param + ": " + e.Message }

// ErrNotFound is returned for a callback the log has no record of.
var ErrNotFound = errors.New("not found in the event log")

// Check returns why f cannot be applied, or nil.
func (l *Log) Check(f Filter) error {
	if f.Outcome != "" && !slices.Contains(Outcomes, f.Outcome) {
		return &FilterError{"outcome", fmt.Sprintf("%q: want one of %s", f.Outcome, strings.Join(Outcomes, ", "))}
	}
	if _, err := path.Match(f.Command, ""); err != nil {
		return &FilterError{"command", fmt.Sprintf("%q: not a glob: %v", f.Command, err)}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return &FilterError{"until", "must be after since"}
	}
	for _, fd := range f.Fields {
		if !l.Indexed(fd.Name) {
			return &FilterError{"field", fmt.Sprintf("%q is not an indexed field: log.index is [%s]", fd.Name, strings.Join(l.IndexFields(), ", "))}
		}
	}
	return nil
}

// Bounds of the work of one search: past them it answers what it found, with a cursor to
// continue from.
const (
	// writeSlack is how much later than a callback's received time its record may reach
	// the store: time bounds are widened by it, then applied exactly. It covers a block's
	// linger too.
	writeSlack = 5 * time.Second
	// maxWindow is the most blocks read at once when searching back in time.
	maxWindow = 64
	// maxIndexWindow is the most index entries read at once when searching by a field.
	maxIndexWindow = 1 << 16
	// maxScanned and maxFetched bound the records read and the callbacks assembled;
	// maxEntries the index entries read.
	maxScanned = 1 << 21
	maxFetched = 2000
	maxEntries = 1 << 22
)

// Variables so that a test can exercise the windows with a few callbacks.
var (
	// firstWindow is the fewest blocks read first when searching back in time.
	firstWindow = 1
	// firstIndexWindow is the fewest index entries read first when searching by a field.
	firstIndexWindow = 1024
)

// Search returns up to limit callbacks that f selects, newest first, received before the
// cursor before (0: the newest). next is the cursor of the following page, 0 at the end.
// A page may hold fewer than limit callbacks and still have a next cursor: the search
// stops after a bounded amount of work.
func (l *Log) Search(ctx context.Context, f Filter, before uint64, limit int) (items []Summary, next uint64, err error) {
	if l == nil {
		return nil, 0, ErrOff
	}
	if err := l.Check(f); err != nil {
		return nil, 0, err
	}
	s := &search{l: l, f: f, limit: limit, seen: map[string]bool{}}
	if len(f.Fields) > 0 {
		err = s.byIndex(ctx, before)
	} else {
		err = s.byScan(ctx, before)
	}
	return s.items, s.next, err
}

// ErrOff is returned by a nil log: log.enabled is false.
var ErrOff = errors.New("the event log is off (log.enabled: false)")

// Trace returns callback id with its body and every record.
func (l *Log) Trace(ctx context.Context, id string) (Detail, error) {
	if l == nil {
		return Detail{}, ErrOff
	}
	d, found, err := l.detail(ctx, id, 0)
	if err != nil {
		return Detail{}, err
	}
	if !found {
		return Detail{}, fmt.Errorf("callback %s: %w", id, ErrNotFound)
	}
	return d, nil
}

// detail reads and assembles the records of callback id from position from on (0: the
// whole log).
func (l *Log) detail(ctx context.Context, id string, from uint64) (Detail, bool, error) {
	var records []stored
	err := l.event(ctx, id, from, func(r raw) bool {
		records = append(records, decode(r, true))
		return true
	})
	if err != nil {
		return Detail{}, false, err
	}
	d, found := assemble(id, records)
	return d, found, nil
}

// detailSince reads and assembles callback id, received at at: its records are all
// stored after at (less writeSlack), but for the replays, which are later still.
func (l *Log) detailSince(ctx context.Context, id string, at time.Time) (Detail, bool, error) {
	from, err := l.posAt(ctx, at.Add(-writeSlack))
	if err != nil {
		return Detail{}, false, err
	}
	return l.detail(ctx, id, from)
}

// search is one Search in progress.
type search struct {
	l     *Log
	f     Filter
	limit int

	items            []Summary
	next             uint64
	seen             map[string]bool // callbacks already looked at (received twice)
	scanned, fetched int
	entries          int // index entries read
}

// bounds are the positions [lo, hi) a search reads between: the whole log, narrowed by
// the cursor and the time range (widened by writeSlack). toEnd says hi is the end of the log.
func (s *search) bounds(ctx context.Context, before uint64) (lo, hi uint64, toEnd bool, err error) {
	first, last, err := s.l.store.Bounds(ctx)
	if err != nil {
		return 0, 0, false, err
	}
	lo, hi, toEnd = max(first, 1)<<posBits, (last+1)<<posBits, true
	if before > 0 && before < hi {
		hi, toEnd = before, false
	}
	if !s.f.Until.IsZero() {
		u, err := s.l.posAt(ctx, s.f.Until.Add(writeSlack))
		if err != nil {
			return 0, 0, false, err
		}
		if u < hi {
			hi, toEnd = u, false
		}
	}
	if !s.f.Since.IsZero() {
		since, err := s.l.posAt(ctx, s.f.Since.Add(-writeSlack))
		if err != nil {
			return 0, 0, false, err
		}
		lo = max(lo, since)
	}
	return lo, hi, toEnd, nil
}

// windowBack is the start of a window of n blocks ending at hi (exclusive), at least lo.
func windowBack(lo, hi, n uint64) uint64 {
	end := endBlock(hi)
	if end <= n {
		return lo
	}
	return max(lo, (end-n)<<posBits)
}

// windowForward is the end of a window of n blocks starting at lo, at most hi.
func windowForward(lo, hi, n uint64) uint64 {
	return min(hi, (blockOf(lo)+n)<<posBits)
}

// candidate is a callback a search found and has not looked at yet: the position of its
// received record and when it was received, and its records when the search read them all.
type candidate struct {
	seq     uint64
	id      string
	at      time.Time
	records []stored
}

// byScan reads the log back in time, a window of blocks at a time, for received records
// that pass the filter's cheap parts, then assembles each (newest first) to apply the
// rest. The first window usually reaches the end of the log: it then holds every record of
// its callbacks, which are assembled without reading them again.
func (s *search) byScan(ctx context.Context, before uint64) error {
	lo, hi, toEnd, err := s.bounds(ctx, before)
	if err != nil {
		return err
	}
	for window := uint64(firstWindow); hi > lo; window = min(2*window, maxWindow) {
		start := windowBack(lo, hi, window)
		var cands []candidate
		byID := map[string]int{} // index in cands, while collecting their records
		// A callback's attempts can reach the log before its received record, in the
		// block before the window: its records are all in the window only if that block
		// was stored before the callback was received. Otherwise it is read whole.
		before := s.storedBefore(ctx, start)
		// The intake records a callback once it is stored, and a worker may have attempted
		// it by then: the records of no candidate yet are kept, for the received record
		// that follows them (the window that reaches the end of the log is a few blocks).
		early := map[string][]raw{}
		err := s.l.scan(ctx, start, hi, func(r raw) bool {
			s.scanned++
			if kindOf(r.data) != KindReceived {
				if !toEnd {
					return true
				}
				if i, ok := byID[r.id]; ok {
					cands[i].records = append(cands[i].records, decode(r, true))
				} else {
					early[r.id] = append(early[r.id], r)
				}
				return true
			}
			rec := decode(r, true)
			if s.f.received(&rec.entry) {
				c := candidate{seq: r.pos, id: r.id, at: rec.entry.At}
				if toEnd && before(c.at) {
					for _, e := range early[r.id] {
						c.records = append(c.records, decode(e, true))
					}
					c.records = append(c.records, rec)
					byID[r.id] = len(cands)
				}
				cands = append(cands, c)
			}
			return true
		})
		if err != nil {
			return err
		}
		for i := len(cands) - 1; i >= 0; i-- {
			if done, err := s.consider(ctx, cands[i]); done || err != nil {
				return err
			}
		}
		hi, toEnd = start, false
		if s.scanned >= maxScanned && hi > lo {
			s.next = hi
			return nil
		}
	}
	return nil
}

// storedBefore returns whether the block before the one of record position start was
// stored before a given time (true when there is none: the window starts the log).
func (s *search) storedBefore(ctx context.Context, start uint64) func(time.Time) bool {
	b := blockOf(start)
	if b <= 1 {
		return func(time.Time) bool { return true }
	}
	var at time.Time
	if err := s.l.entries(ctx, b-1, b, func(e *blockEntry) bool { at = e.at; return false }); err != nil || at.IsZero() {
		return func(time.Time) bool { return false } // unknown: read each callback whole
	}
	return at.Before
}

// indexed returns the callbacks whose received record, in [from, to), carries the value of
// the filter's first field and passes the filter's cheap parts, oldest first: it reads the
// index entries of the range, then the blocks whose filter may hold the value.
func (s *search) indexed(ctx context.Context, from, to uint64) ([]candidate, error) {
	fd := s.f.Fields[0]
	es, read, err := s.l.withKey(ctx, fieldKey(fd.Name, fd.Value), from, to)
	s.entries += read
	if err != nil || len(es) == 0 {
		return nil, err
	}
	// The field as encode writes it: most records of a block whose filter said yes by
	// chance are left without decoding them.
	needle := appendString(append(appendString(nil, fd.Name), ':'), fd.Value)
	var cands []candidate
	err = s.l.readBlocks(ctx, es, from, to, nil, func(r raw) bool {
		s.scanned++
		head, _, _ := bytes.Cut(r.data, []byte{'\n'})
		if !bytes.Contains(head, needle) || kindOf(r.data) != KindReceived {
			return true
		}
		if rec := decode(r, false); s.f.received(&rec.entry) {
			cands = append(cands, candidate{seq: r.pos, id: r.id, at: rec.entry.At})
		}
		return true
	})
	return cands, err
}

// byIndex reads the index back in time, a window of entries at a time, for the blocks
// that may hold the filter's first field value, and assembles each callback found there
// (newest first) to apply the rest of the filter.
func (s *search) byIndex(ctx context.Context, before uint64) error {
	lo, hi, _, err := s.bounds(ctx, before)
	if err != nil {
		return err
	}
	for window := uint64(firstIndexWindow); hi > lo; window = min(2*window, maxIndexWindow) {
		start := windowBack(lo, hi, window)
		cands, err := s.indexed(ctx, start, hi)
		if err != nil {
			return err
		}
		for i := len(cands) - 1; i >= 0; i-- {
			if done, err := s.consider(ctx, cands[i]); done || err != nil {
				return err
			}
		}
		hi = start
		if (s.scanned >= maxScanned || s.entries >= maxEntries) && hi > lo {
			s.next = hi
			return nil
		}
	}
	return nil
}

// consider assembles candidate c and keeps it if the whole filter holds. done says the
// page is full, or the work bound reached: s.next is then set.
func (s *search) consider(ctx context.Context, c candidate) (done bool, err error) {
	if s.seen[c.id] {
		return false, nil
	}
	s.seen[c.id] = true
	var (
		d     Detail
		found bool
	)
	if c.records != nil {
		d, found = assemble(c.id, c.records)
	} else {
		s.fetched++
		if d, found, err = s.l.detailSince(ctx, c.id, c.at); err != nil {
			return true, err
		}
	}
	if found && s.f.matches(&d.Summary) {
		d.seq = c.seq
		s.items = append(s.items, d.Summary)
	}
	if len(s.items) >= s.limit || s.fetched >= maxFetched {
		s.next = c.seq
		return true, nil
	}
	return false, nil
}

// received applies the parts of f that a received record answers.
func (f *Filter) received(e *Entry) bool {
	switch {
	case !f.Since.IsZero() && e.At.Before(f.Since), !f.Until.IsZero() && !e.At.Before(f.Until):
		return false
	case f.App != "" && e.SdkAppID != f.App:
		return false
	case f.Route != "" && !slices.Contains(e.Routes, f.Route):
		return false
	case f.Command != "":
		if ok, _ := path.Match(f.Command, e.Command); !ok {
			return false
		}
	}
	for _, fd := range f.Fields {
		if e.Fields[fd.Name] != fd.Value {
			return false
		}
	}
	return true
}

// matches applies the whole of f to an assembled callback.
func (f *Filter) matches(s *Summary) bool {
	e := Entry{At: s.ReceivedAt, SdkAppID: s.SdkAppID, Command: s.Command, Routes: s.Routes, Fields: s.Fields}
	if s.Evicted || !f.received(&e) {
		return false
	}
	if f.Destination == "" {
		return f.Outcome == "" || s.Outcome == f.Outcome
	}
	for _, d := range s.Deliveries {
		if d.Destination == f.Destination {
			return f.Outcome == "" || d.State == f.Outcome
		}
	}
	return false
}

// Selected is a callback chosen for a replay: what queuing it again takes.
type Selected struct {
	ID         string
	ReceivedAt time.Time
	RequestID  string
	SdkAppID   string
	Command    string
	Query      string // without Sign and RequestTime
	Body       []byte // as received
	Routes     []string
	Deliveries []Delivery
}

// Select returns up to limit callbacks that f selects, oldest first, after the cursor
// after (0: from the oldest), for a replay. next is the cursor of the following batch, 0
// at the end. Callbacks whose received record has left the log cannot be replayed and
// are not selected. Like Search, it stops after a bounded amount of work.
func (l *Log) Select(ctx context.Context, f Filter, after uint64, limit int) (items []Selected, next uint64, err error) {
	if l == nil {
		return nil, 0, ErrOff
	}
	if err := l.Check(f); err != nil {
		return nil, 0, err
	}
	s := &search{l: l, f: f, limit: limit, seen: map[string]bool{}}
	// The outcome and the destinations a callback was replayed to are known only from all
	// of its records; the rest, from its received record.
	whole := f.Outcome != "" || f.Destination != ""
	take := func(c candidate, rec *stored) (done bool, err error) {
		if s.seen[c.id] {
			return false, nil
		}
		s.seen[c.id] = true
		if whole || rec == nil {
			s.fetched++
			d, found, err := l.detailSince(ctx, c.id, c.at)
			if err != nil {
				return true, err
			}
			if !found || !f.matches(&d.Summary) {
				return s.fetched >= maxFetched && s.stop(c.seq), nil
			}
			items = append(items, selected(c.id, d.Query, d.body, d.Timeline))
		} else {
			items = append(items, selected(c.id, rec.entry.Query, rec.body, []Entry{rec.entry}))
		}
		if len(items) >= limit || s.fetched >= maxFetched {
			return s.stop(c.seq), nil
		}
		return false, nil
	}

	lo, hi, _, err := s.bounds(ctx, 0)
	if err != nil {
		return nil, 0, err
	}
	lo = max(lo, after+1)
	if len(f.Fields) > 0 {
		for window := uint64(firstIndexWindow); lo < hi; window = min(2*window, maxIndexWindow) {
			end := windowForward(lo, hi, window)
			cands, err := s.indexed(ctx, lo, end)
			if err != nil {
				return items, 0, err
			}
			for _, c := range cands {
				if done, err := take(c, nil); done || err != nil {
					return items, s.next, err
				}
			}
			lo = end
			if (s.scanned >= maxScanned || s.entries >= maxEntries) && lo < hi {
				return items, lo - 1, nil
			}
		}
		return items, 0, nil
	}
	for window := uint64(firstWindow); lo < hi; window = min(2*window, maxWindow) {
		end := windowForward(lo, hi, window)
		var recs []stored
		err := l.scan(ctx, lo, end, func(r raw) bool {
			s.scanned++
			if kindOf(r.data) == KindReceived {
				if rec := decode(r, true); f.received(&rec.entry) {
					recs = append(recs, rec)
				}
			}
			return true
		})
		if err != nil {
			return items, 0, err
		}
		for i := range recs {
			c := candidate{seq: recs[i].seq, id: recs[i].entry.EventID, at: recs[i].entry.At}
			if done, err := take(c, &recs[i]); done || err != nil {
				return items, s.next, err
			}
		}
		lo = end
		if s.scanned >= maxScanned && lo < hi {
			return items, lo - 1, nil
		}
	}
	return items, 0, nil
}

// stop ends a search at cursor seq.
func (s *search) stop(seq uint64) bool {
	s.next = seq
	return true
}

// selected builds a Selected from the timeline of a callback (its received record first
// among them).
func selected(id, query string, body []byte, timeline []Entry) Selected {
	out := Selected{ID: id, Query: query, Body: body}
	for _, e := range timeline {
		if e.Kind == KindReceived {
			out.ReceivedAt, out.RequestID, out.SdkAppID, out.Command = e.At, e.RequestID, e.SdkAppID, e.Command
			out.Routes, out.Deliveries = e.Routes, e.Deliveries
			break
		}
	}
	return out
}
