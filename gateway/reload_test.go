package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
)

// Tests of reloading the config while Fanout runs (docs/operating.md). Each test runs a real
// Gateway on an embedded JetStream in t.TempDir() and real HTTP downstreams; the helpers
// of this file are prefixed rl.

const (
	rlApp = "1400000000"
	rlOK  = `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`

	// rlTimeout bounds a wait for something that should happen within a moment.
	rlTimeout = 30 * time.Second

	// rlPickup is how soon a changed config file must be live (issue 4).
	rlPickup = 5 * time.Second
)

// rlWaitFor polls cond until it holds, and fails the test when timeout passes first.
func rlWaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rlWatch runs g.WatchConfig until the end of the test; it ends before the gateway stops.
func rlWatch(t testing.TB, g *Gateway) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.WatchConfig(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// rlReload runs g.Reload, failing the test when it does not return within rlTimeout (a
// reload must never wait for deliveries).
func rlReload(t testing.TB, g *Gateway) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- g.Reload(context.Background()) }()
	select {
	case err := <-done:
		return err
	case <-time.After(rlTimeout):
		t.Fatalf("Reload did not return within %s", rlTimeout)
		return nil
	}
}

// rlWrite replaces the file at path with text the way most editors do: a new file renamed
// over the old one, so that a reader never sees half of it.
func rlWrite(t testing.TB, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// rlNewConfig writes text to a fresh directory and returns the file's path.
func rlNewConfig(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fanout.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rlHeader is the part of a test config before destinations: loopback listeners on free
// ports, one app without a token, the queue in queueDir, and retries quick enough for tests.
func rlHeader(queueDir string) string {
	return rlHeaderAt("127.0.0.1:0", "127.0.0.1:0", queueDir)
}

func rlHeaderAt(listen, admin, queueDir string) string {
	return fmt.Sprintf(`server: {listen: %q, path: /callback}
admin: {listen: %q}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
defaults:
  concurrency: 4
  timeout: 10s
  retry: {max_attempts: 20, backoff: {initial: 50ms, max: 200ms, multiplier: 2, jitter: 0}}
`, listen, admin, rlApp, queueDir)
}

// rlRoutes is a routes section with one route, name, sending every callback to dests.
func rlRoutes(name string, dests ...string) string {
	return fmt.Sprintf("routes:\n  - name: %s\n    to: [%s]\n", name, strings.Join(dests, ", "))
}

// rlHashValue is the fanout_config_hash of a file holding text: the first 48 bits of its
// SHA-256, worked out here rather than with the config package.
func rlHashValue(text string) float64 {
	sum := sha256.Sum256([]byte(text))
	return float64(binary.BigEndian.Uint64(sum[:8]) >> 16)
}

// rlFreeAddr is a loopback address nothing listens on (listened on, then closed).
func rlFreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var rlClient = &http.Client{Timeout: rlTimeout}

// rlBody is a C2C.CallbackAfterSendMsg body whose MsgKey is key.
func rlBody(key string) []byte {
	return fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh",`+
		`"MsgKey":%q,"SendMsgResult":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`, key)
}

// rlPost sends the callback whose MsgKey is key to the gateway at addr and returns the answer.
func rlPost(addr, key string) (int, string, error) {
	url := "http://" + addr + "/callback?SdkAppid=" + rlApp +
		"&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json&ClientIP=203.0.113.9&OptPlatform=RESTAPI"
	resp, err := rlClient.Post(url, "application/json", bytes.NewReader(rlBody(key)))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// rlAccept sends a callback and fails the test unless it is answered 200 OK.
func rlAccept(t testing.TB, g *Gateway, key string) {
	t.Helper()
	status, body, err := rlPost(g.CallbackAddr(), key)
	if err != nil || status != http.StatusOK || body != rlOK {
		t.Fatalf("callback %s answered %d %s (%v), want 200 %s", key, status, body, err, rlOK)
	}
}

// rlMetrics scrapes the admin /metrics at adminAddr: each series, as written in the text
// format (`name` or `name{a="x",b="y"}`), with its value.
func rlMetrics(t testing.TB, adminAddr string) map[string]float64 {
	t.Helper()
	resp, err := rlClient.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return m
}

// rlHit is one request a downstream answered.
type rlHit struct {
	Key     string // the body's MsgKey
	Route   string // Fanout-Route
	Attempt string // Fanout-Attempt
}

// rlReceiver is a downstream webhook that records every request and how many it had in
// flight at most.
type rlReceiver struct {
	srv *httptest.Server
	// hold, when set, runs before the answer with the number of requests in flight, this
	// one included; it may block to make the request slow.
	hold func(inFlight int)

	mu          sync.Mutex
	hits        []rlHit
	inFlight    int
	maxInFlight int
}

// rlNewReceiver starts a downstream that answers 200, closed at the end of the test.
func rlNewReceiver(t testing.TB, hold func(int)) *rlReceiver {
	rc := &rlReceiver{hold: hold}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *rlReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var m struct{ MsgKey string }
	_ = json.Unmarshal(body, &m)
	rc.mu.Lock()
	rc.inFlight++
	n := rc.inFlight
	rc.maxInFlight = max(rc.maxInFlight, n)
	rc.mu.Unlock()
	if rc.hold != nil {
		rc.hold(n)
	}
	rc.mu.Lock()
	rc.inFlight--
	rc.hits = append(rc.hits, rlHit{Key: m.MsgKey, Route: r.Header.Get("Fanout-Route"), Attempt: r.Header.Get("Fanout-Attempt")})
	rc.mu.Unlock()
	io.WriteString(w, "ok")
}

func (rc *rlReceiver) URL() string { return rc.srv.URL }

func (rc *rlReceiver) all() []rlHit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.hits)
}

