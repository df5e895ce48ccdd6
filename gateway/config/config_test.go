package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/rules"
)

// minimal is the smallest config that loads: one app, nothing else.
const minimal = "tencent:\n  apps:\n    - sdkappid: 1400000000\n"

// mustParse parses yaml with env and fails the test on any problem, warnings included.
func mustParse(t *testing.T, yaml string, env map[string]string) *Config {
	t.Helper()
	c, probs := Parse("f.yaml", []byte(yaml), mapEnv(env))
	if c == nil || len(probs) > 0 {
		t.Fatalf("want no problems, got:\n%v", probs)
	}
	return c
}

// TestDefaults checks every default against the values config.example.yaml shows, written out
// here rather than taken from Default(), so that a changed default fails.
func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal, nil)

	if want := (Server{Listen: ":8080", Path: "/callback", MaxBodyBytes: 1 << 20}); !reflect.DeepEqual(c.Server, want) {
		t.Errorf("server = %+v, want %+v", c.Server, want)
	}
	if want := (Admin{Listen: "127.0.0.1:9090"}); c.Admin != want {
		t.Errorf("admin = %+v, want %+v", c.Admin, want)
	}
	if want := (Tencent{Apps: []App{{SdkAppID: "1400000000"}}, MaxClockSkew: 60 * time.Second}); !reflect.DeepEqual(c.Tencent, want) {
		t.Errorf("tencent = %+v, want %+v", c.Tencent, want)
	}
	wantQueue := Queue{Dir: "./data", Replicas: 1, SyncInterval: time.Second, DedupWindow: 2 * time.Minute,
		DeadLetterMaxAge: 336 * time.Hour}
	if c.Queue != wantQueue || !c.Queue.Embedded() {
		t.Errorf("queue = %+v, want %+v", c.Queue, wantQueue)
	}
	wantDefaults := DestinationSettings{Timeout: 10 * time.Second, Concurrency: 16, MaxBacklog: Backlog{Jobs: 1_000_000}, Retry: Retry{
		MaxAttempts: 12, MaxAge: 24 * time.Hour,
		Backoff: Backoff{Initial: time.Second, Max: 10 * time.Minute, Multiplier: 2, Jitter: 0.2}}}
	if !reflect.DeepEqual(c.Defaults, wantDefaults) {
		t.Errorf("defaults = %+v, want %+v", c.Defaults, wantDefaults)
	}
	if len(c.Destinations)+len(c.Routes)+len(c.Respond) != 0 || c.Rules == nil {
		t.Errorf("want no destinations, routes or respond rules and an empty rule set")
	}

	t.Run("respond", func(t *testing.T) {
		c := mustParse(t, minimal+"destinations: {a: {url: http://a}}\nrespond: [{from: a, commands: [C2C.CallbackBeforeSendMsg]}]\n", nil)
		r := c.Respond[0]
		if r.Timeout != 1500*time.Millisecond || r.OnFailure != "allow" || r.OnFailureCode() != 0 {
			t.Errorf("respond defaults: timeout %s, on_failure %q (%d)", r.Timeout, r.OnFailure, r.OnFailureCode())
		}
	})
}

