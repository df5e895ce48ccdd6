// Package config owns Fanout's YAML file: the types, their defaults, ${VAR} expansion,
// validation with file:line:col positions, the Secret type, and compiling the file's
// expressions through package rules, so that a config that loads is one that runs. It
// knows nothing of HTTP, NATS or the running gateway.
package config

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/gateway/webhook"
	"github.com/fanout-gw/fanout/rules"
)

// Config is a loaded, validated and compiled config file.
type Config struct {
	Server       Server
	Admin        Admin
	Tencent      Tencent
	Queue        Queue
	Defaults     DestinationSettings
	Destinations []*Destination // in file order
	Routes       []*Route
	Respond      []*Respond

	// Rules is the compiled form of Routes and Respond.
	Rules *rules.Set
	// File is the path the config was read from; Hash the SHA-256 of its bytes.
	File string
	Hash string

	pos *nodes // where things were written, while loading
}

// Server is the callback receiver.
type Server struct {
	Listen         string
	Path           string
	MaxBodyBytes   int64
	TrustedProxies []netip.Prefix
	TLS            TLSFiles
}

// TLSFiles names a certificate and key (and, for clients, a CA) as PEM files.
type TLSFiles struct {
	Cert, Key, CA string
}

// Admin is the admin port: health, metrics, reload and the API.
type Admin struct {
	Listen   string
	Token    Secret
	Insecure bool
}

// Tencent is what the receiver checks of each callback.
type Tencent struct {
	Apps         []App
	MaxClockSkew time.Duration
	AllowIPs     []netip.Prefix
}

// App is one accepted SdkAppid and its callback-auth token (empty: no Sign required).
type App struct {
	SdkAppID string
	Token    Secret
}

// Queue is the durable queue: embedded JetStream in Dir, or external at URL.
type Queue struct {
	Dir              string
	URL              Secret // may carry user:password
	Credentials      string
	TLS              TLSFiles
	Replicas         int
	SyncAlways       bool
	SyncInterval     time.Duration
	DedupWindow      time.Duration
	DeadLetterMaxAge time.Duration
}

// Embedded reports whether the queue runs inside the process.
func (q Queue) Embedded() bool { return q.URL == "" }

// DestinationSettings are the keys a destination inherits from defaults.
type DestinationSettings struct {
	Timeout     time.Duration
	Concurrency int
	Retry       Retry
	RateLimit   Rate
	Headers     map[string]Secret
}

// Retry is a destination's retry policy.
type Retry struct {
	MaxAttempts int
	Backoff     Backoff
	MaxAge      time.Duration
}

// Backoff is the wait between attempts: Initial, times Multiplier after each failure, at
// most Max, randomised by +/- Jitter.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

// Destination is one downstream webhook.
type Destination struct {
	Name string
	URL  URL
	DestinationSettings
	SigningSecrets []Secret // Standard Webhooks whsec_ secrets, several for rotation
	Body           string   // expr transform; empty sends the original bytes
	ForwardQuery   bool
	TIMToken       Secret

	// Transform is the compiled Body (nil without one).
	Transform *rules.Body
}

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

// TencentTimeout is how long Tencent IM waits for an answer.
const TencentTimeout = 2 * time.Second

// Default returns the defaults of SPEC section 2.
func Default() *Config {
	return &Config{
		Server:  Server{Listen: ":8080", Path: "/callback", MaxBodyBytes: 1 << 20},
		Admin:   Admin{Listen: "127.0.0.1:9090"},
		Tencent: Tencent{MaxClockSkew: 60 * time.Second},
		Queue: Queue{Dir: "./data", Replicas: 1, SyncInterval: time.Second,
			DedupWindow: 2 * time.Minute, DeadLetterMaxAge: 14 * 24 * time.Hour},
		Defaults: DestinationSettings{
			Timeout:     10 * time.Second,
			Concurrency: 16,
			Retry: Retry{MaxAttempts: 12, MaxAge: 24 * time.Hour,
				Backoff: Backoff{Initial: time.Second, Max: 10 * time.Minute, Multiplier: 2, Jitter: 0.2}},
		},
	}
}

