package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminAPI is the gateway as the admin port sees it.
type adminAPI struct{ g *Gateway }

func (a adminAPI) Ready() error {
	switch {
	case !a.g.ready.Load():
		return errors.New("starting or stopping")
	case a.g.queue == nil || !a.g.queue.Connected():
		return errors.New("queue not connected")
	}
	return nil
}

func (a adminAPI) Reload(ctx context.Context) error { return a.g.Reload(ctx) }

func (a adminAPI) Metrics() http.Handler {
	return promhttp.HandlerFor(a.g.metrics.registry, promhttp.HandlerOpts{})
}

func (a adminAPI) Token() string { return a.g.live.Load().cfg.Admin.Token.Value() }