// TestEveryKey sets every key to a value other than its default and checks where it lands.
func TestEveryKey(t *testing.T) {
	yaml := `
server:
  listen: "0.0.0.0:8081"
  path: /im
  max_body_bytes: 512KiB
  trusted_proxies: [10.0.0.0/8, 192.168.1.7]
  tls: {cert: config.go, key: decode.go}
admin:
  listen: "[::1]:9091"
  token: admin-token
  insecure: true
tencent:
  apps:
    - {sdkappid: 1400000000, token: tim}
    - sdkappid: "1400000001"
  max_clock_skew: 30s
  allow_ips: [203.0.113.0/24]
  extra_commands: [Chat.CallbackAfterNewThing]
queue:
  url: nats://n1:4222,nats://n2:4222
  credentials: config.go
  tls: {ca: problem.go, cert: config.go, key: decode.go}
  replicas: 3
  dedup_window: 0s
  dead_letter_max_age: 14d
defaults:
  timeout: 3s
  concurrency: 8
  rate_limit: 100/m
  headers: {X-Env: prod}
  max_backlog: 2GiB
  retry:
    max_attempts: 5
    max_age: 1h
    backoff: {initial: 500ms, max: 1m, multiplier: 1.5, jitter: 0}
destinations:
  a:
    url: https://a.example.com/hook
    forward_query: true
    tim_token: resign
    signing_secret: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA]
    body: '{"from": From_Account}'
routes:
  - name: r
    commands: ["C2C.*"]
    apps: [1400000001]
    when: From_Account == "bob"
    to: [a]
    stop: true
respond:
  - commands: [C2C.CallbackBeforeSendMsg]
    apps: [1400000000]
    when: text contains "http"
    from: a
    timeout: 800ms
    on_failure: drop
`
	c := mustParse(t, yaml, nil)
	wantServer := Server{Listen: "0.0.0.0:8081", Path: "/im", MaxBodyBytes: 512 << 10,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")},
		TLS:            TLSFiles{Cert: "config.go", Key: "decode.go"}}
	if !reflect.DeepEqual(c.Server, wantServer) {
		t.Errorf("server = %+v, want %+v", c.Server, wantServer)
	}
	if c.Admin.Listen != "[::1]:9091" || c.Admin.Token.Value() != "admin-token" || !c.Admin.Insecure {
		t.Errorf("admin = %+v", c.Admin)
	}
	wantTencent := Tencent{Apps: []App{{"1400000000", "tim"}, {"1400000001", ""}}, MaxClockSkew: 30 * time.Second,
		AllowIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, ExtraCommands: []string{"Chat.CallbackAfterNewThing"}}
	if !reflect.DeepEqual(c.Tencent, wantTencent) {
		t.Errorf("tencent = %+v, want %+v", c.Tencent, wantTencent)
	}
	wantQueue := Queue{Dir: "./data", URL: "nats://n1:4222,nats://n2:4222", Credentials: "config.go",
		TLS: TLSFiles{CA: "problem.go", Cert: "config.go", Key: "decode.go"}, Replicas: 3,
		SyncInterval: time.Second, DeadLetterMaxAge: 14 * 24 * time.Hour}
	if c.Queue != wantQueue || c.Queue.Embedded() {
		t.Errorf("queue = %+v, want %+v", c.Queue, wantQueue)
	}
	a := c.Destination("a")
	wantSettings := DestinationSettings{Timeout: 3 * time.Second, Concurrency: 8, RateLimit: Rate{100, time.Minute},
		Headers: map[string]Secret{"X-Env": "prod"}, MaxBacklog: Backlog{Bytes: 2 << 30},
		Retry: Retry{MaxAttempts: 5, MaxAge: time.Hour,
			Backoff: Backoff{Initial: 500 * time.Millisecond, Max: time.Minute, Multiplier: 1.5, Jitter: 0}}}
	if !reflect.DeepEqual(a.DestinationSettings, wantSettings) {
		t.Errorf("destination settings = %+v, want %+v", a.DestinationSettings, wantSettings)
	}
	if a.URL.Value() != "https://a.example.com/hook" || a.URL.Parsed().Host != "a.example.com" || !a.ForwardQuery ||
		a.TIMToken.Value() != "resign" || len(a.SigningSecrets) != 2 || a.Body != `{"from": From_Account}` || a.Transform == nil {
		t.Errorf("destination = %+v", a)
	}
	if a.RateLimit.String() != "100/m" {
		t.Errorf("rate prints %q", a.RateLimit)
	}
	wantRoute := Route{Name: "r", Filter: rules.Filter{Commands: []string{"C2C.*"}, Apps: []string{"1400000001"},
		When: `From_Account == "bob"`}, To: []string{"a"}, Stop: true}
	if !reflect.DeepEqual(*c.Routes[0], wantRoute) {
		t.Errorf("route = %+v, want %+v", *c.Routes[0], wantRoute)
	}
	wantRespond := Respond{Filter: rules.Filter{Commands: []string{"C2C.CallbackBeforeSendMsg"}, Apps: []string{"1400000000"},
		When: `text contains "http"`}, From: "a", Timeout: 800 * time.Millisecond, OnFailure: "drop"}
	if !reflect.DeepEqual(*c.Respond[0], wantRespond) || c.Respond[0].OnFailureCode() != 2 {
		t.Errorf("respond = %+v, want %+v", *c.Respond[0], wantRespond)
	}
}

