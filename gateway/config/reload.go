package config

import "slices"

// RestartOnly names the keys that changed from old to c and take effect only on restart,
// each as written in the file (queue.dir, not just "queue"), so that a refused reload says
// what to change back. Everything else a reload applies.
func (c *Config) RestartOnly(old *Config) []string {
	return slices.Concat(c.Server.restartOnly(old.Server), c.Admin.restartOnly(old.Admin), c.Queue.restartOnly(old.Queue),
		c.Log.restartOnly(old.Log))
}

// Changes are the names of the things of one kind that a reload added, removed or
// changed, in file order.
type Changes struct {
	Added, Removed, Changed []string
}

// Diff is what a reload changes of the routes and destinations.
type Diff struct {
	Routes, Destinations Changes
}

// Diff compares c with the config old it replaces, by name.
func (c *Config) Diff(old *Config) Diff {
	return Diff{
		Routes:       changes(routePrints(old.Routes), routePrints(c.Routes)),
		Destinations: changes(destinationPrints(old.Destinations), destinationPrints(c.Destinations)),
	}
}

// LogAttrs is d as log attributes: routes_added, routes_removed, ..., destinations_changed.
func (d Diff) LogAttrs() []any {
	var attrs []any
	for _, kind := range []struct {
		name string
		ch   Changes
	}{{"routes", d.Routes}, {"destinations", d.Destinations}} {
		attrs = append(attrs, kind.name+"_added", kind.ch.Added, kind.name+"_removed", kind.ch.Removed, kind.name+"_changed", kind.ch.Changed)
	}
	return attrs
}

// named is a route's or a destination's name and fingerprint.
type named struct{ name, fingerprint string }

func routePrints(routes []*Route) []named {
	out := make([]named, len(routes))
	for i, r := range routes {
		out[i] = named{r.Name, r.fingerprint()}
	}
	return out
}

func destinationPrints(dests []*Destination) []named {
	out := make([]named, len(dests))
	for i, d := range dests {
		out[i] = named{d.Name, d.fingerprint()}
	}
	return out
}

func changes(old, cur []named) Changes {
	index := func(list []named) map[string]string {
		m := make(map[string]string, len(list))
		for _, n := range list {
			m[n.name] = n.fingerprint
		}
		return m
	}
	was, is := index(old), index(cur)
	var ch Changes
	for _, n := range cur {
		if prev, ok := was[n.name]; !ok {
			ch.Added = append(ch.Added, n.name)
		} else if prev != n.fingerprint {
			ch.Changed = append(ch.Changed, n.name)
		}
	}
	for _, n := range old {
		if _, ok := is[n.name]; !ok {
			ch.Removed = append(ch.Removed, n.name)
		}
	}
	return ch
}
