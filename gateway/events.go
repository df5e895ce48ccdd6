package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/intake"
	"github.com/fanout-gw/fanout/gateway/queue"
)

// The event log's wiring: its stream in the queue, the writer the intake and the workers
// hand their records to, its metrics, and its end at Stop.

var _ eventlog.Store = (*queue.EventLog)(nil)

// openEventLog opens the event log on q when log.enabled is set: when the queue opens, and
// again each time it is reopened after its store failed. A log that cannot be opened (the
// store refuses the stream's size, say) is logged and left off: the gateway runs without it
// rather than not at all.
func (g *Gateway) openEventLog(ctx context.Context, q *queue.Queue, cfg config.EventLog) {
	if !cfg.Enabled {
		return
	}
	var events *eventlog.Log
	store, err := q.OpenEventLog(ctx, queue.EventLogOptions{MaxAge: cfg.MaxAge, MaxBytes: cfg.MaxBytes,
		Failed: func(records int, err error) { events.Failed(records, err) }})
	if err != nil {
		g.log.Error("the event log cannot be opened; running without it (fanout trace, events and replay answer that it is off)", "err", err)
		return
	}
	events = eventlog.New(store, eventlog.Options{Index: cfg.Index, Logger: g.log})
	events.Start()
	g.eventStore.Store(store)
	g.events.Store(events)
}

// eventLogStopWait bounds what closing the event log adds to a stop.
const eventLogStopWait = 2 * time.Second

// closeEventLog writes what the log has buffered and closes it, within ctx and
// eventLogStopWait, before its queue closes (at Stop, or when its store failed). Records
// the store did not confirm by then may be lost: that is logged, and is no failure of the
// stop (the log is history; no delivery depends on it). Callbacks and deliveries find the
// log off from here until it opens again.
func (g *Gateway) closeEventLog(ctx context.Context) {
	events := g.events.Swap(nil)
	store := g.eventStore.Swap(nil)
	if events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, eventLogStopWait)
	defer cancel()
	if err := events.Close(ctx); err != nil {
		g.log.Warn("event log: records not confirmed by the store at stop may be lost", "err", err)
	}
	if store != nil {
		store.Close()
	}
}

// eventRecorder is the intake's Recorder: nil when the log is off. The intake is built
// before the queue, hence the log, opens, and outlives a reopening: the log is looked up
// when a callback arrives.
func (g *Gateway) eventRecorder(cfg config.EventLog) intake.Recorder {
	if !cfg.Enabled {
		return nil
	}
	return liveEventLog{g}
}

// liveEventLog hands a callback to the event log open now, if any.
type liveEventLog struct{ g *Gateway }

func (r liveEventLog) Received(cb *eventlog.Callback) { r.g.events.Load().Received(cb) }

// logAttempt writes an HTTP attempt to the event log.
func (g *Gateway) logAttempt(a delivery.Attempt) {
	events := g.events.Load()
	if events == nil {
		return
	}
	events.Attempted(eventlog.Attempt{EventID: a.EventID, Destination: a.Destination, Number: a.Number, Status: a.Status,
		Result: a.Result, Started: a.Started, Took: a.Took, Err: a.Err, Respond: a.Respond})
}

// logEnd writes how a round ended to the event log: a retry and when it is due, or a dead
// letter (or, on_exhausted: block, a blocked lane) and why. A delivery shows in its 2xx
// attempt, and a round cut short by a stop is no end.
func (g *Gateway) logEnd(e delivery.End) {
	events := g.events.Load()
	if events == nil || e.HandedBack {
		return
	}
	switch e.Outcome {
	case delivery.Retry:
		events.Ended(eventlog.End{EventID: e.Job.EventID, Destination: e.Job.Destination, Attempt: e.Attempt, Due: e.Due})
	case delivery.Dead:
		events.Ended(eventlog.End{EventID: e.Job.EventID, Destination: e.Job.Destination, Attempt: max(e.Attempt, 0),
			Dead: true, Blocked: e.Blocked, Reason: e.DeadReason})
	}
}

// eventLogCollector reports the event log's size at scrape time, and the records it
// dropped. Both read 0 while the log is off.
type eventLogCollector struct{ g *Gateway }

var (
	eventLogBytesDesc = prometheus.NewDesc("fanout_event_log_bytes",
		"Size of the event log in the store (bounded by log.max_bytes).", nil, nil)
	eventLogDroppedDesc = prometheus.NewDesc("fanout_event_log_dropped_total",
		"Event log records not written: buffer_full (the store was slow) or write_failed (it refused or was unreachable). Callbacks and deliveries are not affected.",
		[]string{"reason"}, nil)
)

func (c *eventLogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- eventLogBytesDesc
	ch <- eventLogDroppedDesc
}

func (c *eventLogCollector) Collect(ch chan<- prometheus.Metric) {
	full, failed := c.g.events.Load().Dropped()
	ch <- prometheus.MustNewConstMetric(eventLogDroppedDesc, prometheus.CounterValue, float64(full), "buffer_full")
	ch <- prometheus.MustNewConstMetric(eventLogDroppedDesc, prometheus.CounterValue, float64(failed), "write_failed")
	size := 0.0
	if s := c.g.eventStore.Load(); s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := s.State(ctx)
		if err != nil {
			return
		}
		size = float64(st.Bytes)
	}
	ch <- prometheus.MustNewConstMetric(eventLogBytesDesc, prometheus.GaugeValue, size)
}