// Load reads and loads a config file with the process environment.
func Load(path string) (*Config, Problems) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Message: fmt.Sprintf("cannot read config: %v", err)}}
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse loads a config from data; file names it in problems. The config is nil when any
// problem is an error; warnings come with a usable config.
func Parse(file string, data []byte, env func(string) (string, bool)) (*Config, Problems) {
	d := &decoder{file: file, env: env, src: data}
	c := Default()
	c.File = file
	sum := sha256.Sum256(data)
	c.Hash = hex.EncodeToString(sum[:])

	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // nothing but blanks and comments
			d.errorf(&yaml.Node{Line: 1, Column: 1}, "", "the config is empty")
		} else {
			d.probs = append(d.probs, yamlError(err, file))
		}
		return nil, d.probs
	}
	root := resolve(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = resolve(root.Content[0])
	}
	if isNull(root) || root.Kind == yaml.DocumentNode {
		d.errorf(root, "", "the config is empty")
		return nil, d.probs
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.errorf(&extra, "", "only one YAML document is allowed")
	case !errors.Is(err, io.EOF):
		d.probs = append(d.probs, yamlError(err, file)) // a broken second document
	}
	c.decode(d, root)
	c.check(d)
	d.probs.sort()
	if d.probs.Err() != nil {
		return nil, d.probs
	}
	return c, d.probs
}

// yamlError turns a yaml.v3 syntax error ("yaml: line 3: ...") into a problem, positioned
// when the error names a line.
func yamlError(err error, file string) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := Problem{File: file, Message: "invalid YAML: " + msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				p.Line, p.Column, p.Message = line, 1, "invalid YAML: "+text
			}
		}
	}
	return p
}

// nodes remembers where things were written, for problems found after decoding.
type nodes struct {
	route       map[*Route]routeNodes
	respond     map[*Respond]routeNodes
	destination map[*Destination]destNodes
	apps        *yaml.Node
	appItems    []*yaml.Node // one per Tencent.Apps entry
	// For problems about keys that may be missing: the document, the tencent key and
	// admin.listen.
	root, tencent, adminListen *yaml.Node
}

type routeNodes struct {
	self, name, commands, when, from, timeout *yaml.Node
	to, appList                               []*yaml.Node
	path                                      string
}

type destNodes struct {
	self, body, tim *yaml.Node
	path            string
}

func (c *Config) decode(d *decoder, root *yaml.Node) {
	pos := &nodes{route: map[*Route]routeNodes{}, respond: map[*Respond]routeNodes{}, destination: map[*Destination]destNodes{}}
	c.pos = pos
	pos.root = root
	var destNode *yaml.Node
	if root.Kind == yaml.MappingNode {
		// defaults first: destinations inherit them wherever they are written.
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "defaults" {
				d.settings(resolve(root.Content[i+1]), "defaults", &c.Defaults)
			}
		}
		for i := 0; i+1 < len(root.Content); i += 2 {
			// The first of repeated keys counts, as in d.mapping, which flags the others.
			switch root.Content[i].Value {
			case "destinations":
				destNode = cmp.Or(destNode, resolve(root.Content[i+1]))
			case "tencent":
				pos.tencent = cmp.Or(pos.tencent, root.Content[i])
			}
		}
	}
	d.mapping(root, "", map[string]field{
		"server": func(n *yaml.Node, p string) {
			var pathNode, tlsNode *yaml.Node
			tlsOK := true // no problem with the files themselves, so checking the pair makes sense
			d.mapping(n, p, map[string]field{
				"listen":          d.setListen(&c.Server.Listen),
				"path":            func(v *yaml.Node, p string) { pathNode = v; d.setStr(&c.Server.Path)(v, p) },
				"max_body_bytes":  d.setSize(&c.Server.MaxBodyBytes),
				"trusted_proxies": d.setPrefixes(&c.Server.TrustedProxies),
				"tls": func(v *yaml.Node, p string) {
					tlsNode = v
					before := len(d.probs)
					d.tlsFiles(&c.Server.TLS, false)(v, p)
					tlsOK = len(d.probs) == before
				},
			})
			if !strings.HasPrefix(c.Server.Path, "/") {
				d.errorf(cmp.Or(pathNode, n), join(p, "path"), "must start with /, got %q", c.Server.Path)
			}
			if tlsOK && (c.Server.TLS.Cert == "") != (c.Server.TLS.Key == "") {
				d.errorf(cmp.Or(tlsNode, n), join(p, "tls"), "cert and key must be set together")
			}
		},
		"admin": func(n *yaml.Node, p string) {
			d.mapping(n, p, map[string]field{
				"listen":   func(v *yaml.Node, p string) { pos.adminListen = v; d.setListen(&c.Admin.Listen)(v, p) },
				"token":    d.setSecret(&c.Admin.Token),
				"insecure": d.setBool(&c.Admin.Insecure),
			})
		},
		"tencent": func(n *yaml.Node, p string) {
			d.mapping(n, p, map[string]field{
				"apps": func(n *yaml.Node, p string) {
					pos.apps = n
					d.list(n, p, func(_ int, v *yaml.Node, p string) {
						c.Tencent.Apps = append(c.Tencent.Apps, d.app(v, p))
						pos.appItems = append(pos.appItems, v)
					})
				},
				"max_clock_skew": d.setDuration(&c.Tencent.MaxClockSkew, true),
				"allow_ips":      d.setPrefixes(&c.Tencent.AllowIPs),
			})
		},
		"queue":    func(n *yaml.Node, p string) { d.queue(n, p, &c.Queue) },
		"defaults": func(*yaml.Node, string) {},
		"destinations": func(n *yaml.Node, p string) {
			if !isNull(n) && n.Kind != yaml.MappingNode {
				d.errorf(n, p, "want a mapping of destination names to destinations, got %s", kindName(n))
			}
		},
		"routes": func(n *yaml.Node, p string) {
			d.list(n, p, func(_ int, v *yaml.Node, p string) {
				r, rn := d.route(v, p)
				c.Routes = append(c.Routes, r)
				pos.route[r] = rn
			})
		},
		"respond": func(n *yaml.Node, p string) {
			d.list(n, p, func(_ int, v *yaml.Node, p string) {
				r, rn := d.respond(v, p)
				c.Respond = append(c.Respond, r)
				pos.respond[r] = rn
			})
		},
	})
	if destNode != nil && destNode.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(destNode.Content); i += 2 {
			k, v := destNode.Content[i], resolve(destNode.Content[i+1])
			p := join("destinations", k.Value)
			dest := &Destination{Name: k.Value, DestinationSettings: c.Defaults}
			dest.Headers = cloneHeaders(c.Defaults.Headers)
			dn := d.destination(v, p, dest)
			if err := webhook.CheckDestinationName(k.Value); err != nil {
				d.errorf(k, p, "%v", err)
			}
			if c.destination(k.Value) != nil {
				d.errorf(k, p, "destination defined twice")
				continue
			}
			dn.self = k
			c.Destinations = append(c.Destinations, dest)
			pos.destination[dest] = dn
		}
	}
}