func (rc *rlReceiver) max() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.maxInFlight
}

// has reports whether every key was received.
func (rc *rlReceiver) has(keys ...string) bool {
	got := map[string]bool{}
	for _, h := range rc.all() {
		got[h.Key] = true
	}
	for _, k := range keys {
		if !got[k] {
			return false
		}
	}
	return true
}

// rlExpectAt sends a callback and waits until dest receives it with the Fanout-Route route.
func rlExpectAt(t testing.TB, g *Gateway, key string, dest *rlReceiver, route string) {
	t.Helper()
	rlAccept(t, g, key)
	rlWaitFor(t, rlTimeout, "delivery of "+key, func() bool { return dest.has(key) })
	for _, h := range dest.all() {
		if h.Key == key && h.Route != route {
			t.Fatalf("%s arrived with Fanout-Route %q, want %q", key, h.Route, route)
		}
	}
}

// TestReloadUnderLoad swaps the config file 50 times between two valid configs (A sends
// everything to x by route a-all, B to y by route b-all) and 10 times to an invalid one,
// through Reload, while a few goroutines send callbacks with unique MsgKeys. No callback may
// get anything but OK; each is delivered exactly once, to the destination of the config it
// was matched with, as its Fanout-Route shows; and a callback sent entirely while one config
// was live (no reload began between sending it and its answer) goes where that config says.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		senders        = 4
		maxPerSender   = 5000 // bounds the load; the swaps end long before
		steps          = 60   // every sixth is invalid: 50 valid swaps, 10 invalid files
		perStepAtLeast = 3    // callbacks answered between two reloads
	)
	x, y := rlNewReceiver(t, nil), rlNewReceiver(t, nil)
	head := rlHeader(filepath.Join(t.TempDir(), "queue")) +
		fmt.Sprintf("destinations:\n  x: {url: %q}\n  y: {url: %q}\n", x.URL(), y.URL())
	configs := map[string]string{"x": head + rlRoutes("a-all", "x"), "y": head + rlRoutes("b-all", "y")}
	routeOf := map[string]string{"x": "a-all", "y": "b-all"}
	invalid := []struct{ name, text, want string }{
		{"typo'd key", head + "routes:\n  - name: typo\n    too: [y]\n", `unknown key "too"`},
		{"undefined destination", head + rlRoutes("undefined", "z"), `sends to undefined destination "z"`},
		{"bad expression", head + "routes:\n  - name: bad-expr\n    when: From_Account ==\n    to: [y]\n", "routes[0].when:"},
	}
	path := rlNewConfig(t, configs["x"])
	g := startGateway(t, path)

	// gen is odd while a reload runs; gen/2 reloads have returned. liveAfter[k] is the
	// destination of the config live after k reloads; only this goroutine writes it, and
	// it is read once the senders are done.
	var gen atomic.Int64
	liveAfter := []string{"x"}
	type sent struct {
		key            string
		genBefore, gen int64
	}
	var (
		mu       sync.Mutex
		accepted []sent
		failures []string
		answered atomic.Int64
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for s := range senders {
		wg.Go(func() {
			for i := range maxPerSender {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("load-%d-%05d", s, i)
				before := gen.Load()
				status, body, err := rlPost(g.CallbackAddr(), key)
				after := gen.Load()
				mu.Lock()
				if err != nil || status != http.StatusOK || body != rlOK {
					failures = append(failures, fmt.Sprintf("%s: %d %s %v", key, status, body, err))
				} else {
					accepted = append(accepted, sent{key, before, after})
				}
				mu.Unlock()
				answered.Add(1)
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	began := time.Now()
	applied, refused := 0, 0
	next := "y"
	hash := rlHashValue(configs["x"])
	for step := range steps {
		floor := answered.Load() + perStepAtLeast
		rlWaitFor(t, rlTimeout, fmt.Sprintf("%d callbacks answered before reload %d", perStepAtLeast, step+1),
			func() bool { return answered.Load() >= floor })

		text, want, name := configs[next], "", "config "+next
		if step%6 == 5 {
			bad := invalid[(step/6)%len(invalid)]
			text, want, name = bad.text, bad.want, bad.name
		}
		rlWrite(t, path, text)
		gen.Add(1)
		err := g.Reload(context.Background())
		live := liveAfter[len(liveAfter)-1]
		if want == "" && err == nil {
			live = next
		}
		liveAfter = append(liveAfter, live)
		gen.Add(1)

		m := rlMetrics(t, g.AdminAddr())
		ok := m["fanout_config_last_reload_successful"]
		if want == "" {
			if err != nil {
				t.Fatalf("reload %d (%s): %v", step+1, name, err)
			}
			applied++
			hash = rlHashValue(text)
			next = map[string]string{"x": "y", "y": "x"}[next]
			if ok != 1 {
				t.Errorf("reload %d (%s): fanout_config_last_reload_successful = %g, want 1", step+1, name, ok)
			}
		} else {
			if err == nil || !strings.Contains(err.Error(), path+":") || !strings.Contains(err.Error(), want) {
				t.Fatalf("reload %d (%s): error %v, want one naming %s and %q", step+1, name, err, path, want)
			}
			refused++
			if ok != 0 {
				t.Errorf("reload %d (%s): fanout_config_last_reload_successful = %g, want 0", step+1, name, ok)
			}
		}
		if got := m["fanout_config_hash"]; got != hash {
			t.Errorf("after reload %d (%s): fanout_config_hash = %g, want %g (the live config's)", step+1, name, got, hash)
		}
		if got := g.live.Load().cfg.Routes[0].Name; got != routeOf[live] {
			t.Errorf("after reload %d (%s): live route %q, want %q", step+1, name, got, routeOf[live])
		}
	}
	stopLoad()
	swapping := time.Since(began)

	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("%d callbacks were not answered OK, the first: %s", len(failures), failures[0])
	}
	if len(accepted) == 0 {
		t.Fatal("no callback was accepted")
	}
	waitKeys := func() []string {
		got := map[string]bool{}
		for _, rc := range []*rlReceiver{x, y} {
			for _, h := range rc.all() {
				got[h.Key] = true
			}
		}
		var missing []string
		for _, s := range accepted {
			if !got[s.key] {
				missing = append(missing, s.key)
			}
		}
		return missing
	}
	rlWaitFor(t, rlTimeout, fmt.Sprintf("the delivery of %d callbacks", len(accepted)), func() bool { return len(waitKeys()) == 0 })
	draining := time.Since(began) - swapping

	// Every callback went to exactly one destination, once, with that destination's route.
	type got struct {
		dest  string
		route string
	}
	byKey := map[string][]got{}
	for name, rc := range map[string]*rlReceiver{"x": x, "y": y} {
		for _, h := range rc.all() {
			byKey[h.Key] = append(byKey[h.Key], got{name, h.Route})
		}
	}
	counts := map[string]int{}
	straddling, errs := 0, 0
	for _, s := range accepted {
		gs := byKey[s.key]
		delete(byKey, s.key)
		if len(gs) != 1 {
			errs++
			if errs <= 10 {
				t.Errorf("%s was delivered %d times, want once: %v", s.key, len(gs), gs)
			}
			continue
		}
		d := gs[0]
		counts[d.dest]++
		if d.route != routeOf[d.dest] {
			errs++
			if errs <= 10 {
				t.Errorf("%s reached %s with Fanout-Route %q, want %q", s.key, d.dest, d.route, routeOf[d.dest])
			}
		}
		if s.genBefore != s.gen || s.gen%2 == 1 {
			straddling++ // a reload ran while it was in flight: either config may have matched it
			continue
		}
		if want := liveAfter[s.gen/2]; d.dest != want {
			errs++
			if errs <= 10 {
				t.Errorf("%s was sent while the config of %s was live (after reload %d) and reached %s",
					s.key, want, s.gen/2, d.dest)
			}
		}
	}
	for key := range byKey {
		t.Errorf("%s was delivered but never accepted", key)
	}
	if counts["x"] == 0 || counts["y"] == 0 {
		t.Errorf("deliveries: %d to x, %d to y; want some to each", counts["x"], counts["y"])
	}
	if applied != 50 || refused != 10 {
		t.Errorf("%d reloads applied and %d refused, want 50 and 10", applied, refused)
	}
	t.Logf("%d callbacks accepted (%d while a reload ran), %d delivered to x, %d to y; %d reloads applied, %d refused; "+
		"swaps took %s, the last deliveries %s more", len(accepted), straddling, counts["x"], counts["y"], applied, refused,
		swapping.Round(time.Millisecond), draining.Round(time.Millisecond))
}

// rlConfigMap lays out a config the way Kubernetes mounts a ConfigMap volume:
// config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>/, and each update writes a
// new timestamped folder, points ..data_tmp at it, renames ..data_tmp over ..data and
// removes the old folder.
type rlConfigMap struct {
	dir     string
	n       int
	current string
}

func (c *rlConfigMap) path() string { return filepath.Join(c.dir, "config.yaml") }

func (c *rlConfigMap) update(t testing.TB, text string) {
	t.Helper()
	c.n++
	ts := fmt.Sprintf("..2026_11_25_10_%02d_%02d.%09d", c.n/60, c.n%60, 100000000+c.n)
	if err := os.Mkdir(filepath.Join(c.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, ts, "config.yaml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ts, filepath.Join(c.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(c.dir, "..data_tmp"), filepath.Join(c.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if c.current == "" {
		if err := os.Symlink(filepath.Join("..data", "config.yaml"), c.path()); err != nil {
			t.Fatal(err)
		}
	} else if err := os.RemoveAll(filepath.Join(c.dir, c.current)); err != nil {
		t.Fatal(err)
	}
	c.current = ts
}

// TestReloadOnFileChange changes the config file the three ways it is changed in practice,
// A -> B -> A, with the watcher running: each change is live within 5 s (the
// fanout_config_hash gauge shows the new file's hash) and routes callbacks by the new file.
func TestReloadOnFileChange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// setup writes the first config and returns the config path and how to change it.
		setup func(t *testing.T, text string) (string, func(text string))
	}{
		{"replaced by rename", func(t *testing.T, text string) (string, func(string)) {
			path := rlNewConfig(t, text)
			return path, func(text string) { rlWrite(t, path, text) }
		}},
		{"edited in place", func(t *testing.T, text string) (string, func(string)) {
			path := rlNewConfig(t, text)
			return path, func(text string) {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteString(text); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"Kubernetes ConfigMap swap", func(t *testing.T, text string) (string, func(string)) {
			cm := &rlConfigMap{dir: t.TempDir()}
			cm.update(t, text)
			return cm.path(), func(text string) { cm.update(t, text) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x, y := rlNewReceiver(t, nil), rlNewReceiver(t, nil)
			head := rlHeader(filepath.Join(t.TempDir(), "queue")) +
				fmt.Sprintf("destinations:\n  x: {url: %q}\n  y: {url: %q}\n", x.URL(), y.URL())
			a, b := head+rlRoutes("a-all", "x"), head+rlRoutes("b-all", "y")
			path, change := tc.setup(t, a)
			g := startGateway(t, path)
			rlWatch(t, g)
			rlExpectAt(t, g, "first", x, "a-all")

			for i, step := range []struct {
				text, route string
				dest        *rlReceiver
			}{{b, "b-all", y}, {a, "a-all", x}, {b, "b-all", y}} {
				change(step.text)
				deadline := time.Now().Add(rlPickup)
				want := rlHashValue(step.text)
				for rlMetrics(t, g.AdminAddr())["fanout_config_hash"] != want {
					if time.Now().After(deadline) {
						t.Fatalf("change %d (to %s) not picked up within %s: fanout_config_hash is not the new file's",
							i+1, step.route, rlPickup)
					}
					time.Sleep(20 * time.Millisecond)
				}
				if ok := rlMetrics(t, g.AdminAddr())["fanout_config_last_reload_successful"]; ok != 1 {
					t.Errorf("change %d: fanout_config_last_reload_successful = %g, want 1", i+1, ok)
				}
				rlExpectAt(t, g, fmt.Sprintf("after-change-%d", i+1), step.dest, step.route)
			}
		})
	}
}

// TestReloadWatchSeesChangeBeforeItStarted changes the file after the gateway loaded it but
// before the watcher starts (as happens when a ConfigMap is updated while Fanout starts):
// the watcher must compare with what is live, not with the file as it first sees it.
func TestReloadWatchSeesChangeBeforeItStarted(t *testing.T) {
	t.Parallel()
	x, y := rlNewReceiver(t, nil), rlNewReceiver(t, nil)
	head := rlHeader(filepath.Join(t.TempDir(), "queue")) +
		fmt.Sprintf("destinations:\n  x: {url: %q}\n  y: {url: %q}\n", x.URL(), y.URL())
	a, b := head+rlRoutes("a-all", "x"), head+rlRoutes("b-all", "y")
	path := rlNewConfig(t, a)
	g := startGateway(t, path)
	rlWrite(t, path, b)
	rlWatch(t, g)
	deadline := time.Now().Add(rlPickup)
	for rlMetrics(t, g.AdminAddr())["fanout_config_hash"] != rlHashValue(b) {
		if time.Now().After(deadline) {
			t.Fatalf("a change made before the watch started was not picked up within %s", rlPickup)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rlExpectAt(t, g, "after-change", y, "b-all")
}

// TestReloadRefusesRestartOnlyKeys changes server.listen, admin.listen and queue.dir
// (alone, then together) along with the routes: the reload is refused with an error naming
// exactly the changed keys, and the old config, routes included, stays live.
func TestReloadRefusesRestartOnlyKeys(t *testing.T) {
	t.Parallel()
	x, y := rlNewReceiver(t, nil), rlNewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	dests := fmt.Sprintf("destinations:\n  x: {url: %q}\n  y: {url: %q}\n", x.URL(), y.URL())
	a := rlHeader(qdir) + dests + rlRoutes("a-all", "x")
	path := rlNewConfig(t, a)
	g := startGateway(t, path)
	otherListen, otherAdmin, otherDir := rlFreeAddr(t), rlFreeAddr(t), filepath.Join(t.TempDir(), "other-queue")

	for i, tc := range []struct {
		name                string
		listen, admin, qdir string
		keys                []string
	}{
		{"server.listen", otherListen, "127.0.0.1:0", qdir, []string{"server.listen"}},
		{"admin.listen", "127.0.0.1:0", otherAdmin, qdir, []string{"admin.listen"}},
		{"queue.dir", "127.0.0.1:0", "127.0.0.1:0", otherDir, []string{"queue.dir"}},
		{"all three", otherListen, otherAdmin, otherDir, []string{"server.listen", "admin.listen", "queue.dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rlWrite(t, path, rlHeaderAt(tc.listen, tc.admin, tc.qdir)+dests+rlRoutes("b-all", "y"))
			err := rlReload(t, g)
			if err == nil {
				t.Fatal("reload accepted, want it refused")
			}
			msg := err.Error()
			for _, key := range []string{"server.listen", "admin.listen", "queue.dir"} {
				if named, want := strings.Contains(msg, key), slices.Contains(tc.keys, key); named != want {
					t.Errorf("error %q names %s: %v, want %v", msg, key, named, want)
				}
			}
			if !strings.Contains(msg, "restart") {
				t.Errorf("error %q does not say that a restart is needed", msg)
			}
			m := rlMetrics(t, g.AdminAddr())
			if m["fanout_config_last_reload_successful"] != 0 {
				t.Errorf("fanout_config_last_reload_successful = %g, want 0", m["fanout_config_last_reload_successful"])
			}
			if m["fanout_config_hash"] != rlHashValue(a) {
				t.Errorf("fanout_config_hash changed on a refused reload")
			}
			rlExpectAt(t, g, fmt.Sprintf("refused-%d", i), x, "a-all")
		})
	}

	// The same change without the restart-only keys is applied.
	rlWrite(t, path, rlHeader(qdir)+dests+rlRoutes("b-all", "y"))
	if err := rlReload(t, g); err != nil {
		t.Fatalf("reload: %v", err)
	}
	rlExpectAt(t, g, "applied", y, "b-all")
}

// TestReloadRemovesDestinationWithPendingDeliveries removes a destination whose downstream
// is down (a closed port) while it has deliveries in flight (in a round of quick retries)
// and waiting in the queue: after the reload they are all in the dead-letter queue with
// reason "destination removed", nothing is left queued for it, and a destination added
// again under the same name delivers new callbacks (and not the dead-lettered ones).
func TestReloadRemovesDestinationWithPendingDeliveries(t *testing.T) {
	t.Parallel()
	const n = 6
	stay, back := rlNewReceiver(t, nil), rlNewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	// Quick retries for a long time: the round of each delivery in flight outlasts the test
	// unless the reload stops it.
	gone := func(url string) string {
		return fmt.Sprintf("  gone:\n    url: %q\n    concurrency: 2\n"+
			"    retry: {max_attempts: 1000, backoff: {initial: 100ms, max: 100ms, multiplier: 1, jitter: 0}}\n", url)
	}
	stayDest := fmt.Sprintf("  stay: {url: %q}\n", stay.URL())
	a := rlHeader(qdir) + "destinations:\n" + gone("http://"+rlFreeAddr(t)+"/down") + stayDest + rlRoutes("all", "gone", "stay")
	path := rlNewConfig(t, a)
	g := startGateway(t, path)

	var keys []string
	for i := range n {
		key := fmt.Sprintf("pending-%d", i)
		keys = append(keys, key)
		rlAccept(t, g, key)
	}
	rlWaitFor(t, rlTimeout, "the deliveries to stay", func() bool { return stay.has(keys...) })
	rlWaitFor(t, rlTimeout, "failed attempts to gone", func() bool {
		return rlMetrics(t, g.AdminAddr())[`fanout_delivery_attempts_total{destination="gone",result="connection"}`] >= 4
	})

	rlWrite(t, path, rlHeader(qdir)+"destinations:\n"+stayDest+rlRoutes("all", "stay"))
	if err := rlReload(t, g); err != nil {
		t.Fatalf("reload without gone: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), rlTimeout)
	defer cancel()
	// The backlog moves in the background, after the reload returned.
	rlWaitFor(t, rlTimeout, "the deliveries of gone in the dead-letter queue", func() bool {
		count, err := g.queue.Load().DeadLetterCount(ctx, "gone")
		pending, _, perr := g.queue.Load().Pending(ctx, "gone")
		return err == nil && perr == nil && count == n && pending == 0
	})
	dead, _, err := g.queue.Load().ListDeadLetters(ctx, queue.DeadLetterFilter{Destination: "gone"}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var deadKeys []string
	for _, dl := range dead {
		var m struct{ MsgKey string }
		_ = json.Unmarshal(dl.Body, &m)
		deadKeys = append(deadKeys, m.MsgKey)
		if dl.Reason != ReasonDestinationRemoved {
			t.Errorf("dead letter of %s: reason %q, want %q", m.MsgKey, dl.Reason, ReasonDestinationRemoved)
		}
	}
	slices.Sort(deadKeys)
	if !slices.Equal(deadKeys, keys) {
		t.Errorf("dead letters of gone: %v, want %v", deadKeys, keys)
	}

	// gone again, now up.
	rlWrite(t, path, rlHeader(qdir)+"destinations:\n"+gone(back.URL())+stayDest+rlRoutes("all", "gone", "stay"))
	if err := rlReload(t, g); err != nil {
		t.Fatalf("reload with gone again: %v", err)
	}
	var fresh []string
	for i := range 3 {
		key := fmt.Sprintf("re-added-%d", i)
		fresh = append(fresh, key)
		rlAccept(t, g, key)
	}
	rlWaitFor(t, rlTimeout, "the deliveries to the re-added gone", func() bool { return back.has(fresh...) })
	var got []string
	for _, h := range back.all() {
		got = append(got, h.Key)
	}
	slices.Sort(got)
	if !slices.Equal(got, fresh) {
		t.Errorf("the re-added gone received %v, want exactly %v", got, fresh)
	}
	if count, err := g.queue.Load().DeadLetterCount(ctx, "gone"); err != nil || count != n {
		t.Errorf("dead letters of gone: %d (%v), want %d", count, err, n)
	}
}

// TestReloadChangesConcurrency raises a destination's concurrency from 1 to 4 by a reload:
// the downstream, which holds each request a while, sees one request at a time before and
// four at a time after, without a restart.
func TestReloadChangesConcurrency(t *testing.T) {
	t.Parallel()
	var phase atomic.Int32
	four := make(chan struct{})
	fourOnce := sync.OnceFunc(func() { close(four) })
	slow := rlNewReceiver(t, func(inFlight int) {
		if phase.Load() == 1 {
			// A slow downstream: a second request would arrive meanwhile if one were sent.
			time.Sleep(50 * time.Millisecond)
			return
		}
		// Hold every request until four are in flight at once (then let them all go).
		if inFlight >= 4 {
			fourOnce()
		}
		select {
		case <-four:
		case <-time.After(rlTimeout):
		}
	})
	phase.Store(1)
	qdir := filepath.Join(t.TempDir(), "queue")
	dest := func(concurrency int) string {
		return fmt.Sprintf("destinations:\n  slow: {url: %q, concurrency: %d}\n", slow.URL(), concurrency)
	}
	path := rlNewConfig(t, rlHeader(qdir)+dest(1)+rlRoutes("all", "slow"))
	g := startGateway(t, path)

	var before []string
	for i := range 6 {
		key := fmt.Sprintf("one-at-a-time-%d", i)
		before = append(before, key)
		rlAccept(t, g, key)
	}
	rlWaitFor(t, rlTimeout, "the deliveries at concurrency 1", func() bool { return slow.has(before...) })
	if got := slow.max(); got != 1 {
		t.Fatalf("at concurrency 1 the downstream had %d requests in flight at once", got)
	}

	rlWrite(t, path, rlHeader(qdir)+dest(4)+rlRoutes("all", "slow"))
	if err := rlReload(t, g); err != nil {
		t.Fatalf("reload: %v", err)
	}
	phase.Store(2)
	var after []string
	for i := range 8 {
		key := fmt.Sprintf("four-at-a-time-%d", i)
		after = append(after, key)
		rlAccept(t, g, key)
	}
	rlWaitFor(t, rlTimeout, "four requests in flight at once", func() bool {
		select {
		case <-four:
			return true
		default:
			return false
		}
	})
	defer func() {
		if t.Failed() {
			n, _, err := g.queue.Load().Pending(context.Background(), "slow")
			t.Logf("the downstream received (MsgKey, Fanout-Route, Fanout-Attempt) %v; still queued: %d %v", slow.all(), n, err)
		}
	}()
	rlWaitFor(t, rlTimeout, "the deliveries at concurrency 4", func() bool { return slow.has(after...) })
	if got := slow.max(); got != 4 {
		t.Errorf("at concurrency 4 the downstream had at most %d requests in flight at once, want 4", got)
	}
}

// TestReloadChangesURLOfPendingDeliveries points a destination whose URL is down (a closed
// port) at one that is up: its pending deliveries, waiting in the queue for their retry,
// make their next attempt at the new URL.
func TestReloadChangesURLOfPendingDeliveries(t *testing.T) {
	t.Parallel()
	const n = 3
	up := rlNewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	// The wait after a failure is longer than the quick retries (delivery.QuickRetryMax):
	// each failed attempt goes back to the queue, and the next one reads the live URL.
	dest := func(url string) string {
		return fmt.Sprintf("destinations:\n  moved:\n    url: %q\n    concurrency: %d\n"+
			"    retry: {max_attempts: 5, backoff: {initial: 5100ms, max: 6s, multiplier: 1, jitter: 0}}\n", url, n)
	}
	path := rlNewConfig(t, rlHeader(qdir)+dest("http://"+rlFreeAddr(t)+"/old")+rlRoutes("all", "moved"))
	g := startGateway(t, path)
	var keys []string
	for i := range n {
		key := fmt.Sprintf("moved-%d", i)
		keys = append(keys, key)
		rlAccept(t, g, key)
	}
	rlWaitFor(t, rlTimeout, "a failed first attempt of each delivery", func() bool {
		return rlMetrics(t, g.AdminAddr())[`fanout_delivery_attempts_total{destination="moved",result="connection"}`] >= n
	})

	rlWrite(t, path, rlHeader(qdir)+dest(up.URL()+"/new")+rlRoutes("all", "moved"))
	if err := rlReload(t, g); err != nil {
		t.Fatalf("reload: %v", err)
	}
	rlWaitFor(t, rlTimeout, "the pending deliveries at the new URL", func() bool { return up.has(keys...) })
	for _, h := range up.all() {
		if h.Attempt != "2" {
			t.Errorf("%s arrived at the new URL as attempt %s, want 2 (its next attempt)", h.Key, h.Attempt)
		}
	}
}
