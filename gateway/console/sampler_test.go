package console

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testRegistry has the series the Overview samples, as the gateway registers them.
type testRegistry struct {
	reg        *prometheus.Registry
	callbacks  *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	pending    *prometheus.GaugeVec
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
}

func newTestRegistry() *testRegistry {
	r := &testRegistry{reg: prometheus.NewRegistry()}
	r.callbacks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_callbacks_total"}, []string{"app", "command", "outcome"})
	r.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_deliveries_total"}, []string{"destination", "outcome"})
	r.pending = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fanout_queue_pending"}, []string{"destination"})
	r.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: reloadOKMetric})
	r.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{Name: reloadTimeMetric})
	r.reg.MustRegister(r.callbacks, r.deliveries, r.pending, r.reloadOK, r.reloadTime)
	return r
}

func TestSamplerRates(t *testing.T) {
	r := newTestRegistry()
	s := NewSampler(r.reg, SamplerOptions{Step: 10 * time.Second, Keep: 30 * time.Second})
	t0 := time.Date(2025, 1, 2, 15, 4, 0, 0, time.UTC)

	s.sample(t0) // the base: no point yet
	r.callbacks.WithLabelValues("1400000000", "C2C.CallbackAfterSendMsg", "ok").Add(50)
	r.callbacks.WithLabelValues("1400000000", "Group.CallbackAfterSendMsg", "ok").Add(30)
	r.callbacks.WithLabelValues("other", "other", "unknown_app").Add(5)
	r.deliveries.WithLabelValues("audit", "delivered").Add(20)
	r.deliveries.WithLabelValues("audit", "dead").Add(2)
	r.pending.WithLabelValues("audit").Set(7)
	s.sample(t0.Add(10 * time.Second))
	r.callbacks.WithLabelValues("1400000000", "C2C.CallbackAfterSendMsg", "ok").Add(10)
	r.deliveries.WithLabelValues("crm", "delivered").Add(40)
	r.pending.WithLabelValues("audit").Set(3)
	s.sample(t0.Add(20 * time.Second))

	s.mu.Lock()
	points := append([]point(nil), s.points...)
	s.mu.Unlock()
	if len(points) != 2 {
		t.Fatalf("%d points, want 2", len(points))
	}
	for i, want := range []map[string]map[string]float64{
		{"callbacks": {"ok": 8, "unknown_app": 0.5}, "deliveries": {"audit": 2}, "dead": {"audit": 0.2}, "backlog": {"audit": 7}},
		{"callbacks": {"ok": 1, "unknown_app": 0}, "deliveries": {"audit": 0, "crm": 4}, "dead": {"audit": 0}, "backlog": {"audit": 3}},
	} {
		for series, keys := range want {
			for k, v := range keys {
				if got := points[i].values[series][k]; math.Abs(got-v) > 1e-9 {
					t.Errorf("point %d: %s[%s] = %g, want %g", i, series, k, got, v)
				}
			}
		}
	}

	// Two more samples push the first point out (Keep is three steps).
	s.sample(t0.Add(30 * time.Second))
	s.sample(t0.Add(40 * time.Second))
	s.mu.Lock()
	n, first := len(s.points), s.points[0].at
	s.mu.Unlock()
	if n != 3 || !first.Equal(t0.Add(20*time.Second)) {
		t.Errorf("%d points from %s, want 3 from %s", n, first, t0.Add(20*time.Second))
	}
}

func TestSamplerCounterReset(t *testing.T) {
	a := sample{at: time.Unix(100, 0), values: totals{"callbacks": {"ok": 100}}}
	b := sample{at: time.Unix(110, 0), values: totals{"callbacks": {"ok": 30}}}
	if got := between(a, b).values["callbacks"]["ok"]; got != 3 {
		t.Errorf("rate after a reset = %g, want 3 (counted from 0)", got)
	}
}

// TestHistoryJSON checks the answer's shape: aligned arrays, 0 for a counter before it
// existed, null for a gauge that had no value, and the reload gauges.
func TestHistoryJSON(t *testing.T) {
	r := newTestRegistry()
	r.reloadOK.Set(1)
	r.reloadTime.Set(1735830245.5)
	s := NewSampler(r.reg, SamplerOptions{})
	t0 := time.Now().Add(-time.Minute)
	s.sample(t0)
	r.pending.WithLabelValues("audit").Set(1)
	s.sample(t0.Add(10 * time.Second))
	r.callbacks.WithLabelValues("1400000000", "C2C.CallbackAfterSendMsg", "ok").Add(20)
	r.pending.WithLabelValues("crm").Set(4)
	s.sample(t0.Add(20 * time.Second))

	b, err := json.Marshal(s.History())
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Step   float64                                 `json:"step_seconds"`
		Times  []int64                                 `json:"times"`
		Series map[string]map[string][]json.RawMessage `json:"series"`
		Reload struct {
			LastSuccessful bool      `json:"last_successful"`
			LastSuccessAt  time.Time `json:"last_success_at"`
		} `json:"reload"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	// Two stored points and the live one: the last sample is 40 s old.
	if h.Step != 10 || len(h.Times) != 3 || h.Times[0] != t0.Add(10*time.Second).UnixMilli() {
		t.Fatalf("step %g, times %v", h.Step, h.Times)
	}
	if got := string(h.Series["callbacks"]["ok"][0]) + " " + string(h.Series["callbacks"]["ok"][1]); got != "0 2" {
		t.Errorf("callbacks ok = %s, want 0 2", got)
	}
	if got := string(h.Series["backlog"]["crm"][0]) + " " + string(h.Series["backlog"]["crm"][1]); got != "null 4" {
		t.Errorf("backlog crm = %s, want null 4", got)
	}
	if !h.Reload.LastSuccessful || !h.Reload.LastSuccessAt.Equal(time.Unix(1735830245, 5e8)) {
		t.Errorf("reload %+v", h.Reload)
	}
	for _, name := range []string{"callbacks", "deliveries", "dead", "backlog"} {
		if _, ok := h.Series[name]; !ok {
			t.Errorf("series %s missing from %s", name, b)
		}
	}
}
