package gateway

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/intake"
)

// metrics are the Prometheus series docs/operating.md lists, on a registry of their own so that
// two gateways in one test process do not collide.
type metrics struct {
	registry *prometheus.Registry

	callbacks        *prometheus.CounterVec
	callbackDuration prometheus.Histogram
	routeMatches     *prometheus.CounterVec
	ruleErrors       *prometheus.CounterVec
	attempts         *prometheus.CounterVec
	attemptDuration  *prometheus.HistogramVec
	deliveries       *prometheus.CounterVec
	respond          *prometheus.CounterVec
	configHash       prometheus.Gauge
	reloadOK         prometheus.Gauge
	reloadTime       prometheus.Gauge
	destinationPause *prometheus.GaugeVec
	backlogFull      *prometheus.CounterVec
	removed          *prometheus.CounterVec
	orderKeyErrors   *prometheus.CounterVec
}

func newMetrics(g *Gateway) *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.registry.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.callbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fanout_callbacks_total",
		Help: "Callbacks received, by SdkAppid, command and outcome (ok, duplicate, or the rejection reason).",
	}, []string{"app", "command", "outcome"})
	m.callbackDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fanout_callback_duration_seconds",
		Help:    "Time from receiving a callback to answering it.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 1.5, 2},
	})
	m.routeMatches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fanout_route_matches_total", Help: "Callbacks each route matched.",
	}, []string{"route"})
	m.ruleErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fanout_rule_errors_total", Help: "Rule evaluations that failed at run time (counted as no match).",
	}, []string{"route"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fanout_delivery_attempts_total", Help: "HTTP delivery attempts by destination and result (2xx, 5xx, 429, timeout, connection, ...).",
	}, []string{"destination", "result"})
	m.attemptDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fanout_delivery_duration_seconds", Help: "Duration of one HTTP delivery attempt.",
		Buckets: prometheus.DefBuckets,
	}, []string{"destination"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fanout_deliveries_total", Help: "Deliveries finished, by destination and outcome (delivered, dead).",
	}, []string{"destination", "outcome"})
	m.respond = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fanout_respond_total", Help: "Synchronous answers to before callbacks, by destination and outcome (answered, timeout, error_status, bad_answer, unreachable, paused).",
	}, []string{"destination", "outcome"})
	m.configHash = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fanout_config_hash", Help: "Hash of the live config file: the first 48 bits of its SHA-256, shown in hex as config_hash by the admin API and as hash in the logs. Replicas that disagree differ.",
	})
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fanout_config_last_reload_successful", Help: "1 when the last config load succeeded.",
	})
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fanout_config_last_reload_success_timestamp_seconds", Help: "When the config last loaded successfully.",
	})
	m.destinationPause = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fanout_destination_paused", Help: "1 while a destination is paused: failing, or by an operator.",
	}, []string{"destination"})
	m.backlogFull = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fanout_backlog_full_total", Help: "Deliveries dead-lettered at once because their destination's backlog was at max_backlog.",
	}, []string{"destination"})
	m.orderKeyErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fanout_order_key_errors_total", Help: "Callbacks whose order_by failed at run time, sent to the fallback lane (the empty key).",
	}, []string{"destination"})
	for _, c := range []prometheus.Collector{m.callbacks, m.callbackDuration, m.routeMatches, m.ruleErrors,
		m.attempts, m.attemptDuration, m.deliveries, m.respond, m.configHash, m.reloadOK, m.reloadTime, m.destinationPause,
		m.backlogFull, m.orderKeyErrors} {
		f(c)
	}
	m.removed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fanout_removed_deliveries_total", Help: "Deliveries moved to the dead-letter queue because no replica's config names their destination any more.",
	}, []string{"destination"})
	f(m.removed)
	f(&queueCollector{g: g})
	f(&eventLogCollector{g: g})
	f(&laneCollector{g: g})
	return m
}

