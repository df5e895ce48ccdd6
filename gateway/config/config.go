// Package config owns Fanout's YAML file: a file per section (server.go with the admin
// port, tencent.go, queue.go, eventlog.go, destination.go, route.go), each type beside its decoding,
// defaults and checks; ${VAR} expansion; problems with file:line:col positions; the Secret
// and URL types that never print their values; what a reload may change (reload.go); and
// watching the file (Watch). Expressions are compiled through package rules while loading,
// so that a config that loads is one that runs. It knows nothing of HTTP, NATS or the
// running gateway.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/rules"
)

// Config is a loaded, validated and compiled config file.
type Config struct {
	Server       Server
	Admin        Admin
	Tencent      Tencent
	Queue        Queue
	Log          EventLog
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

// Default returns the config of a file that sets nothing but what is required: every
// default config.example.yaml shows.
func Default() *Config {
	return &Config{
		Server:  Server{Listen: ":8080", Path: "/callback", MaxBodyBytes: 1 << 20},
		Admin:   Admin{Listen: "127.0.0.1:9090"},
		Tencent: Tencent{MaxClockSkew: 60 * time.Second},
		Queue: Queue{Dir: "./data", Replicas: 1, SyncInterval: time.Second,
			DedupWindow: 2 * time.Minute, DeadLetterMaxAge: 14 * 24 * time.Hour},
		Log: defaultEventLog(),
		Defaults: DestinationSettings{
			Timeout:     10 * time.Second,
			Concurrency: 16,
			MaxBacklog:  Backlog{Jobs: 1_000_000},
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
	c.Hash = hashOf(data)

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

// hashOf is the SHA-256 of a config file's bytes in hex: Config.Hash.
func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
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
	maxBody                    *yaml.Node // server.max_body_bytes
	logMaxBytes, logEnabled    *yaml.Node // log.max_bytes, log.enabled
}

// decode reads the document section by section, in document order. Defaults come first,
// since destinations inherit them wherever they are written, and destinations last.
func (c *Config) decode(d *decoder, root *yaml.Node) {
	pos := &nodes{root: root, route: map[*Route]routeNodes{}, respond: map[*Respond]routeNodes{}, destination: map[*Destination]destNodes{}}
	c.pos = pos
	defaults, destinations, tencent := topLevel(root)
	for _, n := range defaults {
		d.settings(n, "defaults", &c.Defaults)
	}
	pos.tencent = tencent
	d.mapping(root, "", map[string]field{
		"server":       func(n *yaml.Node, p string) { c.Server.decode(d, n, p, pos) },
		"admin":        func(n *yaml.Node, p string) { c.Admin.decode(d, n, p, pos) },
		"tencent":      func(n *yaml.Node, p string) { c.Tencent.decode(d, n, p, pos) },
		"queue":        func(n *yaml.Node, p string) { c.Queue.decode(d, n, p) },
		"log":          func(n *yaml.Node, p string) { c.Log.decode(d, n, p, pos) },
		"defaults":     func(*yaml.Node, string) {}, // decoded above
		"destinations": func(n *yaml.Node, p string) { checkDestinationsShape(d, n, p) },
		"routes":       func(n *yaml.Node, p string) { c.decodeRoutes(d, n, p) },
		"respond":      func(n *yaml.Node, p string) { c.decodeRespond(d, n, p) },
	})
	c.decodeDestinations(d, destinations)
}

// topLevel finds the sections decode reads out of document order, and the tencent key for
// problems about a missing tencent.apps. Every defaults is returned (d.mapping flags the
// repeated ones); of the others the first counts, as in d.mapping.
func topLevel(root *yaml.Node) (defaults []*yaml.Node, destinations, tencent *yaml.Node) {
	if root.Kind != yaml.MappingNode {
		return nil, nil, nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "defaults":
			defaults = append(defaults, resolve(v))
		case "destinations":
			if destinations == nil {
				destinations = resolve(v)
			}
		case "tencent":
			if tencent == nil {
				tencent = k
			}
		}
	}
	return defaults, destinations, tencent
}

// check validates what spans sections and compiles the expressions.
func (c *Config) check(d *decoder) {
	apps := c.Tencent.check(d, c.pos)
	c.Admin.check(d, c.pos)
	c.Server.checkBody(d, c.Queue, c.pos)
	c.Log.checkRoom(d, c.Queue, c.pos)
	used := map[string]bool{}
	c.checkRoutes(d, apps, used)
	c.checkRespond(d, apps, used)
	c.checkDestinations(d, used)
	c.compileRules(d)
}

// Destination returns the destination called name, or nil.
func (c *Config) Destination(name string) *Destination {
	for _, d := range c.Destinations {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// HashID is the config hash as Fanout shows it (the admin API's config_hash, the logs):
// the first 48 bits of Hash, in 12 hex digits. `sha256sum config.yaml | cut -c1-12` gives
// it too, and HashValue is the same 48 bits as a number.
func (c *Config) HashID() string {
	if len(c.Hash) < 12 {
		return c.Hash
	}
	return c.Hash[:12]
}

// HashValue is the config hash as a number for the fanout_config_hash gauge: HashID's 48
// bits, exact in a float64.
func (c *Config) HashValue() float64 {
	b, _ := hex.DecodeString(c.Hash)
	if len(b) < 8 {
		return 0
	}
	return float64(binary.BigEndian.Uint64(b[:8]) >> 16)
}
