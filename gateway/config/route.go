package config

import (
	"fmt"
	"path"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/rules"
)

// Route sends matching callbacks to destinations.
type Route struct {
	Name string
	rules.Filter
	To   []string
	Stop bool
}

// Respond answers matching "before" callbacks synchronously from a destination.
type Respond struct {
	rules.Filter
	From      string
	Timeout   time.Duration
	OnFailure string // allow, deny or drop
}

// OnFailureCode is the ErrorCode of the on_failure decision.
func (r *Respond) OnFailureCode() int {
	return map[string]int{"allow": 0, "deny": 1, "drop": 2}[r.OnFailure]
}

// routeNodes is where a route's or a respond rule's keys were written.
type routeNodes struct {
	self, name, commands, when, from, timeout *yaml.Node
	to, appList, commandList                  []*yaml.Node
	path                                      string
}

func (c *Config) decodeRoutes(d *decoder, n *yaml.Node, p string) {
	d.list(n, p, func(_ int, v *yaml.Node, p string) {
		r, rn := d.route(v, p)
		c.Routes = append(c.Routes, r)
		c.pos.route[r] = rn
	})
}

func (c *Config) decodeRespond(d *decoder, n *yaml.Node, p string) {
	d.list(n, p, func(_ int, v *yaml.Node, p string) {
		r, rn := d.respond(v, p)
		c.Respond = append(c.Respond, r)
		c.pos.respond[r] = rn
	})
}

func (d *decoder) filterFields(f *rules.Filter, rn *routeNodes) map[string]field {
	return map[string]field{
		"commands": func(v *yaml.Node, p string) { rn.commands = v; d.setStrings(&f.Commands, &rn.commandList)(v, p) },
		"apps":     d.setStrings(&f.Apps, &rn.appList),
		"when":     func(v *yaml.Node, p string) { rn.when = v; d.setStr(&f.When)(v, p) },
	}
}

func (d *decoder) route(n *yaml.Node, p string) (*Route, routeNodes) {
	r := &Route{}
	rn := routeNodes{self: n, path: p}
	fields := d.filterFields(&r.Filter, &rn)
	fields["name"] = func(v *yaml.Node, p string) { rn.name = v; d.setStr(&r.Name)(v, p) }
	fields["to"] = d.setStrings(&r.To, &rn.to)
	fields["stop"] = d.setBool(&r.Stop)
	if d.mapping(n, p, fields) && n.Kind == yaml.MappingNode {
		if r.Name == "" {
			d.errorf(n, p, "name is required (it labels deliveries and metrics)")
		}
		if len(r.To) == 0 {
			d.errorf(n, p, "to is required: the destinations this route sends to")
		}
	}
	return r, rn
}

func (d *decoder) respond(n *yaml.Node, p string) (*Respond, routeNodes) {
	r := &Respond{Timeout: 1500 * time.Millisecond, OnFailure: "allow"}
	rn := routeNodes{self: n, path: p}
	fields := d.filterFields(&r.Filter, &rn)
	fields["from"] = func(v *yaml.Node, p string) { rn.from = v; d.setStr(&r.From)(v, p) }
	fields["timeout"] = func(v *yaml.Node, p string) { rn.timeout = v; d.setDuration(&r.Timeout, true)(v, p) }
	fields["on_failure"] = func(v *yaml.Node, p string) {
		s, ok := d.str(v, p)
		if !ok {
			return
		}
		if s != "allow" && s != "deny" && s != "drop" {
			d.errorf(v, p, "invalid on_failure %q: want allow, deny or drop", s)
			return
		}
		r.OnFailure = s
	}
	if d.mapping(n, p, fields) && n.Kind == yaml.MappingNode && r.From == "" {
		d.errorf(n, p, "from is required: the destination whose answer is returned")
	}
	return r, rn
}