// TestValues covers the value syntaxes: sizes, durations, rates, sync.
func TestValues(t *testing.T) {
	tests := []struct {
		key, value string
		get        func(*Config) any
		want       any
	}{
		{"server.max_body_bytes", "1048576", func(c *Config) any { return c.Server.MaxBodyBytes }, int64(1 << 20)},
		{"server.max_body_bytes", "3MB", func(c *Config) any { return c.Server.MaxBodyBytes }, int64(3e6)},
		{"server.max_body_bytes", "2 KiB", func(c *Config) any { return c.Server.MaxBodyBytes }, int64(2048)},
		{"server.max_body_bytes", "4MiB", func(c *Config) any { return c.Server.MaxBodyBytes }, int64(MaxBodyEmbedded)},
		{"server.max_body_bytes", "512B", func(c *Config) any { return c.Server.MaxBodyBytes }, int64(512)},
		{"tencent.max_clock_skew", "2m", func(c *Config) any { return c.Tencent.MaxClockSkew }, 2 * time.Minute},
		{"queue.dead_letter_max_age", "7d", func(c *Config) any { return c.Queue.DeadLetterMaxAge }, 7 * 24 * time.Hour},
		{"queue.sync", "always", func(c *Config) any { return c.Queue.SyncAlways }, true},
		{"queue.sync", "250ms", func(c *Config) any { return c.Queue.SyncInterval }, 250 * time.Millisecond},
		{"defaults.rate_limit", "200/s", func(c *Config) any { return c.Defaults.RateLimit }, Rate{200, time.Second}},
		{"defaults.rate_limit", "3600/h", func(c *Config) any { return c.Defaults.RateLimit }, Rate{3600, time.Hour}},
		{"defaults.rate_limit", `""`, func(c *Config) any { return c.Defaults.RateLimit.IsZero() }, true},
		{"defaults.max_backlog", "100000", func(c *Config) any { return c.Defaults.MaxBacklog }, Backlog{Jobs: 100000}},
		{"defaults.max_backlog", "512MiB", func(c *Config) any { return c.Defaults.MaxBacklog }, Backlog{Bytes: 512 << 20}},
		{"queue.max_bytes", "10GiB", func(c *Config) any { return c.Queue.MaxBytes }, int64(10 << 30)},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			section, key, _ := strings.Cut(tt.key, ".")
			yaml := section + ":\n  " + key + ": " + tt.value + "\n"
			if section == "tencent" {
				yaml += "  apps: [{sdkappid: 1400000000}]\n"
			} else {
				yaml = minimal + yaml
			}
			c := mustParse(t, yaml, nil)
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMaxBodyExternalQueue: an external JetStream's max_payload is known only once
// connected, so check leaves a larger max_body_bytes to the gateway's start.
func TestMaxBodyExternalQueue(t *testing.T) {
	c := mustParse(t, minimal+"server: {max_body_bytes: 16MiB}\nqueue: {url: nats://n1:4222}\n", nil)
	if c.Server.MaxBodyBytes != 16<<20 {
		t.Errorf("max_body_bytes = %d", c.Server.MaxBodyBytes)
	}
}

// TestDefaultsInherited checks that every destination starts from defaults: partial retry
// overrides keep the rest, headers merge (the destination's win), and a defaults section
// written after the destinations still applies.
func TestDefaultsInherited(t *testing.T) {
	yaml := minimal + `
destinations:
  only-attempts:
    url: http://a
    max_backlog: 500
    retry: {max_attempts: 3}
    headers: {X-Env: staging, X-Only: a}
  only-backoff:
    url: http://b
    timeout: 2s
    retry:
      backoff: {initial: 2s}
  nothing:
    url: http://c
routes:
  - {name: r, to: [only-attempts, only-backoff, nothing]}
defaults:
  timeout: 5s
  concurrency: 4
  rate_limit: 10/s
  headers: {X-Env: prod, X-Team: im}
  retry:
    max_attempts: 7
    backoff: {max: 1m, multiplier: 3}
`
	c := mustParse(t, yaml, nil)
	backoff := Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 3, Jitter: 0.2}
	want := map[string]DestinationSettings{
		"only-attempts": {Timeout: 5 * time.Second, Concurrency: 4, RateLimit: Rate{10, time.Second}, MaxBacklog: Backlog{Jobs: 500},
			Headers: map[string]Secret{"X-Env": "staging", "X-Team": "im", "X-Only": "a"},
			Retry:   Retry{MaxAttempts: 3, MaxAge: 24 * time.Hour, Backoff: backoff}},
		"only-backoff": {Timeout: 2 * time.Second, Concurrency: 4, RateLimit: Rate{10, time.Second}, MaxBacklog: Backlog{Jobs: 1_000_000},
			Headers: map[string]Secret{"X-Env": "prod", "X-Team": "im"},
			Retry: Retry{MaxAttempts: 7, MaxAge: 24 * time.Hour,
				Backoff: Backoff{Initial: 2 * time.Second, Max: time.Minute, Multiplier: 3, Jitter: 0.2}}},
		"nothing": {Timeout: 5 * time.Second, Concurrency: 4, RateLimit: Rate{10, time.Second}, MaxBacklog: Backlog{Jobs: 1_000_000},
			Headers: map[string]Secret{"X-Env": "prod", "X-Team": "im"},
			Retry:   Retry{MaxAttempts: 7, MaxAge: 24 * time.Hour, Backoff: backoff}},
	}
	for _, d := range c.Destinations {
		t.Run(d.Name, func(t *testing.T) {
			if !reflect.DeepEqual(d.DestinationSettings, want[d.Name]) {
				t.Errorf("got  %+v\nwant %+v", d.DestinationSettings, want[d.Name])
			}
		})
	}
	if len(c.Destinations) != 3 {
		t.Errorf("got %d destinations", len(c.Destinations))
	}
	if want := map[string]Secret{"X-Env": "prod", "X-Team": "im"}; !maps.Equal(c.Defaults.Headers, want) {
		t.Errorf("a destination's headers leaked into defaults: %v", c.Defaults.Headers)
	}
}

// TestAdminListen: a non-loopback admin address needs a token, or insecure: true.
func TestAdminListen(t *testing.T) {
	tests := []struct {
		name, admin string
		want        string // the problem, or "" for none
	}{
		{"default", "", ""},
		{"ipv4 loopback", "admin: {listen: '127.0.0.1:9090'}", ""},
		{"ipv6 loopback", "admin: {listen: '[::1]:9090'}", ""},
		{"localhost", "admin: {listen: 'localhost:9090'}", ""},
		{"other loopback", "admin: {listen: '127.0.0.2:9090'}", ""},
		{"any address", "admin: {listen: '0.0.0.0:9090'}",
			"f.yaml:4:17: admin.listen: 0.0.0.0:9090 is not a loopback address and admin.token is empty: set a token, or insecure: true"},
		{"port only", "admin:\n  listen: ':9090'",
			"f.yaml:5:11: admin.listen: :9090 is not a loopback address and admin.token is empty: set a token, or insecure: true"},
		{"empty token from the environment", "admin: {listen: '10.0.0.5:9090', token: '${ADMIN_TOKEN:-}'}",
			"f.yaml:4:17: admin.listen: 10.0.0.5:9090 is not a loopback address and admin.token is empty: set a token, or insecure: true"},
		{"host name", "admin: {listen: 'admin.internal:9090'}",
			"f.yaml:4:17: admin.listen: admin.internal:9090 is not a loopback address and admin.token is empty: set a token, or insecure: true"},
		{"with a token", "admin: {listen: '0.0.0.0:9090', token: t0k3n}", ""},
		{"insecure", "admin: {listen: '0.0.0.0:9090', insecure: true}", ""},
		{"insecure false", "admin: {listen: '0.0.0.0:9090', insecure: false}",
			"f.yaml:4:17: admin.listen: 0.0.0.0:9090 is not a loopback address and admin.token is empty: set a token, or insecure: true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, probs := Parse("f.yaml", []byte(minimal+tt.admin+"\n"), mapEnv(nil))
			if got := probs.Error(); got != tt.want {
				t.Errorf("problems %q, want %q", got, tt.want)
			}
			if (c == nil) != (tt.want != "") {
				t.Errorf("config loaded = %v", c != nil)
			}
		})
	}
}

