package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/intake"
	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// runtime is everything a config compiles to. It is immutable once built: a reload builds
// a new one and swaps the pointer, so a callback in flight finishes on the runtime it
// started with.
type runtime struct {
	cfg    *config.Config
	dests  map[string]*delivery.Destination
	intake *intake.Config // what callbacks are received with
}

func (g *Gateway) build(cfg *config.Config) (*runtime, error) {
	ic, err := CallbackConfig(cfg)
	if err != nil {
		return nil, err
	}
	dests, err := g.destinations(cfg)
	if err != nil {
		return nil, err
	}
	rt := &runtime{cfg: cfg, dests: dests, intake: ic}
	for _, r := range cfg.Respond {
		rt.intake.Respond = append(rt.intake.Respond, intake.Respond{From: r.From, OnFailure: r.OnFailure,
			Responder: &delivery.Responder{Sender: g.sender, Destination: dests[r.From], Timeout: r.Timeout,
				OnFailure: r.OnFailureCode(), Paused: func() bool { return g.destinationHealth(r.From).Paused }}})
	}
	return rt, nil
}

// CallbackConfig is what the intake receives callbacks with under cfg, respond rules
// aside: the path, body limit, trusted proxies, the Sign and SdkAppid checks, and the
// rules. serve builds it on every load; `fanout route` builds it to check a payload as
// serve would.
func CallbackConfig(cfg *config.Config) (*intake.Config, error) {
	var apps []tencentim.App
	for _, a := range cfg.Tencent.Apps {
		apps = append(apps, tencentim.App{SdkAppID: a.SdkAppID, Token: a.Token.Value()})
	}
	v, err := tencentim.NewVerifier(tencentim.Options{Apps: apps, MaxClockSkew: cfg.Tencent.MaxClockSkew, AllowIPs: cfg.Tencent.AllowIPs})
	if err != nil {
		return nil, fmt.Errorf("tencent: %w", err)
	}
	return &intake.Config{Path: cfg.Server.Path, MaxBodyBytes: cfg.Server.MaxBodyBytes,
		TrustedProxies: cfg.Server.TrustedProxies, Verifier: v, Rules: cfg.Rules,
		ExtraCommands: cfg.Tencent.ExtraCommands, OrderBy: orderBy(cfg)}, nil
}

// destinations builds the destinations of cfg. A rate limit that a reload leaves as it was
// keeps its bucket: a reload must not grant a burst.
func (g *Gateway) destinations(cfg *config.Config) (map[string]*delivery.Destination, error) {
	dests := map[string]*delivery.Destination{}
	var errs []error
	old := g.live.Load() // nil at the first load
	for _, d := range cfg.Destinations {
		var limit *delivery.RateLimit
		if r := d.RateLimit; !r.IsZero() {
			limit = delivery.NewRateLimit(r.N, r.Per)
			if old != nil && old.dests[d.Name] != nil {
				if prev, ok := old.dests[d.Name].RateLimit.(*delivery.RateLimit); ok && prev.Same(r.N, r.Per) {
					limit = prev
				}
			}
		}
		dd, err := newDestination(d, limit)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dd.Slots = g.state(d.Name).slots // its limit is set when the runtime goes live
		dests[d.Name] = dd
	}
	return dests, errors.Join(errs...)
}

