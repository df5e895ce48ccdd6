package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestRestartOnly(t *testing.T) {
	const base = minimal + "destinations: {a: {url: http://a}}\nroutes: [{name: r, to: [a]}]\n"
	old := mustParse(t, base, nil)
	for _, tt := range []struct {
		name, yaml string
		want       []string
	}{
		{"nothing", base, nil},
		{"routes and destinations only", minimal + "destinations: {b: {url: http://b}}\nroutes: [{name: s, to: [b]}]\n", nil},
		{"server.listen", base + "server: {listen: ':8081'}\n", []string{"server.listen"}},
		{"server.path applies", base + "server: {path: /im}\n", nil},
		{"admin.listen", base + "admin: {listen: '127.0.0.1:9091'}\n", []string{"admin.listen"}},
		{"admin.token applies", base + "admin: {token: t0ken}\n", nil},
		{"queue keys in file order", base + "queue: {dedup_window: 1m, dir: ./other, sync: always}\n",
			[]string{"queue.dir", "queue.sync", "queue.dedup_window"}},
		{"every section, server first", base + "queue: {dead_letter_max_age: 1h}\nadmin: {listen: '127.0.0.1:9091'}\nserver: {listen: ':8081'}\n",
			[]string{"server.listen", "admin.listen", "queue.dead_letter_max_age"}},
		{"log keys", base + "log: {index: [MsgKey], max_bytes: 64MiB, enabled: true, max_age: 1h}\n",
			[]string{"log.enabled", "log.max_age", "log.max_bytes", "log.index"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.yaml, nil)
			if got := c.RestartOnly(old); !slices.Equal(got, tt.want) {
				t.Errorf("RestartOnly = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	old := mustParse(t, minimal+`
destinations:
  a: {url: http://a}
  b: {url: http://b, signing_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}
  c: {url: http://c}
routes:
  - {name: one, to: [a]}
  - {name: two, to: [b, c]}
`, nil)
	c := mustParse(t, minimal+`
destinations:
  d: {url: http://d}
  c: {url: http://c}
  b: {url: http://b, signing_secret: whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA}
routes:
  - {name: two, to: [b, c]}
  - {name: three, to: [d]}
  - {name: one, to: [c], when: "true"}
`, nil)
	got := c.Diff(old)
	want := Diff{
		// A rotated secret is a change; moving a destination in the file is not.
		Destinations: Changes{Added: []string{"d"}, Removed: []string{"a"}, Changed: []string{"b"}},
		Routes:       Changes{Added: []string{"three"}, Changed: []string{"one"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff = %+v, want %+v", got, want)
	}
	attrs := got.LogAttrs()
	if len(attrs) != 12 || attrs[0] != "routes_added" || attrs[6] != "destinations_added" {
		t.Errorf("LogAttrs = %v", attrs)
	}
	for _, a := range attrs {
		if s, ok := a.(string); ok && strings.Contains(s, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") {
			t.Errorf("LogAttrs shows a secret: %v", attrs)
		}
	}
	if d := c.Diff(c); d.Routes.Added != nil || d.Routes.Removed != nil || d.Routes.Changed != nil ||
		d.Destinations.Added != nil || d.Destinations.Removed != nil || d.Destinations.Changed != nil {
		t.Errorf("a config compared with itself: %+v", d)
	}
}