// TestRulesCompiled checks that Parse hands the routes and respond rules to package rules
// in file order, so that the compiled set matches as the file says.
func TestRulesCompiled(t *testing.T) {
	yaml := minimal + `
destinations:
  app: {url: http://app}
  audit: {url: http://audit}
  bot: {url: http://bot, body: '{"text": From_Account + ": " + text}'}
routes:
  - {name: all, to: [app]}
  - name: failed
    commands: [C2C.CallbackAfterSendMsg]
    when: SendMsgResult != 0
    to: [bot, audit]
  - name: vip
    commands: [C2C.*]
    when: To_Account in ["alice", "bob"]
    to: [audit]
respond:
  - commands: [C2C.CallbackBeforeSendMsg]
    from: app
`
	c := mustParse(t, yaml, nil)
	body := `{"CallbackCommand": "C2C.CallbackAfterSendMsg", "From_Account": "jared", "To_Account": "bob",
		"SendMsgResult": 20006, "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]}`
	fields, err := rules.ParseBody([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ev := rules.NewEvent("1400000000", "", nil, fields)
	m := c.Rules.Match(ev, func(kind, name string, err error) { t.Errorf("%s %s: %v", kind, name, err) })
	want := []rules.Delivery{
		{Destination: "app", Routes: []string{"all"}},
		{Destination: "bot", Routes: []string{"failed"}},
		{Destination: "audit", Routes: []string{"failed", "vip"}},
	}
	if !slices.Equal(m.Routes, []string{"all", "failed", "vip"}) || !reflect.DeepEqual(m.Deliveries, want) || m.Respond != nil {
		t.Errorf("match = %+v", m)
	}
	got, err := c.Destination("bot").Transform.Render(ev)
	if err != nil || string(got) != `{"text":"jared: hi"}` {
		t.Errorf("body = %s, %v", got, err)
	}
	if c.Destination("nope") != nil {
		t.Errorf("Destination found an undefined name")
	}
}

func TestHash(t *testing.T) {
	c := mustParse(t, minimal, nil)
	sum := sha256.Sum256([]byte(minimal))
	if c.Hash != hex.EncodeToString(sum[:]) {
		t.Errorf("hash %s, want the SHA-256 of the bytes", c.Hash)
	}
	want := float64(uint64(sum[0])<<40 | uint64(sum[1])<<32 | uint64(sum[2])<<24 | uint64(sum[3])<<16 | uint64(sum[4])<<8 | uint64(sum[5]))
	if got := c.HashValue(); got != want {
		t.Errorf("HashValue = %v, want %v (the first 48 bits)", got, want)
	}
	// One hash in two forms: HashID is HashValue in hex, and the start of sha256sum's.
	if id := c.HashID(); id != hex.EncodeToString(sum[:6]) || fmt.Sprintf("%012x", uint64(c.HashValue())) != id {
		t.Errorf("HashID = %s, want %x, the hex of HashValue", id, sum[:6])
	}
	if other := mustParse(t, minimal+"# changed\n", nil); other.Hash == c.Hash {
		t.Errorf("a changed file kept its hash")
	}
}
