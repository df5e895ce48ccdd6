package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Tests of reloading the config while Fanout runs (docs/operating.md). Each test runs a real
// Gateway on an embedded JetStream in t.TempDir() and real HTTP downstreams; the helpers
// of this file are prefixed rl.

// rlPickup is how soon a changed config file must be live.
const rlPickup = 5 * time.Second

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

// rlReload runs g.Reload, failing the test when it does not return within
// fanouttest.WaitTimeout (a reload must never wait for deliveries).
func rlReload(t testing.TB, g *Gateway) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- g.Reload(context.Background()) }()
	select {
	case err := <-done:
		return err
	case <-time.After(fanouttest.WaitTimeout):
		t.Fatalf("Reload did not return within %s", fanouttest.WaitTimeout)
		return nil
	}
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
`, listen, admin, fanouttest.App, queueDir)
}

// rlRoutes is a routes section with one route, name, sending every callback to dests.
func rlRoutes(name string, dests ...string) string {
	return fmt.Sprintf("routes:\n  - name: %s\n    to: [%s]\n", name, strings.Join(dests, ", "))
}

// rlExpectAt sends a callback and waits until dest receives it with the Fanout-Route route.
func rlExpectAt(t testing.TB, g *Gateway, key string, dest *fanouttest.Receiver, route string) {
	t.Helper()
	acceptMessage(t, g, key)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "delivery of "+key, func() bool { return dest.Delivered()[key] > 0 })
	for _, r := range dest.ByKey(key) {
		if got := r.Header.Get("Fanout-Route"); got != route {
			t.Fatalf("%s arrived with Fanout-Route %q, want %q", key, got, route)
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
	x, y := fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil)
	head := rlHeader(filepath.Join(t.TempDir(), "queue")) +
		fmt.Sprintf("destinations:\n  x: {url: %q}\n  y: {url: %q}\n", x.URL(), y.URL())
	configs := map[string]string{"x": head + rlRoutes("a-all", "x"), "y": head + rlRoutes("b-all", "y")}
	routeOf := map[string]string{"x": "a-all", "y": "b-all"}
	invalid := []struct{ name, text, want string }{
		{"typo'd key", head + "routes:\n  - name: typo\n    too: [y]\n", `unknown key "too"`},
		{"undefined destination", head + rlRoutes("undefined", "z"), `sends to undefined destination "z"`},
		{"bad expression", head + "routes:\n  - name: bad-expr\n    when: From_Account ==\n    to: [y]\n", "routes[0].when:"},
	}
	path := fanouttest.WriteConfig(t, configs["x"])
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
				a := fanouttest.PostCallback(g.CallbackAddr(), c2cQuery, fanouttest.C2CMessage(key))
				after := gen.Load()
				mu.Lock()
				if !a.OK() {
					failures = append(failures, fmt.Sprintf("%s: %d %s", key, a.Status, a.Body))
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
	hash := fanouttest.ConfigHash(configs["x"])
	for step := range steps {
		floor := answered.Load() + perStepAtLeast
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, fmt.Sprintf("%d callbacks answered before reload %d", perStepAtLeast, step+1),
			func() bool { return answered.Load() >= floor })

		text, want, name := configs[next], "", "config "+next
		if step%6 == 5 {
			bad := invalid[(step/6)%len(invalid)]
			text, want, name = bad.text, bad.want, bad.name
		}
		fanouttest.ReplaceFile(t, path, text)
		gen.Add(1)
		err := g.Reload(context.Background())
		live := liveAfter[len(liveAfter)-1]
		if want == "" && err == nil {
			live = next
		}
		liveAfter = append(liveAfter, live)
		gen.Add(1)

		m := scrapeMetrics(t, g)
		ok := m.Sum("fanout_config_last_reload_successful", nil)
		if want == "" {
			if err != nil {
				t.Fatalf("reload %d (%s): %v", step+1, name, err)
			}
			applied++
			hash = fanouttest.ConfigHash(text)
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
		if got := m.Sum("fanout_config_hash", nil); got != hash {
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
		for _, rc := range []*fanouttest.Receiver{x, y} {
			for key := range rc.Keys() {
				got[key] = true
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
	fanouttest.WaitForNone(t, fanouttest.WaitTimeout, fmt.Sprintf("the delivery of %d callbacks", len(accepted)), waitKeys)
	draining := time.Since(began) - swapping

	// Every callback went to exactly one destination, once, with that destination's route.
	type got struct {
		dest  string
		route string
	}
	byKey := map[string][]got{}
	for name, rc := range map[string]*fanouttest.Receiver{"x": x, "y": y} {
		for _, r := range rc.Requests() {
			key := fanouttest.MsgKey(r.Body)
			byKey[key] = append(byKey[key], got{name, r.Header.Get("Fanout-Route")})
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
			path := fanouttest.WriteConfig(t, text)
			return path, func(text string) { fanouttest.ReplaceFile(t, path, text) }
		}},
		{"edited in place", func(t *testing.T, text string) (string, func(string)) {
			path := fanouttest.WriteConfig(t, text)
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
			x, y := fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil)
			head := rlHeader(filepath.Join(t.TempDir(), "queue")) +
				fmt.Sprintf("destinations:\n  x: {url: %q}\n  y: {url: %q}\n", x.URL(), y.URL())
			a, b := head+rlRoutes("a-all", "x"), head+rlRoutes("b-all", "y")
			path, change := tc.setup(t, a)
			g := startGateway(t, path)
			rlWatch(t, g)
			rlExpectAt(t, g, "first", x, "a-all")

			for i, step := range []struct {
				text, route string
				dest        *fanouttest.Receiver
			}{{b, "b-all", y}, {a, "a-all", x}, {b, "b-all", y}} {
				change(step.text)
				want := fanouttest.ConfigHash(step.text)
				fanouttest.WaitFor(t, rlPickup, fmt.Sprintf("change %d (to %s) to be picked up: fanout_config_hash of the new file", i+1, step.route),
					func() bool { return scrapeMetrics(t, g).Sum("fanout_config_hash", nil) == want })
				if ok := scrapeMetrics(t, g).Sum("fanout_config_last_reload_successful", nil); ok != 1 {
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
	x, y := fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil)
	head := rlHeader(filepath.Join(t.TempDir(), "queue")) +
		fmt.Sprintf("destinations:\n  x: {url: %q}\n  y: {url: %q}\n", x.URL(), y.URL())
	a, b := head+rlRoutes("a-all", "x"), head+rlRoutes("b-all", "y")
	path := fanouttest.WriteConfig(t, a)
	g := startGateway(t, path)
	fanouttest.ReplaceFile(t, path, b)
	rlWatch(t, g)
	fanouttest.WaitFor(t, rlPickup, "a change made before the watch started to be picked up", func() bool {
		return scrapeMetrics(t, g).Sum("fanout_config_hash", nil) == fanouttest.ConfigHash(b)
	})
	rlExpectAt(t, g, "after-change", y, "b-all")
}

// TestReloadRefusesRestartOnlyKeys changes server.listen, admin.listen and queue.dir
// (alone, then together) along with the routes: the reload is refused with an error naming
// exactly the changed keys, and the old config, routes included, stays live.
func TestReloadRefusesRestartOnlyKeys(t *testing.T) {
	t.Parallel()
	x, y := fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	dests := fmt.Sprintf("destinations:\n  x: {url: %q}\n  y: {url: %q}\n", x.URL(), y.URL())
	a := rlHeader(qdir) + dests + rlRoutes("a-all", "x")
	path := fanouttest.WriteConfig(t, a)
	g := startGateway(t, path)
	otherListen, otherAdmin, otherDir := fanouttest.FreeAddr(t), fanouttest.FreeAddr(t), filepath.Join(t.TempDir(), "other-queue")

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
			fanouttest.ReplaceFile(t, path, rlHeaderAt(tc.listen, tc.admin, tc.qdir)+dests+rlRoutes("b-all", "y"))
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
			m := scrapeMetrics(t, g)
			if ok := m.Sum("fanout_config_last_reload_successful", nil); ok != 0 {
				t.Errorf("fanout_config_last_reload_successful = %g, want 0", ok)
			}
			if m.Sum("fanout_config_hash", nil) != fanouttest.ConfigHash(a) {
				t.Errorf("fanout_config_hash changed on a refused reload")
			}
			rlExpectAt(t, g, fmt.Sprintf("refused-%d", i), x, "a-all")
		})
	}

	// The same change without the restart-only keys is applied.
	fanouttest.ReplaceFile(t, path, rlHeader(qdir)+dests+rlRoutes("b-all", "y"))
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
	stay, back := fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	// Quick retries for a long time: the round of each delivery in flight outlasts the test
	// unless the reload stops it.
	gone := func(url string) string {
		return fmt.Sprintf("  gone:\n    url: %q\n    concurrency: 2\n"+
			"    retry: {max_attempts: 1000, backoff: {initial: 100ms, max: 100ms, multiplier: 1, jitter: 0}}\n", url)
	}
	stayDest := fmt.Sprintf("  stay: {url: %q}\n", stay.URL())
	a := rlHeader(qdir) + "destinations:\n" + gone("http://"+fanouttest.FreeAddr(t)+"/down") + stayDest + rlRoutes("all", "gone", "stay")
	path := fanouttest.WriteConfig(t, a)
	g := startGateway(t, path)

	var keys []string
	for i := range n {
		key := fmt.Sprintf("pending-%d", i)
		keys = append(keys, key)
		acceptMessage(t, g, key)
	}
	fanouttest.WaitForNone(t, fanouttest.WaitTimeout, "the deliveries to stay", func() []string { return stay.Missing(keys) })
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "failed attempts to gone", func() bool {
		return scrapeMetrics(t, g).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "gone", "result": "connection"}) >= 4
	})

	fanouttest.ReplaceFile(t, path, rlHeader(qdir)+"destinations:\n"+stayDest+rlRoutes("all", "stay"))
	if err := rlReload(t, g); err != nil {
		t.Fatalf("reload without gone: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	// The backlog moves in the background, after the reload returned.
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the deliveries of gone in the dead-letter queue", func() bool {
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
		key := fanouttest.MsgKey(dl.Body)
		deadKeys = append(deadKeys, key)
		if dl.Reason != ReasonDestinationRemoved {
			t.Errorf("dead letter of %s: reason %q, want %q", key, dl.Reason, ReasonDestinationRemoved)
		}
	}
	slices.Sort(deadKeys)
	if !slices.Equal(deadKeys, keys) {
		t.Errorf("dead letters of gone: %v, want %v", deadKeys, keys)
	}

	// gone again, now up.
	fanouttest.ReplaceFile(t, path, rlHeader(qdir)+"destinations:\n"+gone(back.URL())+stayDest+rlRoutes("all", "gone", "stay"))
	if err := rlReload(t, g); err != nil {
		t.Fatalf("reload with gone again: %v", err)
	}
	var fresh []string
	for i := range 3 {
		key := fmt.Sprintf("re-added-%d", i)
		fresh = append(fresh, key)
		acceptMessage(t, g, key)
	}
	fanouttest.WaitForNone(t, fanouttest.WaitTimeout, "the deliveries to the re-added gone", func() []string { return back.Missing(fresh) })
	var got []string
	for _, r := range back.Requests() {
		got = append(got, fanouttest.MsgKey(r.Body))
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
	slow := fanouttest.NewReceiver(t, nil)
	slow.SetAnswer(func(fanouttest.Request) fanouttest.Answer {
		if phase.Load() == 1 {
			// A slow downstream: a second request would arrive meanwhile if one were sent.
			return fanouttest.Answer{Delay: 50 * time.Millisecond}
		}
		// Hold every request until four are in flight at once (then let them all go).
		if slow.InFlight() >= 4 {
			fourOnce()
		}
		return fanouttest.Answer{Hold: four}
	})
	phase.Store(1)
	qdir := filepath.Join(t.TempDir(), "queue")
	dest := func(concurrency int) string {
		return fmt.Sprintf("destinations:\n  slow: {url: %q, concurrency: %d}\n", slow.URL(), concurrency)
	}
	path := fanouttest.WriteConfig(t, rlHeader(qdir)+dest(1)+rlRoutes("all", "slow"))
	g := startGateway(t, path)

	var before []string
	for i := range 6 {
		key := fmt.Sprintf("one-at-a-time-%d", i)
		before = append(before, key)
		acceptMessage(t, g, key)
	}
	fanouttest.WaitForNone(t, fanouttest.WaitTimeout, "the deliveries at concurrency 1", func() []string { return slow.Missing(before) })
	if got := slow.MaxInFlight(); got != 1 {
		t.Fatalf("at concurrency 1 the downstream had %d requests in flight at once", got)
	}

	fanouttest.ReplaceFile(t, path, rlHeader(qdir)+dest(4)+rlRoutes("all", "slow"))
	if err := rlReload(t, g); err != nil {
		t.Fatalf("reload: %v", err)
	}
	phase.Store(2)
	var after []string
	for i := range 8 {
		key := fmt.Sprintf("four-at-a-time-%d", i)
		after = append(after, key)
		acceptMessage(t, g, key)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "four requests in flight at once", func() bool {
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
			t.Logf("the downstream received (requests by MsgKey) %v; still queued: %d %v", slow.Keys(), n, err)
		}
	}()
	fanouttest.WaitForNone(t, fanouttest.WaitTimeout, "the deliveries at concurrency 4", func() []string { return slow.Missing(after) })
	if got := slow.MaxInFlight(); got != 4 {
		t.Errorf("at concurrency 4 the downstream had at most %d requests in flight at once, want 4", got)
	}
}

// TestReloadChangesURLOfPendingDeliveries points a destination whose URL is down (a closed
// port) at one that is up: its pending deliveries, waiting in the queue for their retry,
// make their next attempt at the new URL.
func TestReloadChangesURLOfPendingDeliveries(t *testing.T) {
	t.Parallel()
	const n = 3
	up := fanouttest.NewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	// The wait after a failure is longer than the quick retries (delivery.QuickRetryMax):
	// each failed attempt goes back to the queue, and the next one reads the live URL.
	dest := func(url string) string {
		return fmt.Sprintf("destinations:\n  moved:\n    url: %q\n    concurrency: %d\n"+
			"    retry: {max_attempts: 5, backoff: {initial: 5100ms, max: 6s, multiplier: 1, jitter: 0}}\n", url, n)
	}
	path := fanouttest.WriteConfig(t, rlHeader(qdir)+dest("http://"+fanouttest.FreeAddr(t)+"/old")+rlRoutes("all", "moved"))
	g := startGateway(t, path)
	var keys []string
	for i := range n {
		key := fmt.Sprintf("moved-%d", i)
		keys = append(keys, key)
		acceptMessage(t, g, key)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "a failed first attempt of each delivery", func() bool {
		return scrapeMetrics(t, g).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "moved", "result": "connection"}) >= n
	})

	fanouttest.ReplaceFile(t, path, rlHeader(qdir)+dest(up.URL()+"/new")+rlRoutes("all", "moved"))
	if err := rlReload(t, g); err != nil {
		t.Fatalf("reload: %v", err)
	}
	fanouttest.WaitForNone(t, fanouttest.WaitTimeout, "the pending deliveries at the new URL", func() []string { return up.Missing(keys) })
	for _, r := range up.Requests() {
		if attempt := r.Header.Get("Fanout-Attempt"); attempt != "2" {
			t.Errorf("%s arrived at the new URL as attempt %s, want 2 (its next attempt)", fanouttest.MsgKey(r.Body), attempt)
		}
	}
}
