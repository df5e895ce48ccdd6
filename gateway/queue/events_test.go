package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
		fmt.Fprintf(&b, "%s ", r.Data)
	}
	return strings.TrimSpace(b.String())
}

// appendBlocks writes n blocks, "b<i>" each with its index entry "i<i>".
func appendBlocks(t testing.TB, l *EventLog, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := l.AppendBlock(fmt.Appendf(nil, "b%d", i), fmt.Appendf(nil, "i%d", i), 1); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEventLogReads writes a few blocks and reads them back: the index entries, each with
// its block's position, the blocks by position, and the index from a time.
func TestEventLogReads(t *testing.T) {
	q := openTest(t, "")
	l := openEventLog(t, q, EventLogOptions{})
	ctx := testContext(t)
	start := time.Now()
	appendBlocks(t, l, 0, 5)
	flushLog(t, l)

	entries := records(t, func(fn func(LogRecord) bool) error { return l.Index(ctx, 0, 0, fn) })
	if d := describe(entries); d != "i0 i1 i2 i3 i4" {
		t.Fatalf("Index = %s", d)
	}
	var seqs []uint64
	for i, e := range entries {
		if e.Seq != uint64(i+1) || e.Block == 0 || e.Time.Before(start) {
			t.Errorf("entry %d: %+v", i, e)
		}
		seqs = append(seqs, e.Block)
	}
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Index(ctx, 2, 4, fn) }); describe(got) != "i1 i2" {
		t.Errorf("Index(2, 4) = %s", describe(got))
	}
	blocks := records(t, func(fn func(LogRecord) bool) error { return l.Blocks(ctx, seqs, fn) })
	if d := describe(blocks); d != "b0 b1 b2 b3 b4" {
		t.Errorf("Blocks(all) = %s", d)
	}
	for i, b := range blocks {
		if b.Seq != seqs[i] {
			t.Errorf("block %d at %d, its entry says %d", i, b.Seq, seqs[i])
		}
	}
	some := []uint64{seqs[0], seqs[3], seqs[4], seqs[4] + 100}
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Blocks(ctx, some, fn) }); describe(got) != "b0 b3 b4" {
		t.Errorf("Blocks(some) = %s", describe(got))
	}
	n := 0
	if err := l.Blocks(ctx, seqs, func(LogRecord) bool { n++; return n < 2 }); err != nil || n != 2 {
		t.Errorf("Blocks stopped by its callback: %d blocks, %v", n, err)
	}

	st, err := l.State(ctx)
	if err != nil || st.Blocks != 5 || st.Bytes == 0 || st.FirstSeq != 1 || st.LastSeq != 5 {
		t.Errorf("State = %+v, %v", st, err)
	}
	if first, last, err := l.Bounds(ctx); err != nil || first != 1 || last != 5 {
		t.Errorf("Bounds = %d, %d, %v", first, last, err)
	}
	if seq, err := l.IndexAt(ctx, start.Add(-time.Hour)); err != nil || seq != 1 {
		t.Errorf("IndexAt(before) = %d, %v", seq, err)
	}
	if seq, err := l.IndexAt(ctx, time.Now().Add(time.Hour)); err != nil || seq != 6 {
		t.Errorf("IndexAt(after) = %d, %v", seq, err)
	}
	if seq, err := l.IndexAt(ctx, entries[3].Time); err != nil || seq > entries[3].Seq {
		t.Errorf("IndexAt(%v) = %d, %v: want at most %d", entries[3].Time, seq, err, entries[3].Seq)
	}
}

// TestEventLogReadsManyBatches reads more entries and blocks than one direct get answers.
func TestEventLogReadsManyBatches(t *testing.T) {
	q := openTest(t, "")
	l := openEventLog(t, q, EventLogOptions{})
	const n = 2*directBatch + 7
	for i := 0; i < n; i += eventLogMaxPending / 2 { // the writer holds so many blocks at most
		appendBlocks(t, l, i, min(eventLogMaxPending/2, n-i))
		flushLog(t, l)
	}
	entries := records(t, func(fn func(LogRecord) bool) error { return l.Index(testContext(t), 0, 0, fn) })
	if len(entries) != n || string(entries[n-1].Data) != fmt.Sprint("i", n-1) {
		t.Fatalf("read %d entries, want %d", len(entries), n)
	}
	seqs := make([]uint64, n)
	for i, e := range entries {
		seqs[i] = e.Block
	}
	blocks := records(t, func(fn func(LogRecord) bool) error { return l.Blocks(testContext(t), seqs, fn) })
	if len(blocks) != n || string(blocks[n-1].Data) != fmt.Sprint("b", n-1) {
		t.Fatalf("read %d blocks, want %d", len(blocks), n)
	}
}

