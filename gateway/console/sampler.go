package console

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sampler keeps the last hour of the gateway's traffic for the Overview: every Step it
// gathers the gateway's Prometheus registry and stores, per series, the rate of each
// counter since the previous sample (and the value of each gauge). It reads the same
// counters /metrics shows, so the console and Prometheus cannot disagree; what it keeps
// lives in memory and starts again with the process.
type Sampler struct {
	gatherer prometheus.Gatherer
	step     time.Duration
	size     int // points kept
	log      *slog.Logger

	mu     sync.Mutex
	last   sample  // the latest gathered totals: the base of the next rate
	points []point // oldest first, at most size
}

// SamplerOptions configure a Sampler; zero fields take the defaults.
type SamplerOptions struct {
	Step   time.Duration // between samples: 10s
	Keep   time.Duration // how far back the history goes: 1h
	Logger *slog.Logger  // nil = slog.Default()
}

// seriesSpec is one chart's data: a metric summed by one label, optionally restricted to
// one value of another label.
type seriesSpec struct {
	name      string // key in History.Series
	metric    string
	by        string
	where, is string // only samples whose label where is is (both empty: all)
	gauge     bool   // sampled as is; a counter is turned into a per-second rate
}

// overview is what the Overview page draws.
var overview = []seriesSpec{
	{name: "callbacks", metric: "fanout_callbacks_total", by: "outcome"},
	{name: "deliveries", metric: "fanout_deliveries_total", by: "destination", where: "outcome", is: "delivered"},
	{name: "dead", metric: "fanout_deliveries_total", by: "destination", where: "outcome", is: "dead"},
	{name: "backlog", metric: "fanout_queue_pending", by: "destination", gauge: true},
}

// The gauges the Overview shows as they are now.
const (
	reloadOKMetric   = "fanout_config_last_reload_successful"
	reloadTimeMetric = "fanout_config_last_reload_success_timestamp_seconds"
)

// totals are one gathering: series name -> label value -> counter total or gauge value.
type totals map[string]map[string]float64

type sample struct {
	at     time.Time
	values totals
	gauges map[string]float64 // the single gauges, by metric name
}

// point is one step of the history: rates (or gauge values) per series and label value.
type point struct {
	at     time.Time
	values totals
}

// NewSampler returns a Sampler of g. Nothing is gathered until Run.
func NewSampler(g prometheus.Gatherer, opts SamplerOptions) *Sampler {
	if opts.Step <= 0 {
		opts.Step = 10 * time.Second
	}
	if opts.Keep <= 0 {
		opts.Keep = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Sampler{gatherer: g, step: opts.Step, size: max(int(opts.Keep/opts.Step), 1), log: opts.Logger}
}

// Run samples now, then every Step, until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	s.sample(time.Now())
	t := time.NewTicker(s.step)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sample(now)
		}
	}
}

// sample gathers the registry and appends the rates since the previous sample.
func (s *Sampler) sample(now time.Time) {
	cur, err := s.gather(now)
	if err != nil {
		s.log.Warn("console: cannot gather the metrics", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.at.IsZero() {
		s.points = append(s.points, between(s.last, cur))
		if over := len(s.points) - s.size; over > 0 {
			s.points = append(s.points[:0], s.points[over:]...)
		}
	}
	s.last = cur
}

func (s *Sampler) gather(now time.Time) (sample, error) {
	families, err := s.gatherer.Gather()
	if err != nil && len(families) == 0 {
		return sample{}, err
	}
	cur := sample{at: now, values: totals{}, gauges: map[string]float64{}}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	for _, spec := range overview {
		sums := map[string]float64{}
		cur.values[spec.name] = sums
		f := byName[spec.metric]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			if !spec.selects(m) {
				continue
			}
			sums[label(m, spec.by)] += value(m)
		}
	}
	for _, name := range []string{reloadOKMetric, reloadTimeMetric} {
		if f := byName[name]; f != nil && len(f.GetMetric()) > 0 {
			cur.gauges[name] = value(f.GetMetric()[0])
		}
	}
	return cur, nil
}

func (spec seriesSpec) selects(m *dto.Metric) bool {
	if spec.where == "" {
		return true
	}
	return label(m, spec.where) == spec.is
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

// between is the point from a to b: the counters' rates over the interval (a counter that
// went down was reset, and counts from 0), the gauges' values at b.
func between(a, b sample) point {
	dt := b.at.Sub(a.at).Seconds()
	p := point{at: b.at, values: totals{}}
	for _, spec := range overview {
		out := map[string]float64{}
		p.values[spec.name] = out
		for k, v := range b.values[spec.name] {
			if spec.gauge {
				out[k] = v
				continue
			}
			if dt <= 0 {
				continue
			}
			prev := a.values[spec.name][k]
			if v < prev {
				prev = 0
			}
			out[k] = (v - prev) / dt
		}
	}
	return p
}

// History is the answer of the console's overview endpoint: per series, one value per
// time of Times (null where the series had no value then), and the reload gauges.
type History struct {
	StepSeconds float64 `json:"step_seconds"`
	// Times are the ends of the intervals, in Unix milliseconds, oldest first. The last one
	// may be "now", closer to the one before than a step: the interval still running.
	Times  []int64                      `json:"times"`
	Series map[string]map[string]Values `json:"series"`
	Reload Reload                       `json:"reload"`
}

// Reload is the state of the config's last load, from the gateway's gauges.
type Reload struct {
	LastSuccessful bool      `json:"last_successful"`
	LastSuccessAt  time.Time `json:"last_success_at,omitzero"`
}

// Values are one series' values; NaN (no value) is written as null.
type Values []float64

// MarshalJSON writes the values, NaN as null, with the fewest digits that read back the same.
func (v Values) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 8*len(v)+2)
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, x, 'g', -1, 64)
	}
	return append(b, ']'), nil
}

var _ json.Marshaler = Values(nil)

// History returns the stored points and, when the last sample is at least a second old, a
// point for the interval still running, gathered now.
func (s *Sampler) History() History {
	now := time.Now()
	var live *point
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	cur, err := s.gather(now)
	if err == nil && !last.at.IsZero() && now.Sub(last.at) >= time.Second {
		p := between(last, cur)
		live = &p
	}

	s.mu.Lock()
	points := append([]point(nil), s.points...)
	s.mu.Unlock()
	if live != nil {
		points = append(points, *live)
	}
	h := History{StepSeconds: s.step.Seconds(), Times: make([]int64, len(points)), Series: map[string]map[string]Values{}}
	for i, p := range points {
		h.Times[i] = p.at.UnixMilli()
	}
	for _, spec := range overview {
		keys := map[string]Values{}
		for i, p := range points {
			for k, v := range p.values[spec.name] {
				vs := keys[k]
				if vs == nil {
					vs = make(Values, len(points))
					for j := range vs {
						vs[j] = math.NaN()
						if !spec.gauge {
							vs[j] = 0 // a counter that did not exist yet had no traffic
						}
					}
					keys[k] = vs
				}
				vs[i] = v
			}
		}
		h.Series[spec.name] = keys
	}
	if err == nil {
		h.Reload.LastSuccessful = cur.gauges[reloadOKMetric] == 1
		if ts := cur.gauges[reloadTimeMetric]; ts > 0 {
			sec, frac := math.Modf(ts)
			h.Reload.LastSuccessAt = time.Unix(int64(sec), int64(frac*1e9)).UTC()
		}
	}
	return h
}