// track makes the per-route and per-destination series of cur exist, at 0 until something
// is counted, so that rate() and alerts work before the first event; and deletes the series
// of the routes, respond rules, destinations and apps that old had and cur has not, so that
// a removed route is not reported forever. old is nil at the first load.
func (m *metrics) track(old, cur *config.Config) {
	for _, r := range cur.Routes {
		m.routeMatches.WithLabelValues(r.Name)
		m.ruleErrors.WithLabelValues(r.Name)
	}
	for i := range cur.Respond {
		m.ruleErrors.WithLabelValues(respondRuleName(i))
	}
	answering := map[string]bool{}
	for _, r := range cur.Respond {
		answering[r.From] = true
	}
	for _, d := range cur.Destinations {
		for _, outcome := range []string{"delivered", "dead"} {
			m.deliveries.WithLabelValues(d.Name, outcome)
		}
		for _, result := range delivery.AttemptReasons() {
			m.attempts.WithLabelValues(d.Name, result)
		}
		m.attemptDuration.WithLabelValues(d.Name)
		m.backlogFull.WithLabelValues(d.Name)
		if answering[d.Name] {
			for _, outcome := range delivery.RespondOutcomes() {
				m.respond.WithLabelValues(d.Name, outcome)
			}
		} else {
			m.respond.DeletePartialMatch(prometheus.Labels{"destination": d.Name})
		}
	}
	if old == nil {
		return
	}
	for _, r := range old.Routes {
		if !slices.ContainsFunc(cur.Routes, func(c *config.Route) bool { return c.Name == r.Name }) {
			m.routeMatches.DeleteLabelValues(r.Name)
			m.ruleErrors.DeleteLabelValues(r.Name)
		}
	}
	for i := len(cur.Respond); i < len(old.Respond); i++ {
		m.ruleErrors.DeleteLabelValues(respondRuleName(i))
	}
	for _, d := range old.Destinations {
		if cur.Destination(d.Name) != nil {
			continue
		}
		gone := prometheus.Labels{"destination": d.Name}
		m.deliveries.DeletePartialMatch(gone)
		m.attempts.DeletePartialMatch(gone)
		m.attemptDuration.DeletePartialMatch(gone)
		m.backlogFull.DeletePartialMatch(gone)
		m.respond.DeletePartialMatch(gone)
	}
	for _, a := range old.Tencent.Apps {
		if !slices.ContainsFunc(cur.Tencent.Apps, func(c config.App) bool { return c.SdkAppID == a.SdkAppID }) {
			m.callbacks.DeletePartialMatch(prometheus.Labels{"app": a.SdkAppID})
		}
	}
}

// respondRuleName is how a respond rule is named in fanout_rule_errors_total's route
// label (rules.Set.Match reports it so).
func respondRuleName(i int) string { return fmt.Sprintf("respond[%d]", i) }

// intake returns the series the intake counts.
func (m *metrics) intake() intake.Metrics {
	return intake.Metrics{Callbacks: m.callbacks, CallbackDuration: m.callbackDuration, RouteMatches: m.routeMatches,
		RuleErrors: m.ruleErrors, Respond: m.respond, OrderKeyErrors: m.orderKeyErrors}
}

// queueCollector reads queue depths at scrape time, so they are never stale.
type queueCollector struct{ g *Gateway }

var (
	pendingDesc  = prometheus.NewDesc("fanout_queue_pending", "Deliveries stored and not yet finished.", []string{"destination"}, nil)
	oldestDesc   = prometheus.NewDesc("fanout_queue_oldest_age_seconds", "Age of the oldest pending delivery.", []string{"destination"}, nil)
	deadDesc     = prometheus.NewDesc("fanout_dead_letters", "Deliveries in the dead-letter queue.", []string{"destination"}, nil)
	inFlightDesc = prometheus.NewDesc("fanout_delivery_in_flight", "Delivery slots in use in this process (at most the destination's concurrency): HTTP requests in flight, and deliveries holding their slot while they wait for the rate limit or for a paused destination's probe.", []string{"destination"}, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestDesc
	ch <- deadDesc
	ch <- inFlightDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q := c.g.queue.Load()
	rt := c.g.live.Load()
	if q == nil || rt == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, d := range rt.cfg.Destinations {
		if dd := rt.dests[d.Name]; dd != nil && dd.Slots != nil {
			ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(dd.Slots.InUse()), d.Name)
		}
		n, oldest, err := q.Pending(ctx, d.Name)
		if err != nil {
			continue
		}
		age := 0.0
		if !oldest.IsZero() {
			age = time.Since(oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(n), d.Name)
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age, d.Name)
		if dead, err := q.DeadLetterCount(ctx, d.Name); err == nil {
			ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(dead), d.Name)
		}
	}
}
