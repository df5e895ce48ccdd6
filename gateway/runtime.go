package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// runtime is everything a config compiles to. It is immutable once built: a reload builds
// a new one and swaps the pointer, so a callback in flight finishes on the runtime it
// started with.
type runtime struct {
	cfg      *config.Config
	verifier *tencentim.Verifier
	dests    map[string]*delivery.Destination
}

func (g *Gateway) build(cfg *config.Config) (*runtime, error) {
	rt := &runtime{cfg: cfg, dests: map[string]*delivery.Destination{}}
	var apps []tencentim.App
	for _, a := range cfg.Tencent.Apps {
		apps = append(apps, tencentim.App{SdkAppID: a.SdkAppID, Token: a.Token.Value()})
	}
	v, err := tencentim.NewVerifier(tencentim.Options{Apps: apps, MaxClockSkew: cfg.Tencent.MaxClockSkew, AllowIPs: cfg.Tencent.AllowIPs})
	if err != nil {
		return nil, fmt.Errorf("tencent: %w", err)
	}
	rt.verifier = v
	var errs []error
	var old *runtime
	if g != nil {
		old = g.live.Load()
	}
	for _, d := range cfg.Destinations {
		var limit *delivery.RateLimit
		if r := d.RateLimit; !r.IsZero() {
			limit = delivery.NewRateLimit(r.N, r.Per)
			if old != nil && old.dests[d.Name] != nil {
				if prev, ok := old.dests[d.Name].RateLimit.(*delivery.RateLimit); ok && prev.Same(r.N, r.Per) {
					limit = prev // keep the bucket: a reload must not grant a burst
				}
			}
		}
		dd, err := newDestination(d, limit)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if g != nil {
			dd.Slots = g.state(d.Name).slots // its limit is set when the runtime goes live
		}
		rt.dests[d.Name] = dd
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rt, nil
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
		Name: d.Name, URL: d.URL.Value(), Headers: headers, SigningSecrets: secrets,
		Timeout: d.Timeout, ForwardQuery: d.ForwardQuery, TIMToken: d.TIMToken.Value(),
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
			return t.Transform(q.SdkAppID, q.CallbackCommand, queryMap(q), body)
		}
	}
	return delivery.NewDestination(dd)
}

// queryMap is the query as rules see it: the parameters Tencent sends, by name.
func queryMap(q tencentim.Query) map[string]string {
	m := make(map[string]string, 7)
	for k, v := range map[string]string{
		"SdkAppid": q.SdkAppID, "CallbackCommand": q.CallbackCommand, "contenttype": q.ContentType,
		"ClientIP": q.ClientIP, "OptPlatform": q.OptPlatform, "Sign": q.Sign, "RequestTime": q.RequestTime,
	} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// ruleErrorHook counts and logs (rate-limited) rules that fail at run time.
func (g *Gateway) ruleErrorHook(kind, name string, err error) {
	g.metrics.ruleErrors.WithLabelValues(name).Inc()
	if g.ruleLog.Allow(name) {
		g.log.Warn("rule failed at run time and counts as no match", "kind", kind, "route", name, "err", err)
	}
}

// Reload loads the config file again and, when it is valid and changes nothing that needs
// a restart, swaps it in. On any problem the old config stays live and the problems are
// returned.
func (g *Gateway) Reload(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.live.Load()
	cfg, probs := config.Load(g.opts.ConfigPath)
	for _, p := range probs.Warnings() {
		g.log.Warn("config", "problem", p.String())
	}
	fail := func(err error) error {
		g.metrics.reloadOK.Set(0)
		g.log.Error("config reload failed, the previous config stays live", "err", err)
		return err
	}
	if cfg == nil {
		return fail(probs.Errors())
	}
	if keys := restartOnly(old.cfg, cfg); len(keys) > 0 {
		return fail(fmt.Errorf("%s changed: these take effect only on restart; nothing was reloaded", strings.Join(keys, ", ")))
	}
	rt, err := g.build(cfg)
	if err != nil {
		return fail(err)
	}
	g.live.Store(rt)
	for _, d := range old.dests {
		d.MarkReplaced()
	}
	if g.queue != nil {
		// The new config is live: finish the workers' changes even if the caller (an HTTP
		// request to /-/reload) goes away.
		if err := g.syncWorkers(context.WithoutCancel(ctx), rt); err != nil {
			g.log.Error("reload: workers", "err", err)
		}
	}
	g.loaded(cfg)
	g.log.Info("config reloaded", diff(old.cfg, cfg)...)
	return nil
}

// restartOnly names the keys that changed and need a restart, each as written in the file
// (queue.dir, not just "queue"), so that the refusal says what to change back.
func restartOnly(a, b *config.Config) []string {
	var keys []string
	if a.Server.Listen != b.Server.Listen {
		keys = append(keys, "server.listen")
	}
	if a.Server.TLS != b.Server.TLS {
		keys = append(keys, "server.tls")
	}
	if a.Admin.Listen != b.Admin.Listen {
		keys = append(keys, "admin.listen")
	}
	qa, qb := a.Queue, b.Queue
	for _, k := range []struct {
		key     string
		changed bool
	}{
		{"queue.dir", qa.Dir != qb.Dir},
		{"queue.url", qa.URL != qb.URL},
		{"queue.credentials", qa.Credentials != qb.Credentials},
		{"queue.tls", qa.TLS != qb.TLS},
		{"queue.replicas", qa.Replicas != qb.Replicas},
		{"queue.sync", qa.SyncAlways != qb.SyncAlways || qa.SyncInterval != qb.SyncInterval},
		{"queue.dedup_window", qa.DedupWindow != qb.DedupWindow},
		{"queue.dead_letter_max_age", qa.DeadLetterMaxAge != qb.DeadLetterMaxAge},
	} {
		if k.changed {
			keys = append(keys, k.key)
		}
	}
	return keys
}

// diff lists what a reload changed, as log attributes.
func diff(a, b *config.Config) []any {
	routes := func(c *config.Config) map[string]string {
		m := map[string]string{}
		for _, r := range c.Routes {
			m[r.Name] = fmt.Sprintf("%v", *r)
		}
		return m
	}
	dests := func(c *config.Config) map[string]string {
		m := map[string]string{}
		for _, d := range c.Destinations {
			// Compared, never logged: secret values count, so a rotated secret is a change.
			var secrets []string
			for _, s := range d.SigningSecrets {
				secrets = append(secrets, s.Value())
			}
			headers := map[string]string{}
			for k, v := range d.Headers {
				headers[k] = v.Value()
			}
			m[d.Name] = fmt.Sprint(d.URL.Value(), headers, secrets, d.TIMToken.Value(), d.Timeout, d.Concurrency,
				d.Retry, d.RateLimit, d.Body, d.ForwardQuery)
		}
		return m
	}
	var attrs []any
	for _, kind := range []struct {
		name string
		f    func(*config.Config) map[string]string
	}{{"routes", routes}, {"destinations", dests}} {
		ma, mb := kind.f(a), kind.f(b)
		var added, removed, changed []string
		for k, v := range mb {
			if old, ok := ma[k]; !ok {
				added = append(added, k)
			} else if old != v {
				changed = append(changed, k)
			}
		}
		for k := range ma {
			if _, ok := mb[k]; !ok {
				removed = append(removed, k)
			}
		}
		attrs = append(attrs, kind.name+"_added", added, kind.name+"_removed", removed, kind.name+"_changed", changed)
	}
	attrs = append(attrs, "hash", b.Hash[:12])
	return attrs
}