func cloneHeaders(h map[string]Secret) map[string]Secret {
	if h == nil {
		return nil
	}
	out := make(map[string]Secret, len(h))
	for k, v := range h {
		out[k] = v
	}
	return out
}

func (d *decoder) tlsFiles(dst *TLSFiles, withCA bool) field {
	return func(n *yaml.Node, p string) {
		f := map[string]field{"cert": d.setFile(&dst.Cert), "key": d.setFile(&dst.Key)}
		if withCA {
			f["ca"] = d.setFile(&dst.CA)
		}
		d.mapping(n, p, f)
	}
}

// setFile accepts a path to a readable file.
func (d *decoder) setFile(dst *string) field {
	return func(n *yaml.Node, p string) {
		s, ok := d.str(n, p)
		if !ok || s == "" {
			return
		}
		if _, err := os.Stat(s); err != nil {
			d.errorf(n, p, "cannot read %s: %v", s, err)
			return
		}
		*dst = s
	}
}

func (d *decoder) app(n *yaml.Node, p string) App {
	var a App
	var id string
	idOK := true // false when the value could not be read: that is the problem to show
	d.mapping(n, p, map[string]field{
		"sdkappid": func(v *yaml.Node, p string) { id, idOK = d.str(v, p) },
		"token":    d.setSecret(&a.Token),
	})
	if n.Kind == yaml.MappingNode && idOK {
		if v, err := strconv.ParseUint(id, 10, 64); err != nil || v == 0 {
			d.errorf(n, join(p, "sdkappid"), "want the app's SdkAppid, a positive integer such as 1400000000, got %q", id)
		}
	}
	a.SdkAppID = id
	return a
}

