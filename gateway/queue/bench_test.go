package queue

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchBody is a C2C.CallbackAfterSendMsg of about 600 bytes.
var benchBody = []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh",` +
	`"MsgSeq":48374,"MsgRandom":2837546,"MsgTime":1557481126,"MsgKey":"48374_2837546_1557481126",` +
	`"OnlineOnlyFlag":1,"SendMsgResult":0,"ErrorInfo":"send msg succeed","UnreadMsgNum":0,` +
	`"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"` + strings.Repeat("red packet ", 26) + `"}}],` +
	`"CloudCustomData":"your cloud custom data","EventTime":1670574414123}`)

// benchJobs returns the two jobs of one callback; ids must differ per call
// or the dedup window would make every write after the first a duplicate.
func benchJobs(event string) []Job {
	return []Job{
		{EventID: event, Destination: "app-backend", Routes: []string{"all-to-app"}, Query: "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json&ClientIP=1.2.3.4&OptPlatform=RESTAPI", Body: benchBody, ReceivedAt: time.Now(), RequestID: "req-" + event},
		{EventID: event, Destination: "audit", Routes: []string{"vip"}, Query: "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json&ClientIP=1.2.3.4&OptPlatform=RESTAPI", Body: benchBody, ReceivedAt: time.Now(), RequestID: "req-" + event},
	}
}

// benchEvents prepares n distinct job lists outside the timed loop.
func benchEvents(n int) [][]Job {
	out := make([][]Job, n)
	for i := range out {
		out[i] = benchJobs("b" + strconv.Itoa(i) + "-5f2d1c0e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d")
	}
	return out
}

// BenchmarkEnqueue measures the hot path: one callback with two jobs of
// ~600-byte bodies, embedded JetStream with the default sync.
func BenchmarkEnqueue(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		q := openTest(b, "")
		events := benchEvents(b.N)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := q.Enqueue(ctx, events[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
	// Callbacks arrive concurrently; acks of many callbacks then share
	// round trips to the store.
	b.Run("parallel", func(b *testing.B) {
		q := openTest(b, "")
		events := benchEvents(b.N)
		ctx := context.Background()
		var next atomic.Int64
		b.SetParallelism(8)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := q.Enqueue(ctx, events[next.Add(1)-1]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
}

// BenchmarkEncoding compares the stored form of a job end to end (encode,
// publish, wait for the ack): the binary frame that Enqueue uses, and one
// NATS header per field with the body as the payload.
func BenchmarkEncoding(b *testing.B) {
	for _, enc := range []struct {
		name string
		msg  func(j *Job) *nats.Msg
	}{
		{"frame", func(j *Job) *nats.Msg {
			return &nats.Msg{
				Subject: jobsSubjectPrefix + j.Destination,
				Header:  nats.Header{jetstream.MsgIDHeader: []string{j.EventID + "." + j.Destination}},
				Data:    appendFrame(make([]byte, 0, frameSize(j)), j),
			}
		}},
		{"headers", func(j *Job) *nats.Msg {
			h := nats.Header{
				jetstream.MsgIDHeader: []string{j.EventID + "." + j.Destination},
				"Fanout-Event-Id":     []string{j.EventID},
				"Fanout-Destination":  []string{j.Destination},
				"Fanout-Route":        j.Routes,
				"Fanout-Query":        []string{j.Query},
				"Fanout-Received-At":  []string{strconv.FormatInt(j.ReceivedAt.UnixNano(), 10)},
				"Fanout-Request-Id":   []string{j.RequestID},
			}
			return &nats.Msg{Subject: jobsSubjectPrefix + j.Destination, Header: h, Data: j.Body}
		}},
	} {
		b.Run(enc.name, func(b *testing.B) {
			q := openTest(b, "")
			events := benchEvents(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				jobs := events[i]
				futures := make([]jetstream.PubAckFuture, len(jobs))
				for k := range jobs {
					f, err := q.js.PublishMsgAsync(enc.msg(&jobs[k]))
					if err != nil {
						b.Fatal(err)
					}
					futures[k] = f
				}
				for _, f := range futures {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkEncode isolates the frame of one job, without I/O.
func BenchmarkEncode(b *testing.B) {
	j := benchJobs("5f2d1c0e9a8b7c6d5e4f3a2b1c0d9e8f")[0]
	b.Run("frame", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendFrame(make([]byte, 0, frameSize(&j)), &j)
		}
	})
	b.Run("decode frame", func(b *testing.B) {
		frame := appendFrame(nil, &j)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeFrame(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
}
