package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/httpapi"
)

// adminAPI is the gateway as the admin port sees it. What it answers comes from the live
// runtime and the queue; secrets leave it only as "set or not" (and the URL through
// config.URL's redacting String), never through Value.
type adminAPI struct{ g *Gateway }

var _ httpapi.Admin = adminAPI{}

func (a adminAPI) Ready() error { return a.g.readiness() }

func (a adminAPI) Reload(ctx context.Context) error { return a.g.Reload(ctx) }

func (a adminAPI) Metrics() http.Handler {
	return promhttp.HandlerFor(a.g.metrics.registry, promhttp.HandlerOpts{})
}

func (a adminAPI) Token() string { return a.g.live.Load().cfg.Admin.Token.Value() }

// Routes lists the live routes with their match counts, and the respond rules.
func (a adminAPI) Routes(context.Context) (httpapi.Routes, error) {
	cfg := a.g.live.Load().cfg
	matches := a.g.routeMatches()
	// A when may compare with a value from the environment: ${VAR} is expanded in it.
	red := a.newRedactor(nil)
	out := httpapi.Routes{ConfigHash: cfg.HashID(), Routes: []httpapi.RouteInfo{}, Respond: []httpapi.RespondInfo{}}
	for _, r := range cfg.Routes {
		out.Routes = append(out.Routes, httpapi.RouteInfo{
			Name: r.Name, Commands: list(r.Commands), Apps: list(r.Apps), When: red.text(r.When),
			To: list(r.To), Stop: r.Stop, Matches: matches[r.Name],
		})
	}
	for _, r := range cfg.Respond {
		out.Respond = append(out.Respond, httpapi.RespondInfo{
			Commands: list(r.Commands), Apps: list(r.Apps), When: red.text(r.When),
			From: r.From, Timeout: r.Timeout.String(), OnFailure: r.OnFailure,
		})
	}
	return out, nil
}

// routeMatches reads fanout_route_matches_total by route name. The counter is the one
// count of matches there is: it lives as long as the process, across reloads, so the API
// and the metric cannot disagree. Collecting the vector does not create series for routes
// that never matched.
func (g *Gateway) routeMatches() map[string]uint64 {
	ch := make(chan prometheus.Metric)
	go func() {
		g.metrics.routeMatches.Collect(ch)
		close(ch)
	}()
	counts := map[string]uint64{}
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "route" {
				counts[l.GetValue()] = uint64(d.GetCounter().GetValue())
			}
		}
	}
	return counts
}

// Destinations lists the live destinations with their queue depth, dead letters and
// health. A queue that cannot answer for one destination shows as its queue_error.
func (a adminAPI) Destinations(ctx context.Context) (httpapi.Destinations, error) {
	cfg := a.g.live.Load().cfg
	out := httpapi.Destinations{Destinations: []httpapi.DestinationInfo{}}
	for _, d := range cfg.Destinations {
		out.Destinations = append(out.Destinations, a.destination(ctx, d))
	}
	return out, nil
}

// destination is one destination with its queue state and health.
func (a adminAPI) destination(ctx context.Context, d *config.Destination) httpapi.DestinationInfo {
	info := destinationInfo(d)
	if err := a.queueState(ctx, d.Name, &info); err != nil {
		info.QueueError = err.Error()
	}
	h := a.g.destinationHealth(d.Name)
	info.Paused, info.PausedUntil, info.LastError, info.LastErrorAt = h.Paused, h.PausedUntil, h.LastError, h.LastErrorAt
	if h.Paused {
		info.PausedBy = "failures"
		if h.Held {
			info.PausedBy = "operator"
		}
	}
	info.InFlight = a.g.state(d.Name).slots.InUse()
	if q := a.g.queue.Load(); q != nil {
		info.BacklogFull = q.BacklogFull(d.Name)
	}
	return info
}

// destinationInfo is what the config says of d, with its secrets reduced to booleans.
func destinationInfo(d *config.Destination) httpapi.DestinationInfo {
	headers := make([]string, 0, len(d.Headers))
	for name := range d.Headers {
		headers = append(headers, name)
	}
	slices.Sort(headers)
	r := d.Retry
	return httpapi.DestinationInfo{
		Name: d.Name, URL: d.URL.String(), Timeout: d.Timeout.String(), Concurrency: d.Concurrency,
		RateLimit: d.RateLimit.String(),
		Retry: httpapi.RetryInfo{MaxAttempts: r.MaxAttempts, MaxAge: r.MaxAge.String(), Backoff: httpapi.BackoffInfo{
			Initial: r.Backoff.Initial.String(), Max: r.Backoff.Max.String(),
			Multiplier: r.Backoff.Multiplier, Jitter: r.Backoff.Jitter,
		}},
		ForwardQuery:     d.ForwardQuery,
		HasBodyTransform: d.Body != "",
		HasSigningSecret: len(d.SigningSecrets) > 0,
		HasTIMToken:      d.TIMToken != "",
		Headers:          headers,
		MaxBacklog:       d.MaxBacklog.String(),
		OrderBy:          d.OrderBy,
		OnExhausted:      onExhausted(d),
	}
}

// onExhausted is a destination's on_exhausted when it has order_by (it means nothing
// without), "" otherwise.
func onExhausted(d *config.Destination) string {
	if d.OrderBy == "" {
		return ""
	}
	return d.OnExhausted
}

func (a adminAPI) queueState(ctx context.Context, name string, info *httpapi.DestinationInfo) error {
	q := a.g.queue.Load()
	if q == nil {
		return errors.New("queue not open")
	}
	n, oldest, err := q.Pending(ctx, name)
	if err != nil {
		return err
	}
	info.Pending = n
	if !oldest.IsZero() {
		info.OldestPendingAt = oldest.UTC()
		info.OldestPendingAge = max(time.Since(oldest).Seconds(), 0)
	}
	dead, err := q.DeadLetterCount(ctx, name)
	if err != nil {
		return err
	}
	info.DeadLetters = dead
	return nil
}

// list is s, or an empty list for nil, so that JSON shows [] rather than null.
func list(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