func (d *decoder) queue(n *yaml.Node, p string, q *Queue) {
	var dirSet, replicasSet, syncSet *yaml.Node
	d.mapping(n, p, map[string]field{
		"dir": func(v *yaml.Node, p string) { dirSet = v; d.setStr(&q.Dir)(v, p) },
		"url": func(v *yaml.Node, p string) {
			s, ok := d.str(v, p)
			if !ok {
				return
			}
			for _, u := range strings.Split(s, ",") {
				u = strings.TrimSpace(u)
				scheme, _, found := strings.Cut(u, "://")
				if !found || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, scheme) {
					d.errorf(v, p, "invalid server URL %q: want nats://host:port (several separated by commas)", webhook.RedactURL(u))
				}
			}
			q.URL = Secret(s)
		},
		"credentials": d.setFile(&q.Credentials),
		"tls":         d.tlsFiles(&q.TLS, true),
		"replicas":    func(v *yaml.Node, p string) { replicasSet = v; d.setInt(&q.Replicas, 1, 5)(v, p) },
		"sync": func(v *yaml.Node, p string) {
			syncSet = v
			s, ok := d.str(v, p)
			if !ok {
				return
			}
			if s == "always" {
				q.SyncAlways = true
				return
			}
			d.setDuration(&q.SyncInterval, true)(v, p)
		},
		"dedup_window":        d.setDuration(&q.DedupWindow, false),
		"dead_letter_max_age": d.setDuration(&q.DeadLetterMaxAge, true),
	})
	if q.URL != "" {
		if dirSet != nil {
			d.warnf(dirSet, join(p, "dir"), "ignored: queue.url is set, so the queue is external")
		}
		if syncSet != nil {
			d.warnf(syncSet, join(p, "sync"), "ignored with queue.url: the JetStream servers' own sync setting applies")
		}
	} else if replicasSet != nil && q.Replicas > 1 {
		d.errorf(replicasSet, join(p, "replicas"), "replicas above 1 need an external cluster (queue.url)")
	}
}

// settings decodes the keys a destination shares with defaults onto s.
func (d *decoder) settingFields(s *DestinationSettings) map[string]field {
	return map[string]field{
		"timeout":     d.setDuration(&s.Timeout, true),
		"concurrency": d.setInt(&s.Concurrency, 1, 4096),
		"rate_limit":  d.setRate(&s.RateLimit),
		"headers": func(n *yaml.Node, p string) {
			n = resolve(n)
			if isNull(n) {
				return
			}
			if n.Kind != yaml.MappingNode {
				d.errorf(n, p, "want a mapping of header names to values, got %s", kindName(n))
				return
			}
			if s.Headers == nil {
				s.Headers = map[string]Secret{}
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, vn := n.Content[i], resolve(n.Content[i+1])
				if err := webhook.CheckHeaderName(k.Value); err != nil {
					d.errorf(k, join(p, k.Value), "%v", err)
					continue
				}
				v, ok := d.str(vn, join(p, k.Value))
				if !ok {
					continue
				}
				if err := webhook.CheckHeaderValue(v); err != nil {
					d.errorf(vn, join(p, k.Value), "%v", err)
					continue
				}
				s.Headers[k.Value] = Secret(v)
			}
		},
		"retry": func(n *yaml.Node, p string) {
			r := &s.Retry
			d.mapping(n, p, map[string]field{
				"max_attempts": d.setInt(&r.MaxAttempts, 1, 1000),
				"max_age":      d.setDuration(&r.MaxAge, true),
				"backoff": func(n *yaml.Node, p string) {
					b := &r.Backoff
					d.mapping(n, p, map[string]field{
						"initial":    d.setDuration(&b.Initial, true),
						"max":        d.setDuration(&b.Max, true),
						"multiplier": d.setFloat(&b.Multiplier, 1, 100),
						"jitter":     d.setFloat(&b.Jitter, 0, 1),
					})
					if b.Max < b.Initial {
						d.errorf(n, join(p, "max"), "max (%s) is below initial (%s)", b.Max, b.Initial)
					}
				},
			})
		},
	}
}

func (d *decoder) settings(n *yaml.Node, p string, s *DestinationSettings) {
	d.mapping(n, p, d.settingFields(s))
}

func (d *decoder) destination(n *yaml.Node, p string, dest *Destination) destNodes {
	dn := destNodes{path: p}
	fields := d.settingFields(&dest.DestinationSettings)
	var urlNode *yaml.Node
	fields["url"] = func(v *yaml.Node, p string) { urlNode = v; d.setHTTPURL(&dest.URL)(v, p) }
	fields["signing_secret"] = func(v *yaml.Node, p string) {
		d.list(v, p, func(i int, v *yaml.Node, p string) {
			s, ok := d.str(v, p)
			if !ok {
				return
			}
			if _, err := webhook.DecodeSecret(s); err != nil {
				d.errorf(v, p, "%v", err)
				return
			}
			dest.SigningSecrets = append(dest.SigningSecrets, Secret(s))
		})
	}
	fields["body"] = func(v *yaml.Node, p string) { dn.body = v; d.setStr(&dest.Body)(v, p) }
	fields["forward_query"] = d.setBool(&dest.ForwardQuery)
	fields["tim_token"] = func(v *yaml.Node, p string) { dn.tim = v; d.setSecret(&dest.TIMToken)(v, p) }
	if !d.mapping(n, p, fields) {
		return dn
	}
	if urlNode == nil {
		d.errorf(n, p, "url is required")
	}
	return dn
}

