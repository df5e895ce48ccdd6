package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/console"
	"github.com/fanout-gw/fanout/gateway/dryrun"
	"github.com/fanout-gw/fanout/gateway/httpapi"
)

// The console's side of adminAPI: the Overview's history, the rules playground and the
// pause of a destination. The playground loads config text that the page sends, with the
// process environment as `fanout check` does; what the environment and the live config
// hold in secrets must not come back in its answers, so every answer goes through a
// redactor (see loadText and newRedactor).

// startConsole starts the sampler of the Overview's history; it stops with the workers.
func (g *Gateway) startConsole() {
	g.console = console.NewSampler(g.metrics.registry, console.SamplerOptions{Logger: g.log})
	go g.console.Run(g.workCtx)
}

// Overview returns the last hour of traffic.
func (a adminAPI) Overview(context.Context) (console.History, error) {
	if a.g.console == nil {
		return console.History{}, errors.New("not started")
	}
	return a.g.console.History(), nil
}

// TryRoute runs the payload through dryrun.Route, the code of `fanout route`, on the live
// config or on the edited one.
func (a adminAPI) TryRoute(_ context.Context, t httpapi.RouteTry) (httpapi.RouteTrial, error) {
	cfg := a.g.live.Load().cfg
	trial := httpapi.RouteTrial{Config: "live", ConfigHash: cfg.Hash, Problems: []httpapi.ConfigProblem{}}
	var texts []string
	if t.Config != nil {
		edited, probs := a.loadText(*t.Config)
		trial.Config, trial.Problems = "edited", problemList(probs)
		texts = append(texts, *t.Config)
		if edited == nil {
			return a.newRedactor(nil, texts...).trial(trial), nil
		}
		cfg, trial.ConfigHash = edited, edited.Hash
	}
	res := dryrun.Route(cfg, "payload", t.Payload, t.Query)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		return trial, err
	}
	trial.Result = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	trial.Bodies = map[string]string{}
	for _, d := range res.Deliveries {
		if d.BodyError == "" {
			trial.Bodies[d.Destination] = string(d.Body)
		}
	}
	if cfg == a.g.live.Load().cfg {
		cfg = nil // already in the redactor
	}
	return a.newRedactor(cfg, texts...).trial(trial), nil
}

// CheckConfig loads text as `fanout check` loads a file, and compares it with the live
// config for the keys a reload cannot change.
func (a adminAPI) CheckConfig(_ context.Context, text string) (httpapi.ConfigCheck, error) {
	cfg, probs := a.loadText(text)
	out := httpapi.ConfigCheck{Valid: cfg != nil && probs.Err() == nil, Problems: problemList(probs), RestartRequired: []string{}}
	if cfg != nil {
		out.RestartRequired = list(cfg.RestartOnly(a.g.live.Load().cfg))
	}
	r := a.newRedactor(cfg, text)
	for i := range out.Problems {
		out.Problems[i].Message = r.text(out.Problems[i].Message)
	}
	return out, nil
}

// envRef finds the ${NAME} references of a config text ($${ is a literal).
var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// loadText loads a config text as `fanout check` loads a file: config.Parse with the
// process environment, named after the live config's file (relative paths in it mean the
// same). A problem reported on a line that takes a value from the environment is shown
// without its message, which could quote the value (an invalid integer, a URL that does
// not parse, an expression's tokens).
func (a adminAPI) loadText(text string) (*config.Config, config.Problems) {
	resolved := map[string]bool{}
	env := func(name string) (string, bool) {
		v, ok := os.LookupEnv(name)
		if ok && v != "" {
			resolved[name] = true
		}
		return v, ok
	}
	cfg, probs := config.Parse(a.g.live.Load().cfg.File, []byte(text), env)
	lines := strings.Split(text, "\n")
	for i, p := range probs {
		if p.Line < 1 || p.Line > len(lines) {
			continue
		}
		var names []string
		for _, m := range envRef.FindAllStringSubmatch(lines[p.Line-1], -1) {
			if m[1] != "" && resolved[m[1]] {
				names = append(names, "${"+m[1]+"}")
			}
		}
		if len(names) > 0 {
			probs[i].Message = fmt.Sprintf("(not shown: this line takes %s from the gateway's environment, and the message could show its value)",
				strings.Join(names, ", "))
		}
	}
	return cfg, probs
}

func problemList(probs config.Problems) []httpapi.ConfigProblem {
	out := make([]httpapi.ConfigProblem, len(probs))
	for i, p := range probs {
		out[i] = httpapi.ConfigProblem{File: p.File, Line: p.Line, Column: p.Column, Path: p.Path, Message: p.Message, Warning: p.Warning}
	}
	return out
}