// TestEventLogFollow sees the blocks written after it started, and ends when its context
// does and when the log closes.
func TestEventLogFollow(t *testing.T) {
	q := openTest(t, "")
	l := openEventLog(t, q, EventLogOptions{})
	if err := l.AppendBlock([]byte("before"), []byte("i"), 1); err != nil {
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
			seen = append(seen, string(r.Data))
			mu.Unlock()
		})
	}()
	deadline := time.Now().Add(waitTimeout)
	for i := 0; ; i++ {
		// Follow starts at the end of the log: keep writing until it sees a block.
		if err := l.AppendBlock(fmt.Appendf(nil, "after%d", i), []byte("i"), 1); err != nil {
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
		if !strings.HasPrefix(s, "after") {
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
// destination nobody consumes: the log evicts its oldest blocks and entries, and every job
// stays.
func TestEventLogRetentionKeepsJobs(t *testing.T) {
	q := openTest(t, "")
	const maxBytes = 1 << 20
	var failures sync.Map
	l := openEventLog(t, q, EventLogOptions{MaxBytes: maxBytes, Failed: func(_ int, err error) { failures.Store(err.Error(), true) }})
	ctx := testContext(t)
	const jobs = 200
	for i := range jobs {
		if err := q.Enqueue(ctx, []Job{testJob(fmt.Sprint(i), "down")}); err != nil {
			t.Fatal(err)
		}
	}
	block, entry := []byte(strings.Repeat("x", 20000)), []byte(strings.Repeat("i", 2000))
	for i := range 200 { // about 4 MB of history
		if err := l.AppendBlock(block, entry, 1); err != nil {
			t.Fatal(err)
		}
		if i%20 == 19 {
			flushLog(t, l)
		}
	}
	flushLog(t, l)
	failures.Range(func(k, _ any) bool { t.Errorf("a block was refused: %v", k); return true })

	st, err := l.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes > maxBytes || st.FirstSeq == 1 || st.LastSeq != 200 || st.Blocks >= 200 {
		t.Errorf("log state %+v: want at most %d bytes, the oldest evicted, the newest kept", st, maxBytes)
	}
	entries := records(t, func(fn func(LogRecord) bool) error { return l.Index(ctx, 0, 0, fn) })
	last := entries[len(entries)-1]
	if got := records(t, func(fn func(LogRecord) bool) error { return l.Blocks(ctx, []uint64{1, last.Block}, fn) }); len(got) != 1 || got[0].Seq != last.Block {
		t.Errorf("Blocks(oldest, newest) = %d blocks: want the newest only", len(got))
	}
	if n, _, err := q.Pending(ctx, "down"); err != nil || n != jobs {
		t.Errorf("pending jobs = %d, %v; want %d", n, err, jobs)
	}
}

// TestEventLogRefusalCounted: a block whose index entry the store does not take is
// reported with its records.
func TestEventLogRefusalCounted(t *testing.T) {
	q := openTest(t, "")
	var mu sync.Mutex
	failed := 0
	l := openEventLog(t, q, EventLogOptions{Failed: func(records int, _ error) {
		mu.Lock()
		failed += records
		mu.Unlock()
	}})
	if err := l.js.DeleteStream(testContext(t), indexStream); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendBlock([]byte("b"), []byte("i"), 7); err != nil {
		t.Fatal(err)
	}
	flushLog(t, l)
	mu.Lock()
	defer mu.Unlock()
	if failed != 7 {
		t.Errorf("records counted as failed: %d, want 7", failed)
	}
}

// TestEventLogDeletesPreviousStream: the stream of the previous version is deleted when
// the log opens.
func TestEventLogDeletesPreviousStream(t *testing.T) {
	q := openTest(t, "")
	ctx := testContext(t)
	js, err := jetstream.New(q.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: oldEventStream, Subjects: []string{"fanout.events.*", "fanout.index.*"}}); err != nil {
		t.Fatal(err)
	}
	openEventLog(t, q, EventLogOptions{})
	if _, err := js.Stream(ctx, oldEventStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream %s after the log opened: %v, want it deleted", oldEventStream, err)
	}
}
