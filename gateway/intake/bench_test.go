package intake

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/rules"
)

// BenchmarkIntakeEventLog is the callback path with the event log off and on, as the peers
// harness loads it (docs/performance.md): a 600-byte C2C.CallbackAfterSendMsg, each with
// its own MsgKey, matched by two routes (two jobs), stored in an embedded JetStream with
// queue.sync 1s, from 64 concurrent callers. With the log on, the clock stops only once
// every record the callbacks made is written (Close flushes the log): its work in the
// background is counted, not left behind. dropped/op must be 0, or the log did not keep up.
//
//	go test -run '^$' -bench IntakeEventLog -benchtime 20000x -count 5 ./gateway/intake
//
// The ratio of the ns/op (and of the cpu-ns/op) with the log on and off is the log's cost
// on the callback path; the index variants show what each indexed field adds.
func BenchmarkIntakeEventLog(b *testing.B) {
	for _, c := range []struct {
		name  string
		index []string // nil: the log off
	}{
		{"log=off", nil},
		{"log=on", []string{"MsgKey", "From_Account", "To_Account", "GroupId"}}, // the default log.index
		{"log=on,index=MsgKey", []string{"MsgKey"}},
		{"log=on,index=none", []string{}},
	} {
		b.Run(c.name, func(b *testing.B) { benchIntake(b, c.index) })
	}
}

// benchIntake runs the benchmark with the log on and index as log.index, or off (nil).
func benchIntake(b *testing.B, index []string) {
	logOn := index != nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{Dir: b.TempDir(), SyncInterval: time.Second, DeadLetterMaxAge: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	var (
		events *eventlog.Log
		rec    Recorder
	)
	if logOn {
		store, err := q.OpenEventLog(ctx, queue.EventLogOptions{MaxAge: 24 * time.Hour, MaxBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		events = eventlog.New(store, eventlog.Options{Index: index, Logger: slog.New(slog.DiscardHandler)})
		events.Start()
		rec = events
	}

	v, err := tencentim.NewVerifier(tencentim.Options{Apps: []tencentim.App{{SdkAppID: app}}})
	if err != nil {
		b.Fatal(err)
	}
	set, errs := rules.Compile([]rules.RouteSpec{
		{Name: "route-a", Filter: rules.Filter{Commands: []string{afterMsg}, When: `SendMsgResult != 0 || To_Account in ["Jonh", "alice"]`}, To: []string{"sink-a"}},
		{Name: "route-b", Filter: rules.Filter{When: `CallbackCommand == "C2C.CallbackAfterSendMsg"`}, To: []string{"sink-b"}},
	}, nil)
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	live := &Config{Path: "/callback", MaxBodyBytes: 1 << 20, Verifier: v, Rules: set}
	in := New(Options{Live: func() *Config { return live }, Store: q, DedupWindow: 2 * time.Minute, Logger: slog.New(slog.DiscardHandler),
		Events: rec, Metrics: Metrics{
			Callbacks:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"app", "command", "outcome"}),
			CallbackDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d"}),
			RouteMatches:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "m"}, []string{"route"}),
			RuleErrors:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e"}, []string{"route"}),
			Respond:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"destination", "outcome"}),
		}})

	bodies := make([][]byte, b.N)
	text := strings.Repeat("red packet ", 26)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh",`+
			`"MsgSeq":%d,"MsgRandom":2837546,"MsgTime":1557481126,"MsgKey":"%d_2837546_1557481126","OnlineOnlyFlag":1,`+
			`"SendMsgResult":0,"ErrorInfo":"send msg succeed","UnreadMsgNum":0,"MsgBody":[{"MsgType":"TIMTextElem",`+
			`"MsgContent":{"Text":%q}}],"CloudCustomData":"your cloud custom data","EventTime":1670574414123}`, i, i, text)
	}
	rawQuery := query(app, afterMsg)
	addr := netip.MustParseAddr("127.0.0.1")
	var next, failed atomic.Int64
	b.SetParallelism(32) // 64 callers on 2 cores, as wrk's 64 connections
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			a := in.Receive(ctx, &httpapi.Callback{RawQuery: rawQuery, Body: bodies[i], ClientIP: addr, RequestID: "bench"})
			if a.Status != http.StatusOK {
				failed.Add(1)
			}
		}
	})
	if err := events.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d callbacks not answered OK", n)
	}
	full, writeFailed := events.Dropped()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "callbacks/s")
	b.ReportMetric(float64(full+writeFailed)/float64(b.N), "dropped/op")
	// CPU time of the whole process (the intake, the log's writer, the embedded JetStream)
	// per callback: on a machine shared with other work it varies less than ns/op.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time the process used so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
