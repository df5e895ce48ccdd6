package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// openEventLog opens the event log of q with o (limits of a few MiB and a day by default)
// and closes it at the end of the test.
func openEventLog(t testing.TB, q *Queue, o EventLogOptions) *EventLog {
	t.Helper()
	if o.MaxAge == 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 8 << 20
	}
	l, err := q.OpenEventLog(testContext(t), o)
	if err != nil {
		t.Fatalf("OpenEventLog: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

func flushLog(t testing.TB, l *EventLog) {
	t.Helper()
	if err := l.Flush(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

// records collects what a read of the log calls back with.
func records(t testing.TB, read func(fn func(LogRecord) bool) error) []LogRecord {
	t.Helper()
	var out []LogRecord
	if err := read(func(r LogRecord) bool { out = append(out, r); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func describe(rs []LogRecord) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s%s:%s ", r.EventID, r.Index, r.Data)
	}
	return strings.TrimSpace(b.String())
}

// TestEventLogReads writes the records of a few callbacks and reads them back by event,
// by index key, in order and from a time.
func TestEventLogReads(t *testing.T) {
	q := openTest(t, "")
	l := openEventLog(t, q, EventLogOptions{})
	ctx := testContext(t)
	start := time.Now()
	for i := range 3 {
		id := fmt.Sprintf("e%d", i)
		for _, data := range []string{"r" + id, "a" + id} {
			if err := l.Append(id, []byte(data)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.AppendIndex("k"+fmt.Sprint(i%2), []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	flushLog(t, l)

	got := records(t, func(fn func(LogRecord) bool) error { return l.Event(ctx, "e1", fn) })
	if d := describe(got); d != "e1:re1 e1:ae1" {
		t.Errorf("Event(e1) = %s", d)
	}
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Event(ctx, "nothing", fn) }); len(got) != 0 {
		t.Errorf("Event(nothing) = %s", describe(got))
	}
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Event(ctx, "a.b", fn) }); len(got) != 0 {
		t.Errorf("Event(a.b) = %s", describe(got))
	}
	k0 := records(t, func(fn func(LogRecord) bool) error { return l.Index(ctx, "k0", 0, 0, fn) })
	if d := describe(k0); d != "k0:e0 k0:e2" {
		t.Errorf("Index(k0) = %s", d)
	}
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Index(ctx, "k0", k0[1].Seq, 0, fn) }); describe(got) != "k0:e2" {
		t.Errorf("Index(k0) from the second entry = %s", describe(got))
	}
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Index(ctx, "k0", 0, k0[1].Seq, fn) }); describe(got) != "k0:e0" {
		t.Errorf("Index(k0) to the second entry = %s", describe(got))
	}

	all := records(t, func(fn func(LogRecord) bool) error { return l.Scan(ctx, 0, 0, fn) })
	if d := describe(all); d != "e0:re0 e0:ae0 e1:re1 e1:ae1 e2:re2 e2:ae2" {
		t.Errorf("Scan = %s", d)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq || all[i].Time.Before(start) {
			t.Errorf("records out of order or time: %+v", all)
		}
	}
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Scan(ctx, all[2].Seq, all[4].Seq, fn) }); describe(got) != "e1:re1 e1:ae1" {
		t.Errorf("Scan of a range = %s", describe(got))
	}
	n := 0
	if err := l.Scan(ctx, 0, 0, func(LogRecord) bool { n++; return n < 2 }); err != nil || n != 2 {
		t.Errorf("Scan stopped by its callback: %d records, %v", n, err)
	}

	st, err := l.State(ctx)
	if err != nil || st.Records != 9 || st.Bytes == 0 || st.FirstSeq != 1 || st.LastSeq != 9 {
		t.Errorf("State = %+v, %v", st, err)
	}
	if seq, err := l.SeqAt(ctx, start.Add(-time.Hour)); err != nil || seq != 1 {
		t.Errorf("SeqAt(before) = %d, %v", seq, err)
	}
	if seq, err := l.SeqAt(ctx, time.Now().Add(time.Hour)); err != nil || seq != 10 {
		t.Errorf("SeqAt(after) = %d, %v", seq, err)
	}
	if seq, err := l.SeqAt(ctx, all[3].Time); err != nil || seq > all[3].Seq {
		t.Errorf("SeqAt(%v) = %d, %v: want at most %d", all[3].Time, seq, err, all[3].Seq)
	}

	if err := l.Append("bad.id", nil); err == nil {
		t.Errorf("Append with a dot in the id: no error")
	}
}