// checkRoutes checks the references of every route (its name is unique, its destinations
// exist, its apps are configured) and marks the destinations it uses.
func (c *Config) checkRoutes(d *decoder, apps, used map[string]bool) {
	names := map[string]bool{}
	for _, r := range c.Routes {
		rn := c.pos.route[r]
		if r.Name != "" && names[r.Name] {
			d.errorf(rn.name, join(rn.path, "name"), "route name %q used twice", r.Name)
		}
		names[r.Name] = true
		for i, to := range r.To {
			used[to] = true
			if c.Destination(to) == nil {
				d.errorf(rn.to[i], fmt.Sprintf("%s.to[%d]", rn.path, i), "route %q sends to undefined destination %q%s", r.Name, to, c.suggestDest(to))
			}
		}
		checkApps(d, r.Apps, rn, apps)
	}
}

// checkRespond checks every respond rule: its destination exists, its timeout leaves
// Tencent time for the answer, its apps are configured, and its commands include a
// "before" callback (Tencent ignores the answer to the others).
func (c *Config) checkRespond(d *decoder, apps, used map[string]bool) {
	for _, r := range c.Respond {
		rn := c.pos.respond[r]
		used[r.From] = true
		if r.From != "" && c.Destination(r.From) == nil {
			d.errorf(rn.from, join(rn.path, "from"), "respond rule answers from undefined destination %q%s", r.From, c.suggestDest(r.From))
		}
		if r.Timeout >= TencentTimeout {
			d.errorf(rn.timeout, join(rn.path, "timeout"), "%s is too long: Tencent IM gives up at 2s, leave room for the answer (e.g. 1500ms)", r.Timeout)
		}
		checkApps(d, r.Apps, rn, apps)
		if len(r.Commands) > 0 && !selectsBefore(r.Commands) {
			d.warnf(rn.commands, join(rn.path, "commands"), "no \"before\" callback among these commands: Tencent IM ignores the answer to the others")
		}
	}
}

// selectsBefore reports whether the command globs select a "before" callback.
func selectsBefore(globs []string) bool {
	for _, g := range globs {
		for _, ci := range tencentim.Commands() {
			if ok, _ := path.Match(g, ci.Name); ok && ci.Before {
				return true
			}
		}
	}
	return false
}

func checkApps(d *decoder, list []string, rn routeNodes, apps map[string]bool) {
	for i, a := range list {
		if !apps[a] {
			d.warnf(rn.appList[i], fmt.Sprintf("%s.apps[%d]", rn.path, i), "SdkAppid %s is not in tencent.apps: its callbacks are refused before any rule runs", a)
		}
	}
}

// compileRules compiles the routes and respond rules into Rules, reporting every
// expression error and lint warning at its place in the file.
func (c *Config) compileRules(d *decoder) {
	pos := c.pos
	var routes []rules.RouteSpec
	for _, r := range c.Routes {
		routes = append(routes, rules.RouteSpec{Name: r.Name, Filter: r.Filter, To: r.To, Stop: r.Stop})
	}
	var responds []rules.RespondSpec
	for _, r := range c.Respond {
		responds = append(responds, rules.RespondSpec{Filter: r.Filter, From: r.From})
	}
	set, errs := rules.Compile(routes, responds)
	nodesOf := func(kind string, i int) routeNodes {
		if kind == "route" {
			return pos.route[c.Routes[i]]
		}
		return pos.respond[c.Respond[i]]
	}
	for _, e := range errs {
		rn := nodesOf(e.Kind, e.Index)
		n := rn.when
		if e.Field == "commands" {
			n = rn.commands
		}
		d.exprProblem(n, join(rn.path, e.Field), e)
	}
	for _, f := range rules.Lint(routes, responds, c.Tencent.ExtraCommands) {
		rn := nodesOf(f.Kind, f.Index)
		if f.Field == "commands" {
			// The entry's own node; a scalar written for a one-entry list is the list.
			n, p := rn.commands, join(rn.path, "commands")
			if f.Entry < len(rn.commandList) && rn.commands != nil && rn.commands.Kind == yaml.SequenceNode {
				n, p = rn.commandList[f.Entry], fmt.Sprintf("%s[%d]", p, f.Entry)
			}
			d.add(n, p, !f.Error, "%s", f.Message)
			continue
		}
		d.exprAt(rn.when, join(rn.path, f.Field), f.Line, f.Column, !f.Error, f.Message)
	}
	c.Rules = set
}

// fingerprint is what a reload compares to tell whether r changed.
func (r *Route) fingerprint() string { return fmt.Sprintf("%v", *r) }