func newDestination(d *config.Destination, limit *delivery.RateLimit) (*delivery.Destination, error) {
	headers := map[string]string{}
	for k, v := range d.Headers {
		headers[k] = v.Value()
	}
	var secrets []string
	for _, s := range d.SigningSecrets {
		secrets = append(secrets, s.Value())
	}
	r := d.Retry
	dd := delivery.Destination{
		Name: d.Name, URL: d.URL.Value(), URLSecret: d.URL.Whole(), Headers: headers, SigningSecrets: secrets,
		Timeout: d.Timeout, ForwardQuery: d.ForwardQuery, TIMToken: d.TIMToken.Value(),
		BlockExhausted: d.Order != nil && d.OnExhausted == config.OnExhaustedBlock,
		Policy: delivery.Policy{MaxAttempts: r.MaxAttempts, Initial: r.Backoff.Initial, Max: r.Backoff.Max,
			Multiplier: r.Backoff.Multiplier, Jitter: r.Backoff.Jitter, MaxAge: r.MaxAge},
	}
	if limit != nil {
		dd.RateLimit = limit
	}
	if t := d.Transform; t != nil {
		dd.Transform = func(rawQuery string, body []byte) ([]byte, error) {
			q, err := tencentim.ParseQuery(rawQuery)
			if err != nil {
				return nil, err
			}
			return t.Transform(q.SdkAppID, q.CallbackCommand, q.Values(), body)
		}
	}
	if a := d.Success; a != nil {
		dd.Success = func(status int, header http.Header, body []byte) (bool, error) {
			headers := make(map[string]string, len(header))
			for k, v := range header {
				if len(v) > 0 {
					headers[k] = v[0]
				}
			}
			return a.Success(status, headers, body)
		}
	}
	return delivery.NewDestination(dd)
}

// Reload loads the config file again and, when it is valid and changes nothing that needs
// a restart, swaps it in. It applies completely or not at all: the workers of new
// destinations (and of those whose concurrency changed) start before the swap, and if one
// cannot start, those started stop, the old config stays live and the problem is returned.
// A removed destination's worker stops at once; its queued deliveries are moved to the
// dead-letter queue in the background, once no replica's config names it (sweep).
func (g *Gateway) Reload(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	fail := func(err error) error {
		g.metrics.reloadOK.Set(0)
		g.log.Error("config reload failed, the previous config stays live", "err", err)
		return err
	}
	if g.stopped {
		return errors.New("fanout is stopping: the config is not reloaded")
	}
	old := g.live.Load()
	data, err := os.ReadFile(g.opts.ConfigPath)
	if err != nil {
		return fail(fmt.Errorf("cannot read config: %w", err))
	}
	g.loadedFile.Store(config.HashOf(data))
	cfg, probs := config.Parse(g.opts.ConfigPath, data, os.LookupEnv)
	for _, p := range probs.Warnings() {
		g.log.Warn("config", "problem", p.String())
	}
	if cfg == nil {
		return fail(probs.Errors())
	}
	if keys := cfg.RestartOnly(old.cfg); len(keys) > 0 {
		return fail(fmt.Errorf("%s changed: these take effect only on restart; nothing was reloaded", strings.Join(keys, ", ")))
	}
	rt, err := g.build(cfg)
	if err != nil {
		return fail(err)
	}
	// With the queue not open yet, the workers start with it (bringUp), on this config.
	var started map[string]*worker
	q := g.queue.Load()
	if q != nil && g.ready.Load() {
		// The new config is about to go live: start its workers even if the caller (an HTTP
		// request to /-/reload) goes away.
		g.staged.Store(rt)
		started, err = g.startWorkers(context.WithoutCancel(ctx), q, rt)
		if err != nil {
			g.staged.Store(nil)
			return fail(err)
		}
	}
	g.live.Store(rt)
	g.staged.Store(nil)
	for _, d := range old.dests {
		d.MarkReplaced()
	}
	if q != nil && g.ready.Load() {
		g.commitWorkers(rt, started)
		g.sweepSoon()
	}
	g.metrics.track(old.cfg, cfg)
	g.loaded(cfg)
	g.warnBodyLimit(cfg)
	g.log.Info("config reloaded", append(cfg.Diff(old.cfg).LogAttrs(), "hash", cfg.HashID())...)
	return nil
}

// WatchConfig reloads the config whenever the file's content changes, until ctx ends (see
// config.Watch).
func (g *Gateway) WatchConfig(ctx context.Context) {
	config.Watch(ctx, g.opts.ConfigPath, func() string { return g.loadedFile.Load().(string) }, g.log, func() {
		_ = g.Reload(ctx) // logged by Reload
	})
}