// TestEventLogReadsManyBatches reads more records than one direct get answers.
func TestEventLogReadsManyBatches(t *testing.T) {
	q := openTest(t, "")
	l := openEventLog(t, q, EventLogOptions{})
	const n = 3*directBatch + 7
	for i := range n {
		if err := l.Append("many", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	flushLog(t, l)
	got := records(t, func(fn func(LogRecord) bool) error { return l.Event(testContext(t), "many", fn) })
	if len(got) != n || string(got[n-1].Data) != fmt.Sprint(n-1) {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
}

// TestEventLogFollow sees the records written after it started, and ends when its context
// does and when the log closes.
func TestEventLogFollow(t *testing.T) {
	q := openTest(t, "")
	l := openEventLog(t, q, EventLogOptions{})
	if err := l.Append("before", []byte("r")); err != nil {
		t.Fatal(err)
	}
	flushLog(t, l)

	var mu sync.Mutex
	var seen []string
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(ctx, func(r LogRecord) {
			mu.Lock()
			seen = append(seen, r.EventID+"/"+string(r.Data))
			mu.Unlock()
		})
	}()
	deadline := time.Now().Add(waitTimeout)
	for i := 0; ; i++ {
		// Follow starts at the end of the log: keep writing until it sees a record.
		if err := l.Append(fmt.Sprintf("after%d", i), []byte("r")); err != nil {
			t.Fatal(err)
		}
		if err := l.AppendIndex("key", nil); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Follow saw nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if !strings.HasPrefix(s, "after") || !strings.HasSuffix(s, "/r") {
			t.Errorf("Follow saw %s", s)
		}
	}

	go func() { done <- l.Follow(context.Background(), func(LogRecord) {}) }()
	time.Sleep(50 * time.Millisecond) // let it start; it must end either way
	l.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Follow after Close: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Follow did not end when the log closed")
	}
}

// TestEventLogRetentionKeepsJobs fills a small log far past its size while jobs wait for a
// destination nobody consumes: the log evicts its oldest records, and every job stays.
func TestEventLogRetentionKeepsJobs(t *testing.T) {
	q := openTest(t, "")
	const maxBytes = 1 << 20
	var failures sync.Map
	l := openEventLog(t, q, EventLogOptions{MaxBytes: maxBytes, Failed: func(err error) { failures.Store(err.Error(), true) }})
	ctx := testContext(t)
	const jobs = 200
	for i := range jobs {
		if err := q.Enqueue(ctx, []Job{testJob(fmt.Sprint(i), "down")}); err != nil {
			t.Fatal(err)
		}
	}
	record := []byte(strings.Repeat("x", 2000))
	for i := range 2000 { // about 4 MB of history
		if err := l.Append(fmt.Sprintf("ev%d", i), record); err != nil {
			t.Fatal(err)
		}
	}
	flushLog(t, l)
	failures.Range(func(k, _ any) bool { t.Errorf("a record was refused: %v", k); return true })

	st, err := l.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes > maxBytes || st.FirstSeq == 1 || st.LastSeq != 2000 {
		t.Errorf("log state %+v: want at most %d bytes, the oldest evicted, the newest kept", st, maxBytes)
	}
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Event(ctx, "ev0", fn) }); len(got) != 0 {
		t.Errorf("the oldest record is still there")
	}
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Event(ctx, "ev1999", fn) }); len(got) != 1 {
		t.Errorf("the newest record is gone")
	}
	if n, _, err := q.Pending(ctx, "down"); err != nil || n != jobs {
		t.Errorf("pending jobs = %d, %v; want %d", n, err, jobs)
	}
}