// minRedacted is the length below which a value is not searched for in answers: a short
// one (a header "X-Team: im") would cut words apart, and is no secret worth the name.
const minRedacted = 6

// redactor replaces secret values in the playground's answers with <secret>: those of the
// live config (and of an edited one), and the environment's values that the live file or
// the edited text refer to (a body transform may embed one). Those answers quote config
// text and render bodies, so they are searched rather than trusted.
type redactor struct{ values []string }

func (a adminAPI) newRedactor(edited *config.Config, texts ...string) redactor {
	var r redactor
	add := func(v string) {
		if len(v) >= minRedacted {
			r.values = append(r.values, v)
		}
	}
	live := a.g.live.Load().cfg
	for _, cfg := range []*config.Config{live, edited} {
		if cfg == nil {
			continue
		}
		add(cfg.Admin.Token.Value())
		add(cfg.Queue.URL.Value())
		for _, app := range cfg.Tencent.Apps {
			add(app.Token.Value())
		}
		for _, v := range cfg.Defaults.Headers {
			add(v.Value())
		}
		for _, d := range cfg.Destinations {
			for _, v := range d.Headers {
				add(v.Value())
			}
			for _, s := range d.SigningSecrets {
				add(s.Value())
				add(strings.TrimPrefix(s.Value(), "whsec_"))
			}
			add(d.TIMToken.Value())
			if u := d.URL.Parsed(); u != nil {
				if pw, ok := u.User.Password(); ok {
					add(pw)
				}
				for _, vs := range u.Query() {
					for _, v := range vs {
						add(v)
					}
				}
			}
		}
	}
	if b, err := os.ReadFile(live.File); err == nil {
		texts = append(texts, string(b))
	}
	for _, t := range texts {
		for _, m := range envRef.FindAllStringSubmatch(t, -1) {
			if m[1] != "" {
				add(os.Getenv(m[1]))
			}
		}
	}
	// Longest first, so that a secret holding another is replaced whole.
	for i := 1; i < len(r.values); i++ {
		for j := i; j > 0 && len(r.values[j]) > len(r.values[j-1]); j-- {
			r.values[j], r.values[j-1] = r.values[j-1], r.values[j]
		}
	}
	return r
}

const redactedValue = "<secret>"

func (r redactor) text(s string) string {
	for _, v := range r.values {
		s = strings.ReplaceAll(s, v, redactedValue)
	}
	return s
}

// json replaces the values as they are and as JSON escapes them inside a string.
func (r redactor) json(b []byte) []byte {
	for _, v := range r.values {
		b = bytes.ReplaceAll(b, []byte(v), []byte(redactedValue))
		quoted, _ := json.Marshal(v)
		if esc := quoted[1 : len(quoted)-1]; !bytes.Equal(esc, []byte(v)) {
			b = bytes.ReplaceAll(b, esc, []byte(redactedValue))
		}
	}
	return b
}

func (r redactor) trial(t httpapi.RouteTrial) httpapi.RouteTrial {
	for i := range t.Problems {
		t.Problems[i].Message = r.text(t.Problems[i].Message)
	}
	if t.Result != nil {
		t.Result = r.json(t.Result)
	}
	for k, v := range t.Bodies {
		t.Bodies[k] = r.text(v)
	}
	return t
}

// PauseDestination holds the destination's breaker: its workers start no round until
// ResumeDestination. The pause lives in this process (each replica has its own breakers)
// and lasts until resumed, a restart, or a reload that removes the destination.
func (a adminAPI) PauseDestination(ctx context.Context, name string) (httpapi.DestinationInfo, error) {
	d := a.g.live.Load().cfg.Destination(name)
	if d == nil {
		return httpapi.DestinationInfo{}, fmt.Errorf("destination %q: %w", name, httpapi.ErrNotFound)
	}
	if a.g.state(name).breaker.Pause() {
		a.g.metrics.destinationPause.WithLabelValues(name).Set(1)
		a.g.log.Warn("destination paused by an operator: no delivery starts until it is resumed", "destination", name)
	}
	return a.destination(ctx, d), nil
}

// ResumeDestination ends a pause, an operator's or the pause policy's.
func (a adminAPI) ResumeDestination(ctx context.Context, name string) (httpapi.DestinationInfo, error) {
	d := a.g.live.Load().cfg.Destination(name)
	if d == nil {
		return httpapi.DestinationInfo{}, fmt.Errorf("destination %q: %w", name, httpapi.ErrNotFound)
	}
	if a.g.state(name).breaker.Resume() {
		a.g.metrics.destinationPause.WithLabelValues(name).Set(0)
		a.g.log.Info("destination resumed by an operator", "destination", name)
	}
	return a.destination(ctx, d), nil
}
