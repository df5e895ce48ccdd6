package eventlog

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// BenchmarkSearch measures finding callbacks in a large log: by MsgKey (an indexed field:
// the index entries, then the blocks they point to), by event id (a trace), and the newest
// page without a filter.
// The log holds FANOUT_BENCH_EVENTS callbacks (default 10000), each a 600-byte C2C message
// with its MsgKey, From_Account and To_Account indexed and one delivery attempt, written
// before the clock starts; filling it is reported (events/s) with the memory the process
// holds per callback once it is filled (the store's memory is most of it).
//
//	FANOUT_BENCH_EVENTS=1000000 go test -run '^$' -bench Search -benchtime 2000x -timeout 60m ./gateway/eventlog
func BenchmarkSearch(b *testing.B) {
	n := 10000
	if v := os.Getenv("FANOUT_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("FANOUT_BENCH_EVENTS=%q: want a positive number", v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{Dir: b.TempDir(), SyncInterval: time.Second, DeadLetterMaxAge: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	store, err := q.OpenEventLog(ctx, queue.EventLogOptions{MaxAge: 24 * time.Hour, MaxBytes: 16 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	l := New(store, Options{Index: []string{"MsgKey", "From_Account", "To_Account", "GroupId"}})

	heapBefore := heapInUse()
	start := time.Now()
	ids := make([]string, n)
	text := strings.Repeat("red packet ", 26)
	// Written as the log's goroutine writes them under load (full blocks), without its
	// buffer: the fill waits for the store instead of dropping.
	blk := newBlockBuilder(l.records)
	for i := range n {
		key := benchKey(i)
		body := fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"user%d","To_Account":"user%d",`+
			`"MsgSeq":%d,"MsgKey":%q,"SendMsgResult":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":%q}}]}`,
			i%1000, (i+1)%1000, i, key, text)
		ids[i] = tencentim.EventID("1400000000", "C2C.CallbackAfterSendMsg", body)
		now := time.Now()
		l.add(blk, item{cb: &Callback{EventID: ids[i], ReceivedAt: now, RequestID: "req", App: "1400000000",
			Command: "C2C.CallbackAfterSendMsg", Query: "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg",
			Body: body, Fields: map[string]any{"MsgKey": key, "From_Account": fmt.Sprintf("user%d", i%1000), "To_Account": fmt.Sprintf("user%d", (i+1)%1000)},
			Routes: []string{"all"}, Deliveries: []Delivery{{Destination: "crm", Routes: []string{"all"}}}}})
		l.add(blk, item{att: &Attempt{EventID: ids[i], Destination: "crm", Number: 1, Status: 200, Result: "2xx", Started: now, Took: time.Millisecond}})
		if i%2000 == 1999 { // keep the blocks in flight few: a full writer would drop
			if err := store.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	l.flush(blk)
	if err := store.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if full, failed := l.Dropped(); full+failed > 0 {
		b.Fatalf("filling the log dropped %d records: %s", full+failed, l.lastErr)
	}
	fill := time.Since(start)
	st, err := store.State(ctx)
	if err != nil {
		b.Fatal(err)
	}
	perEvent := float64(heapInUse()-heapBefore) / float64(n)
	b.Logf("log of %d callbacks (%d blocks, %d MiB) filled in %s (%.0f callbacks/s); heap %.0f bytes per callback",
		n, st.Blocks, st.Bytes>>20, fill.Round(time.Millisecond), float64(n)/fill.Seconds(), perEvent)

	// The first search reads every index entry from the store; the others, from memory.
	t0 := time.Now()
	if items, _, err := l.Search(ctx, Filter{Fields: []Field{{Name: "MsgKey", Value: benchKey(n / 2)}}}, 0, 10); err != nil || len(items) != 1 {
		b.Fatalf("first search: %v %+v", err, items)
	}
	b.Logf("first search by MsgKey (the index not yet in memory): %s", time.Since(t0).Round(10*time.Microsecond))

	rng := rand.New(rand.NewPCG(1, 2))
	b.Run("MsgKey", func(b *testing.B) {
		for b.Loop() {
			i := rng.IntN(n)
			items, _, err := l.Search(ctx, Filter{Fields: []Field{{Name: "MsgKey", Value: benchKey(i)}}}, 0, 10)
			if err != nil || len(items) != 1 || items[0].ID != ids[i] || items[0].Outcome != OutcomeDelivered {
				b.Fatalf("MsgKey %s: %v %+v", benchKey(i), err, items)
			}
		}
		b.ReportMetric(float64(n), "events")
		b.ReportMetric(perEvent, "heap-B/event")
	})
	b.Run("trace", func(b *testing.B) {
		for b.Loop() {
			i := rng.IntN(n)
			d, err := l.Trace(ctx, ids[i])
			if err != nil || len(d.Timeline) != 2 {
				b.Fatalf("trace %s: %v %+v", ids[i], err, d)
			}
		}
		b.ReportMetric(float64(n), "events")
	})
	b.Run("newest", func(b *testing.B) {
		for b.Loop() {
			items, _, err := l.Search(ctx, Filter{}, 0, 50)
			if err != nil || len(items) != 50 {
				b.Fatalf("newest: %v, %d items", err, len(items))
			}
		}
		b.ReportMetric(float64(n), "events")
	})
}

func benchKey(i int) string { return fmt.Sprintf("%d_2837546_1557481126", i) }

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
