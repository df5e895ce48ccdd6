package eventlog_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// The event log against its real store: an embedded JetStream in t.TempDir().

var _ eventlog.Store = (*queue.EventLog)(nil)

const testTimeout = 30 * time.Second

var testIndex = []string{"MsgKey", "From_Account", "To_Account", "GroupId"}

// openStore opens an embedded queue and its event log; both close at the end of the test.
func openStore(t testing.TB, o queue.EventLogOptions) *queue.EventLog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{Dir: t.TempDir(), DeadLetterMaxAge: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	if o.MaxAge == 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 64 << 20
	}
	store, err := q.OpenEventLog(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return store
}

// openLog returns a started log on a fresh store.
func openLog(t testing.TB) *eventlog.Log {
	t.Helper()
	l := eventlog.New(openStore(t, queue.EventLogOptions{}), eventlog.Options{Index: testIndex, Logger: slog.New(slog.DiscardHandler)})
	l.Start()
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// message is a C2C message callback from one user to another.
type message struct {
	key, from, to string
	command       string // default C2C.CallbackAfterSendMsg
	app           string // default 1400000000
	routes        []string
	dests         []string
	at            time.Time
}

func (m message) callback() *eventlog.Callback {
	cmd, app := m.command, m.app
	if cmd == "" {
		cmd = "C2C.CallbackAfterSendMsg"
	}
	if app == "" {
		app = "1400000000"
	}
	body := fmt.Sprintf(`{"CallbackCommand":%q,"From_Account":%q,"To_Account":%q,"MsgKey":%q}`, cmd, m.from, m.to, m.key)
	cb := &eventlog.Callback{
		EventID: tencentim.EventID(app, cmd, []byte(body)), ReceivedAt: m.at, RequestID: "req-" + m.key, App: app, Command: cmd,
		Query: "SdkAppid=" + app + "&CallbackCommand=" + cmd + "&Sign=abc123&RequestTime=1700000000&contenttype=json",
		Body:  []byte(body), Fields: map[string]any{"MsgKey": m.key, "From_Account": m.from, "To_Account": m.to, "MsgSeq": int64(7)},
		Routes: m.routes,
	}
	if cb.ReceivedAt.IsZero() {
		cb.ReceivedAt = time.Now()
	}
	for _, d := range m.dests {
		cb.Deliveries = append(cb.Deliveries, eventlog.Delivery{Destination: d, Routes: m.routes})
	}
	return cb
}

// settle closes nothing but waits until every record handed to l is in the store: it
// writes a marker callback and waits for it to be found.
func settle(t testing.TB, l *eventlog.Log) {
	t.Helper()
	marker := message{key: fmt.Sprintf("marker-%d", time.Now().UnixNano()), from: "marker", to: "marker"}
	l.Received(marker.callback())
	deadline := time.Now().Add(testTimeout)
	for {
		items, _, err := l.Search(ctxT(t), eventlog.Filter{Fields: []eventlog.Field{{Name: "MsgKey", Value: marker.key}}}, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the log did not write a record")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ids(items []eventlog.Summary) []string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = s.Fields["MsgKey"]
	}
	return out
}

// TestTrace records a callback routed to two destinations, one delivered at once, the
// other after two failed attempts and a retry, and reads the whole story back.
func TestTrace(t *testing.T) {
	l := openLog(t)
	m := message{key: "k1", from: "alice", to: "bob", routes: []string{"all", "vip"}, dests: []string{"crm", "audit"}}
	cb := m.callback()
	l.Received(cb)
	l.Attempted(eventlog.Attempt{EventID: cb.EventID, Destination: "crm", Number: 1, Status: 200, Result: "2xx", Started: time.Now(), Took: 3 * time.Millisecond})
	l.Attempted(eventlog.Attempt{EventID: cb.EventID, Destination: "audit", Number: 1, Status: 503, Result: "5xx", Started: time.Now(), Took: time.Millisecond, Err: errors.New(`destination "audit": POST: status 503`)})
	l.Attempted(eventlog.Attempt{EventID: cb.EventID, Destination: "audit", Number: 2, Result: "connection", Started: time.Now(), Took: time.Millisecond, Err: errors.New("connection refused")})
	due := time.Now().Add(time.Minute)
	l.Ended(eventlog.End{EventID: cb.EventID, Destination: "audit", Attempt: 2, Due: due})
	settle(t, l)

	d, err := l.Trace(ctxT(t), cb.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != eventlog.OutcomeRetrying || d.Command != "C2C.CallbackAfterSendMsg" || d.SdkAppID != "1400000000" ||
		d.Fields["MsgKey"] != "k1" || d.Fields["MsgSeq"] != "" || !slices.Equal(d.Routes, []string{"all", "vip"}) {
		t.Errorf("summary: %+v", d.Summary)
	}
	if d.Query != "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json" {
		t.Errorf("query %q: want it without Sign and RequestTime", d.Query)
	}
	if d.BodyEncoding != "json" || string(d.Body) != string(cb.Body) {
		t.Errorf("body %s (%s)", d.Body, d.BodyEncoding)
	}
	crm, audit := d.Deliveries[0], d.Deliveries[1]
	if crm.Destination != "crm" || crm.State != eventlog.OutcomeDelivered || crm.Attempts != 1 || crm.WebhookID != "msg_"+cb.EventID+"_crm" {
		t.Errorf("crm: %+v", crm)
	}
	if audit.State != eventlog.OutcomeRetrying || audit.Attempts != 2 || !audit.Due.Equal(due) || audit.LastResult != "connection" {
		t.Errorf("audit: %+v", audit)
	}
	var kinds []string
	for _, e := range d.Timeline {
		kinds = append(kinds, e.Kind+":"+e.Destination)
	}
	if want := []string{"received:", "attempt:crm", "attempt:audit", "attempt:audit", "retrying:audit"}; !slices.Equal(kinds, want) {
		t.Errorf("timeline %v, want %v", kinds, want)
	}
	if e := d.Timeline[2]; e.Status != 503 || e.Error == "" || e.DurationMS != 1 || e.Attempt != 1 {
		t.Errorf("attempt entry: %+v", e)
	}

	// The delivery ends: the third attempt succeeds.
	l.Attempted(eventlog.Attempt{EventID: cb.EventID, Destination: "audit", Number: 3, Status: 204, Result: "2xx", Started: due})
	settle(t, l)
	d, err = l.Trace(ctxT(t), cb.EventID)
	if err != nil || d.Outcome != eventlog.OutcomeDelivered || d.Deliveries[1].Attempts != 3 || !d.Deliveries[1].Due.IsZero() {
		t.Errorf("after the third attempt: %v %+v", err, d.Summary)
	}

	if _, err := l.Trace(ctxT(t), strings.Repeat("0", 32)); !errors.Is(err, eventlog.ErrNotFound) {
		t.Errorf("Trace of an unknown id: %v", err)
	}
}

// TestReplayOvertaken: a copy's attempt can reach the log before the record of its replay;
// the trace still says delivered, with the copy's attempt as the last one made, and a
// replay after the last attempt says pending.
func TestReplayOvertaken(t *testing.T) {
	l := openLog(t)
	cb := message{key: "r1", from: "alice", to: "bob", routes: []string{"all"}, dests: []string{"crm"}}.callback()
	l.Received(cb)
	l.Attempted(eventlog.Attempt{EventID: cb.EventID, Destination: "crm", Number: 1, Status: 503, Result: "5xx", Started: time.Now()})
	l.Attempted(eventlog.Attempt{EventID: cb.EventID, Destination: "crm", Number: 2, Status: 204, Result: "2xx", Started: time.Now()})
	replayed := time.Now()
	l.Attempted(eventlog.Attempt{EventID: cb.EventID, Destination: "crm", Number: 1, Status: 204, Result: "2xx", Started: time.Now()})
	l.Replayed(cb.EventID, "crm", false, replayed)
	settle(t, l)
	d, err := l.Trace(ctxT(t), cb.EventID)
	if err != nil || d.Outcome != eventlog.OutcomeDelivered || d.Deliveries[0].Replayed != 1 || d.Deliveries[0].Attempts != 1 {
		t.Errorf("a replay overtaken by its attempt: %v %+v", err, d.Summary)
	}

	l.Replayed(cb.EventID, "crm", false, time.Now())
	settle(t, l)
	d, err = l.Trace(ctxT(t), cb.EventID)
	if err != nil || d.Outcome != eventlog.OutcomePending || d.Deliveries[0].Replayed != 2 {
		t.Errorf("a replay not attempted yet: %v %+v", err, d.Summary)
	}
}

// TestAttemptBeforeReceived: a worker can attempt a callback before the intake's record of
// it reaches the log, in an earlier block; listing the newest callbacks still finds that
// attempt, and the callback delivered.
func TestAttemptBeforeReceived(t *testing.T) {
	l := openLog(t)
	cb := message{key: "early", from: "alice", to: "bob", routes: []string{"all"}, dests: []string{"crm"}}.callback()
	l.Attempted(eventlog.Attempt{EventID: cb.EventID, Destination: "crm", Number: 1, Status: 200, Result: "2xx", Started: time.Now()})
	settle(t, l) // the attempt's block is stored
	l.Received(cb)
	settle(t, l)
	items, _, err := l.Search(ctxT(t), eventlog.Filter{Outcome: eventlog.OutcomeDelivered}, 0, 10)
	if err != nil || len(items) != 1 || items[0].ID != cb.EventID {
		t.Errorf("delivered callbacks: %v %+v, want the one attempted before its received record was written", err, items)
	}
}

// TestSearchFilters lists callbacks by each filter, newest first, page by page.
func TestSearchFilters(t *testing.T) {
	l := openLog(t)
	msgs := []message{
		{key: "m0", from: "alice", to: "bob", routes: []string{"all"}, dests: []string{"crm"}},
		{key: "m1", from: "bob", to: "alice", routes: []string{"all", "vip"}, dests: []string{"crm", "audit"}},
		{key: "m2", from: "alice", to: "carol", routes: []string{"all"}, dests: []string{"crm"}, app: "1400000001"},
		{key: "m3", from: "carol", to: "alice", command: "Group.CallbackAfterSendMsg"},
		{key: "m4", from: "alice", to: "bob", routes: []string{"all", "vip"}, dests: []string{"crm", "audit"}},
	}
	cbs := make([]*eventlog.Callback, len(msgs))
	var mid time.Time // between m1 and m2
	for i, m := range msgs {
		if i == 2 {
			mid = time.Now()
		}
		m.at = time.Now()
		cbs[i] = m.callback()
		l.Received(cbs[i])
	}
	end := time.Now() // before the settle marker
	ok := func(i int, dest string) {
		l.Attempted(eventlog.Attempt{EventID: cbs[i].EventID, Destination: dest, Number: 1, Status: 200, Result: "2xx", Started: time.Now()})
	}
	ok(0, "crm")
	ok(1, "crm")
	l.Ended(eventlog.End{EventID: cbs[1].EventID, Destination: "audit", Dead: true, Attempt: 1, Reason: "status 400"})
	ok(2, "crm")
	ok(4, "crm")
	ok(4, "audit")
	l.Replayed(cbs[0].EventID, "audit", false, time.Now())
	settle(t, l)

	for _, tt := range []struct {
		name string
		f    eventlog.Filter
		want []string
	}{
		{"everything", eventlog.Filter{Until: end}, []string{"m4", "m3", "m2", "m1", "m0"}},
		{"since", eventlog.Filter{Since: mid, Until: end}, []string{"m4", "m3", "m2"}},
		{"until", eventlog.Filter{Until: mid}, []string{"m1", "m0"}},
		{"app", eventlog.Filter{App: "1400000001"}, []string{"m2"}},
		{"command glob", eventlog.Filter{Command: "Group.*"}, []string{"m3"}},
		{"route", eventlog.Filter{Route: "vip"}, []string{"m4", "m1"}},
		{"destination", eventlog.Filter{Destination: "audit"}, []string{"m4", "m1", "m0"}},
		{"dead", eventlog.Filter{Outcome: "dead"}, []string{"m1"}},
		{"dead at audit", eventlog.Filter{Outcome: "dead", Destination: "audit"}, []string{"m1"}},
		{"delivered at crm", eventlog.Filter{Outcome: "delivered", Destination: "crm"}, []string{"m4", "m2", "m1", "m0"}},
		{"delivered", eventlog.Filter{Outcome: "delivered", Until: end}, []string{"m4", "m2"}},
		{"pending: replayed", eventlog.Filter{Outcome: "pending"}, []string{"m0"}},
		{"no route", eventlog.Filter{Outcome: "no_route", Until: end}, []string{"m3"}},
		{"field", eventlog.Filter{Fields: []eventlog.Field{{Name: "From_Account", Value: "alice"}}, Until: end}, []string{"m4", "m2", "m0"}},
		{"two fields", eventlog.Filter{Fields: []eventlog.Field{{Name: "From_Account", Value: "alice"}, {Name: "To_Account", Value: "bob"}}}, []string{"m4", "m0"}},
		{"field and route", eventlog.Filter{Fields: []eventlog.Field{{Name: "To_Account", Value: "alice"}}, Route: "vip"}, []string{"m1"}},
		{"field with no match", eventlog.Filter{Fields: []eventlog.Field{{Name: "MsgKey", Value: "none"}}}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			items, next, err := l.Search(ctxT(t), tt.f, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(items); !slices.Equal(got, tt.want) || next != 0 {
				t.Errorf("got %v (next %d), want %v", got, next, tt.want)
			}
			// The same, two at a time.
			var paged []string
			for before, pages := uint64(0), 0; ; pages++ {
				items, next, err := l.Search(ctxT(t), tt.f, before, 2)
				if err != nil || pages > 10 {
					t.Fatalf("page %d: %v", pages, err)
				}
				paged = append(paged, ids(items)...)
				if next == 0 {
					break
				}
				before = next
			}
			if !slices.Equal(paged, tt.want) {
				t.Errorf("paged: %v, want %v", paged, tt.want)
			}
		})
	}

	for _, tt := range []struct {
		f     eventlog.Filter
		param string
	}{
		{eventlog.Filter{Outcome: "lost"}, "outcome"},
		{eventlog.Filter{Fields: []eventlog.Field{{Name: "MsgSeq", Value: "7"}}}, "field"},
		{eventlog.Filter{Command: "C2C.[", App: "x"}, "command"},
		{eventlog.Filter{Since: mid, Until: mid}, "until"},
	} {
		_, _, err := l.Search(ctxT(t), tt.f, 0, 10)
		var fe *eventlog.FilterError
		if !errors.As(err, &fe) || fe.Param != tt.param {
			t.Errorf("Search(%+v): %v, want a problem with %s", tt.f, err, tt.param)
		}
	}
}

// TestSelect selects callbacks for a replay, oldest first, a batch at a time, with the
// raw body and the query without its Sign.
func TestSelect(t *testing.T) {
	l := openLog(t)
	var cbs []*eventlog.Callback
	for i := range 7 {
		m := message{key: fmt.Sprintf("s%d", i), from: "alice", to: "bob", routes: []string{"all"}, dests: []string{"crm"}}
		if i%2 == 1 {
			m.from = "bob"
		}
		cb := m.callback()
		cb.Body = append(cb.Body, "  \n"...) // bytes a replay must keep
		cbs = append(cbs, cb)
		l.Received(cb)
	}
	l.Ended(eventlog.End{EventID: cbs[3].EventID, Destination: "crm", Dead: true, Reason: "max attempts"})
	settle(t, l)

	var got []string
	for after, n := uint64(0), 0; ; n++ {
		items, next, err := l.Select(ctxT(t), eventlog.Filter{Since: time.Now().Add(-time.Hour), Command: "C2C.*"}, after, 3)
		if err != nil || n > 5 {
			t.Fatalf("batch %d: %v", n, err)
		}
		for _, s := range items {
			got = append(got, s.ID)
			i := slices.IndexFunc(cbs, func(cb *eventlog.Callback) bool { return cb.EventID == s.ID })
			if i < 0 {
				continue // the settle marker
			}
			if string(s.Body) != string(cbs[i].Body) || strings.Contains(s.Query, "Sign") || s.Command != cbs[i].Command ||
				!slices.Equal(s.Routes, []string{"all"}) || len(s.Deliveries) != 1 || !s.ReceivedAt.Equal(cbs[i].ReceivedAt) {
				t.Errorf("selected %+v", s)
			}
		}
		if next == 0 {
			break
		}
		after = next
	}
	want := []string{}
	for _, cb := range cbs {
		want = append(want, cb.EventID)
	}
	if len(got) != len(want)+1 || !slices.Equal(got[:len(want)], want) {
		t.Errorf("selected %v, want %v and the marker", got, want)
	}

	for _, tt := range []struct {
		name string
		f    eventlog.Filter
		want []int
	}{
		{"field", eventlog.Filter{Fields: []eventlog.Field{{Name: "From_Account", Value: "bob"}}}, []int{1, 3, 5}},
		{"dead", eventlog.Filter{Outcome: "dead"}, []int{3}},
		{"field, one at a time", eventlog.Filter{Fields: []eventlog.Field{{Name: "From_Account", Value: "bob"}}}, []int{1, 3, 5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			limit := 10
			if strings.Contains(tt.name, "one at a time") {
				limit = 1
			}
			var got []string
			for after, n := uint64(0), 0; ; n++ {
				items, next, err := l.Select(ctxT(t), tt.f, after, limit)
				if err != nil || n > 10 {
					t.Fatalf("batch %d: %v", n, err)
				}
				for _, s := range items {
					got = append(got, s.ID)
				}
				if next == 0 {
					break
				}
				after = next
			}
			var want []string
			for _, i := range tt.want {
				want = append(want, cbs[i].EventID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// TestBufferDropsAndCounts hands the log more records than its buffer holds before it
// starts writing: the extra ones are dropped and counted, the others written.
func TestBufferDropsAndCounts(t *testing.T) {
	l := eventlog.New(openStore(t, queue.EventLogOptions{}), eventlog.Options{Index: testIndex, Buffer: 4, Logger: slog.New(slog.DiscardHandler)})
	for i := range 6 {
		l.Received(message{key: fmt.Sprintf("b%d", i), from: "a", to: "b"}.callback())
	}
	if full, failed := l.Dropped(); full != 2 || failed != 0 {
		t.Fatalf("dropped %d (buffer full), %d (write failed): want 2, 0", full, failed)
	}
	l.Start()
	if err := l.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	items, _, err := l.Search(ctxT(t), eventlog.Filter{}, 0, 100)
	if err != nil || !slices.Equal(ids(items), []string{"b3", "b2", "b1", "b0"}) {
		t.Errorf("written: %v %v", ids(items), err)
	}
	l.Received(message{key: "late"}.callback()) // after Close: ignored, not counted
	if full, _ := l.Dropped(); full != 2 {
		t.Errorf("a record after Close counted as dropped")
	}
}

// TestWriteFailuresCounted closes the store under the log: its writes fail, and are counted.
func TestWriteFailuresCounted(t *testing.T) {
	store := openStore(t, queue.EventLogOptions{})
	l := eventlog.New(store, eventlog.Options{Index: testIndex, Logger: slog.New(slog.DiscardHandler)})
	l.Start()
	t.Cleanup(func() { l.Close(context.Background()) })
	store.Close()
	l.Received(message{key: "x", from: "a"}.callback())
	deadline := time.Now().Add(testTimeout)
	for {
		if _, failed := l.Dropped(); failed > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a write to a closed store was not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFollow follows the log with a filter while callbacks come and go.
func TestFollow(t *testing.T) {
	l := openLog(t)
	before := message{key: "f0", from: "alice", to: "bob", dests: []string{"crm"}}.callback()
	l.Received(before)
	settle(t, l)

	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(ctx, eventlog.Filter{Fields: []eventlog.Field{{Name: "From_Account", Value: "alice"}}}, func(e eventlog.Entry) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, e.Kind+":"+e.Destination+":"+e.Fields["MsgKey"])
			if e.Kind == eventlog.KindAttempt && e.EventID != before.EventID {
				return errors.New("enough") // the client went away
			}
			return nil
		})
	}()
	// Follow begins at the end of the log: repeat until it has seen the first record.
	deadline := time.Now().Add(testTimeout)
	for {
		l.Attempted(eventlog.Attempt{EventID: before.EventID, Destination: "crm", Number: 1, Result: "5xx", Status: 500, Started: time.Now()})
		l.Received(message{key: "other", from: "carol"}.callback())
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Follow saw nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := message{key: "f1", from: "alice", to: "dave", dests: []string{"crm"}}.callback()
	l.Received(after)
	l.Attempted(eventlog.Attempt{EventID: after.EventID, Destination: "crm", Number: 1, Result: "2xx", Status: 200, Started: time.Now()})
	select {
	case err := <-done:
		if err == nil || err.Error() != "enough" {
			t.Errorf("Follow returned %v, want the callback's error", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Follow did not stop when its callback failed")
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	for _, g := range got {
		if strings.Contains(g, "other") {
			t.Errorf("Follow passed a callback its filter refuses: %v", got)
		}
	}
	if !slices.Contains(got, "attempt:crm:") || !slices.Contains(got, "received::f1") || got[len(got)-1] != "attempt:crm:" {
		t.Errorf("followed %v", got)
	}
}

// TestOff is the log with log.enabled false: a nil *Log.
func TestOff(t *testing.T) {
	var l *eventlog.Log
	l.Start()
	l.Received(&eventlog.Callback{})
	l.Attempted(eventlog.Attempt{})
	if _, _, err := l.Search(context.Background(), eventlog.Filter{}, 0, 1); !errors.Is(err, eventlog.ErrOff) {
		t.Errorf("Search: %v", err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestSearchInWindows searches a log in small windows: a field value with more entries
// than are read in one go, and a scan back in time, both newest first a page at a time,
// and both oldest first for a replay.
func TestSearchInWindows(t *testing.T) {
	defer eventlog.SetSearchBatches(3, 4)()
	l := openLog(t)
	var alice, all []string
	for i := range 30 {
		m := message{key: fmt.Sprintf("w%02d", i), from: "bob", to: "carol", dests: []string{"crm"}}
		if i%3 != 0 {
			m.from = "alice"
			alice = append(alice, m.key)
		}
		all = append(all, m.key)
		cb := m.callback()
		l.Received(cb)
		l.Attempted(eventlog.Attempt{EventID: cb.EventID, Destination: "crm", Number: 1, Status: 200, Result: "2xx", Started: time.Now()})
	}
	end := time.Now()
	settle(t, l)
	newest := func(s []string) []string {
		out := slices.Clone(s)
		slices.Reverse(out)
		return out
	}
	for _, tt := range []struct {
		name string
		f    eventlog.Filter
		want []string
	}{
		{"field", eventlog.Filter{Fields: []eventlog.Field{{Name: "From_Account", Value: "alice"}}}, newest(alice)},
		{"scan", eventlog.Filter{Until: end}, newest(all)},
		{"scan, delivered", eventlog.Filter{Until: end, Outcome: "delivered"}, newest(all)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for before, pages := uint64(0), 0; ; pages++ {
				items, next, err := l.Search(ctxT(t), tt.f, before, 4)
				if err != nil || pages > 50 {
					t.Fatalf("page %d: %v", pages, err)
				}
				got = append(got, ids(items)...)
				if next == 0 {
					break
				}
				before = next
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
			var sel []string
			for after, batches := uint64(0), 0; ; batches++ {
				items, next, err := l.Select(ctxT(t), tt.f, after, 4)
				if err != nil || batches > 50 {
					t.Fatalf("batch %d: %v", batches, err)
				}
				for _, s := range items {
					sel = append(sel, fanoutKey(s.Body))
				}
				if next == 0 {
					break
				}
				after = next
			}
			if want := newest(tt.want); !slices.Equal(sel, want) {
				t.Errorf("selected %v\nwant %v", sel, want)
			}
		})
	}
}

// fanoutKey is the MsgKey of a callback body.
func fanoutKey(body []byte) string {
	var m struct{ MsgKey string }
	_ = json.Unmarshal(body, &m)
	return m.MsgKey
}

// TestBufferBoundedInBytes hands the log callbacks with large bodies before it starts: the
// buffer takes what fits in its memory bound and drops, and counts, the rest.
func TestBufferBoundedInBytes(t *testing.T) {
	l := eventlog.New(openStore(t, queue.EventLogOptions{}), eventlog.Options{Index: testIndex, Buffer: 100, Logger: slog.New(slog.DiscardHandler)})
	big := make([]byte, 10<<20)
	for i := range 10 {
		cb := message{key: fmt.Sprintf("big%d", i)}.callback()
		cb.Body = big
		l.Received(cb)
	}
	if full, _ := l.Dropped(); full != 4 {
		t.Errorf("dropped %d callbacks of 10 MiB, want 4: the buffer holds at most 64 MiB", full)
	}
	if err := l.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestRetentionEvictsOldest fills a small log past its size: the oldest callbacks leave
// it (their index entries may stay a while, their blocks are gone), the newest are found,
// and nothing fails.
func TestRetentionEvictsOldest(t *testing.T) {
	l := eventlog.New(openStore(t, queue.EventLogOptions{MaxBytes: 1 << 20}), eventlog.Options{Index: testIndex, Logger: slog.New(slog.DiscardHandler)})
	l.Start()
	t.Cleanup(func() { l.Close(context.Background()) })
	rng := rand.New(rand.NewPCG(1, 2))
	var cbs []*eventlog.Callback
	for i := range 1500 { // about 3 MB, that do not compress much
		pad := make([]byte, 1000)
		for j := range pad {
			pad[j] = byte(rng.Uint32())
		}
		cb := message{key: fmt.Sprintf("e%04d", i), from: "alice", to: "bob", dests: []string{"crm"}}.callback()
		cb.Body = []byte(strings.Replace(string(cb.Body), `"MsgKey"`, `"Pad":"`+hex.EncodeToString(pad)+`","MsgKey"`, 1))
		cbs = append(cbs, cb)
		l.Received(cb)
		if i%100 == 99 {
			settle(t, l)
		}
	}
	settle(t, l)
	if full, failed := l.Dropped(); full+failed > 0 {
		t.Fatalf("dropped %d, %d", full, failed)
	}
	if _, err := l.Trace(ctxT(t), cbs[0].EventID); !errors.Is(err, eventlog.ErrNotFound) {
		t.Errorf("the oldest callback: %v, want it evicted", err)
	}
	if items, _, err := l.Search(ctxT(t), eventlog.Filter{Fields: []eventlog.Field{{Name: "MsgKey", Value: "e0000"}}}, 0, 10); err != nil || len(items) != 0 {
		t.Errorf("the oldest callback by MsgKey: %v %v", ids(items), err)
	}
	last := cbs[len(cbs)-1]
	if d, err := l.Trace(ctxT(t), last.EventID); err != nil || d.Fields["MsgKey"] != "e1499" {
		t.Errorf("the newest callback: %v %+v", err, d.Summary)
	}
	items, _, err := l.Search(ctxT(t), eventlog.Filter{Fields: []eventlog.Field{{Name: "From_Account", Value: "alice"}}}, 0, 3)
	if err != nil || !slices.Equal(ids(items), []string{"e1499", "e1498", "e1497"}) {
		t.Errorf("the newest by From_Account: %v %v", ids(items), err)
	}
}