func (d *decoder) filterFields(f *rules.Filter, rn *routeNodes) map[string]field {
	return map[string]field{
		"commands": func(v *yaml.Node, p string) { rn.commands = v; d.setStrings(&f.Commands, nil)(v, p) },
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

func (c *Config) destination(name string) *Destination {
	for _, d := range c.Destinations {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// Destination returns the destination called name, or nil.
func (c *Config) Destination(name string) *Destination { return c.destination(name) }

// check validates what spans sections and compiles the expressions.
func (c *Config) check(d *decoder) {
	pos := c.pos
	if len(c.Tencent.Apps) == 0 {
		at := cmp.Or(pos.apps, pos.tencent, pos.root) // where apps is, or would go
		d.errorf(at, "tencent.apps", "at least one app is required: callbacks from any other SdkAppid are refused")
	}
	apps := map[string]bool{}
	for i, a := range c.Tencent.Apps {
		if apps[a.SdkAppID] && a.SdkAppID != "" {
			d.errorf(pos.appItems[i], fmt.Sprintf("tencent.apps[%d]", i), "SdkAppid %s listed twice", a.SdkAppID)
		}
		apps[a.SdkAppID] = true
	}
	if !c.Admin.Insecure && c.Admin.Token == "" && !loopback(c.Admin.Listen) {
		d.errorf(pos.adminListen, "admin.listen", "%s is not a loopback address and admin.token is empty: set a token, or insecure: true", c.Admin.Listen)
	}

	used := map[string]bool{}
	names := map[string]bool{}
	for _, r := range c.Routes {
		rn := pos.route[r]
		if r.Name != "" && names[r.Name] {
			d.errorf(rn.name, join(rn.path, "name"), "route name %q used twice", r.Name)
		}
		names[r.Name] = true
		for i, to := range r.To {
			used[to] = true
			if c.destination(to) == nil {
				d.errorf(rn.to[i], fmt.Sprintf("%s.to[%d]", rn.path, i), "route %q sends to undefined destination %q%s", r.Name, to, c.suggestDest(to))
			}
		}
		c.checkApps(d, r.Apps, rn, apps)
	}
	for _, r := range c.Respond {
		rn := pos.respond[r]
		used[r.From] = true
		if r.From != "" && c.destination(r.From) == nil {
			d.errorf(rn.from, join(rn.path, "from"), "respond rule answers from undefined destination %q%s", r.From, c.suggestDest(r.From))
		}
		if r.Timeout >= TencentTimeout {
			d.errorf(rn.timeout, join(rn.path, "timeout"), "%s is too long: Tencent IM gives up at 2s, leave room for the answer (e.g. 1500ms)", r.Timeout)
		}
		c.checkApps(d, r.Apps, rn, apps)
		if len(r.Commands) > 0 {
			before := false
			for _, g := range r.Commands {
				for _, ci := range tencentim.Commands() {
					if ok, _ := path.Match(g, ci.Name); ok && ci.Before {
						before = true
					}
				}
			}
			if !before {
				d.warnf(rn.commands, join(rn.path, "commands"), "no \"before\" callback among these commands: Tencent IM ignores the answer to the others")
			}
		}
	}
	for _, dest := range c.Destinations {
		dn := pos.destination[dest]
		if !used[dest.Name] {
			d.warnf(dn.self, dn.path, "destination %q is not used by any route or respond rule", dest.Name)
		}
		if dest.TIMToken != "" && !dest.ForwardQuery {
			d.warnf(dn.tim, join(dn.path, "tim_token"), "has no effect without forward_query: true (Sign travels in the query)")
		}
		if dest.Body != "" {
			b, err := rules.CompileBody(dest.Body)
			if err != nil {
				d.exprProblem(dn.body, join(dn.path, "body"), err)
			}
			dest.Transform = b
			for _, w := range rules.LintBody(dest.Body) {
				d.warnf(dn.body, join(dn.path, "body"), "%s", w.Message)
			}
		}
	}
	c.compileRules(d)
}

func (c *Config) checkApps(d *decoder, list []string, rn routeNodes, apps map[string]bool) {
	for i, a := range list {
		if !apps[a] {
			d.warnf(rn.appList[i], fmt.Sprintf("%s.apps[%d]", rn.path, i), "SdkAppid %s is not in tencent.apps: its callbacks are refused before any rule runs", a)
		}
	}
}

func (c *Config) suggestDest(name string) string {
	var names []string
	for _, d := range c.Destinations {
		names = append(names, d.Name)
	}
	if s, ok := rules.Suggest(name, names); ok {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

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
	locate := func(kind string, i int) routeNodes {
		if kind == "route" {
			return pos.route[c.Routes[i]]
		}
		return pos.respond[c.Respond[i]]
	}
	for _, e := range errs {
		rn := locate(e.Kind, e.Index)
		n := rn.when
		if e.Field == "commands" {
			n = rn.commands
		}
		d.exprProblem(n, join(rn.path, e.Field), e)
	}
	for _, w := range rules.Lint(routes, responds) {
		rn := locate(w.Kind, w.Index)
		n := rn.when
		if w.Field == "commands" {
			n = rn.commands
		}
		d.warnf(n, join(rn.path, w.Field), "%s", w.Message)
	}
	c.Rules = set
}

// exprProblem reports an expression error at its position inside the YAML scalar.
func (d *decoder) exprProblem(n *yaml.Node, path string, err error) {
	ce, ok := err.(*rules.CompileError)
	if ok {
		err = ce.Err // path already says where: not "route 5: when: ..."
	}
	if !ok || n == nil || ce.Line == 0 {
		d.errorf(n, path, "%v", err)
		return
	}
	line, col := n.Line, n.Column
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		// n is the | or > indicator; the text starts on the next line, at the block's
		// indentation (exact for literal blocks; a folded block's lines are joined).
		line, col = n.Line+ce.Line, d.blockIndent(n.Line)+ce.Column
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		line, col = n.Line+ce.Line-1, n.Column+ce.Column
		if c, ok := d.quotedColumn(n, ce.Column); ok && ce.Line == 1 {
			col = c
		}
	default:
		line, col = n.Line+ce.Line-1, n.Column+ce.Column-1
	}
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Column: col, Path: path, Message: err.Error()})
}

// quotedColumn maps col, 1-based in the value of the quoted scalar n, to a column of the
// file, stepping over the escapes before it: \" \\ \x41 \u00e9 in double quotes, a doubled
// quote in single quotes. It looks at the scalar's first line only.
func (d *decoder) quotedColumn(n *yaml.Node, col int) (int, bool) {
	lines := strings.Split(string(d.src), "\n")
	if n.Line < 1 || n.Line > len(lines) {
		return 0, false
	}
	r := []rune(lines[n.Line-1]) // yaml.v3 columns count characters, as expr's do
	i := n.Column                // the character after the opening quote
	for range col - 1 {
		switch {
		case n.Style == yaml.DoubleQuotedStyle && i+1 < len(r) && r[i] == '\\':
			i += 2 + map[rune]int{'x': 2, 'u': 4, 'U': 8}[r[i+1]]
		case n.Style == yaml.SingleQuotedStyle && i+1 < len(r) && r[i] == '\'' && r[i+1] == '\'':
			i += 2
		default:
			i++
		}
	}
	if i >= len(r) {
		return 0, false
	}
	return i + 1, true
}

// blockIndent returns the indentation of the first non-blank line after line (1-based):
// the column before a block scalar's text.
func (d *decoder) blockIndent(line int) int {
	lines := strings.Split(string(d.src), "\n")
	for i := line; i < len(lines); i++ {
		if text := strings.TrimLeft(lines[i], " "); strings.TrimSpace(text) != "" {
			return len(lines[i]) - len(text)
		}
	}
	return 0
}

func loopback(listen string) bool {
	host := listen
	if i := strings.LastIndex(listen, ":"); i >= 0 {
		host = strings.Trim(listen[:i], "[]")
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// HashValue is the config hash as a number for the fanout_config_hash gauge: the first 48
// bits of Hash, exact in a float64.
func (c *Config) HashValue() float64 {
	b, _ := hex.DecodeString(c.Hash)
	if len(b) < 8 {
		return 0
	}
	return float64(binary.BigEndian.Uint64(b[:8]) >> 16)
}
