package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Failure modes met in operation: reloads racing callbacks, a queue that is not there yet,
// replicas that disagree on the config, a store that fails and comes back. Helpers of this
// file are prefixed fl.

// flHeader is the part of a test config before destinations, with queue as the queue
// section's flow mapping (`dir: ...` or `url: ...`).
func flHeader(queue string) string {
	return fmt.Sprintf(`server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue: {%s}
defaults:
  concurrency: 4
  timeout: 2s
  retry: {max_attempts: 20, backoff: {initial: 50ms, max: 200ms, multiplier: 2, jitter: 0}}
`, fanouttest.App, queue)
}

// flReadyz is the status of g's /readyz.
func flReadyz(g *Gateway) int {
	status, _ := fanouttest.Do(http.MethodGet, "http://"+g.AdminAddr()+"/readyz", "", nil)
	return status
}

// flEnqueue stores jobs for destination directly, as a callback matched on an older config
// would have.
func flEnqueue(t *testing.T, g *Gateway, destination string, keys ...string) {
	t.Helper()
	var jobs []queue.Job
	for _, k := range keys {
		jobs = append(jobs, queue.Job{EventID: "ev-" + k, Destination: destination, Routes: []string{"all"},
			Query: "SdkAppid=" + fanouttest.App + "&CallbackCommand=C2C.CallbackAfterSendMsg", Body: fanouttest.C2CMessage(k), ReceivedAt: time.Now()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	if err := g.queue.Load().Enqueue(ctx, jobs); err != nil {
		t.Fatal(err)
	}
}

// flCounts are the deliveries queued for destination and its dead letters.
func flCounts(g *Gateway, destination string) (pending, dead int) {
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	q := g.queue.Load()
	if q == nil {
		return -1, -1
	}
	pending, _, err := q.Pending(ctx, destination)
	if err != nil {
		return -1, -1
	}
	dead, err = q.DeadLetterCount(ctx, destination)
	if err != nil {
		return -1, -1
	}
	return pending, dead
}

// TestStrayDeliveryOfRemovedDestination reproduces a delivery stranded by a reload: a
// callback matched on the old config stored a job for a destination that the reload had
// just removed, after its backlog was moved; it then waited with no consumer, in no
// metric, until a restart. Now a sweep finds it and dead-letters it ("destination
// removed").
func TestStrayDeliveryOfRemovedDestination(t *testing.T) {
	t.Parallel()
	keep := fanouttest.NewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	dests := fmt.Sprintf("destinations:\n  keep: {url: %q}\n  gone: {url: %q}\n", keep.URL(), "http://"+fanouttest.FreeAddr(t)+"/down")
	path := fanouttest.WriteConfig(t, flHeader("dir: "+qdir)+dests+rlRoutes("all", "keep", "gone"))
	g, _ := startTuned(t, path, func(g *Gateway) { g.sweepEvery = 100 * time.Millisecond })

	fanouttest.ReplaceFile(t, path, flHeader("dir: "+qdir)+fmt.Sprintf("destinations:\n  keep: {url: %q}\n", keep.URL())+rlRoutes("all", "keep"))
	if err := rlReload(t, g); err != nil {
		t.Fatal(err)
	}
	flEnqueue(t, g, "gone", "stray")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the stray delivery in the dead-letter queue", func() bool {
		pending, dead := flCounts(g, "gone")
		return pending == 0 && dead == 1
	})
	if n := scrapeMetrics(t, g).Sum("fanout_removed_deliveries_total", map[string]string{"destination": "gone"}); n != 1 {
		t.Errorf("fanout_removed_deliveries_total{destination=\"gone\"} = %g, want 1", n)
	}
}

// TestRemovalInBackground reproduces the removal of a destination's backlog run inside
// Reload, under the reload lock, and inside Start before listening: a large backlog held
// every reload and the readiness. Here the removal is held up (removeHook), and Start and
// Reload return, /readyz answers 200, while it waits.
func TestRemovalInBackground(t *testing.T) {
	t.Parallel()
	keep := fanouttest.NewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	keepOnly := flHeader("dir: "+qdir) + fmt.Sprintf("destinations:\n  keep: {url: %q}\n", keep.URL()) + rlRoutes("all", "keep")
	withGone := flHeader("dir: "+qdir) + fmt.Sprintf("destinations:\n  keep: {url: %q}\n  gone: {url: %q}\n", keep.URL(), "http://"+fanouttest.FreeAddr(t)+"/down") +
		rlRoutes("all", "keep", "gone")

	held := make(chan string, 4)
	release := make(chan struct{})
	hold := func(g *Gateway) {
		g.sweepEvery = 100 * time.Millisecond
		g.removeHook = func(name string) {
			held <- name
			<-release
		}
	}

	// A reload that removes gone returns while its backlog waits to be moved.
	path := fanouttest.WriteConfig(t, withGone)
	g, _ := startTuned(t, path, hold)
	flEnqueue(t, g, "gone", "a", "b", "c")
	fanouttest.ReplaceFile(t, path, keepOnly)
	if err := rlReload(t, g); err != nil { // fails the test if Reload waits for the removal
		t.Fatal(err)
	}
	if name := <-held; name != "gone" {
		t.Fatalf("removal of %q, want gone", name)
	}
	fanouttest.ReplaceFile(t, path, keepOnly+"# another reload, while the removal is held\n")
	if err := rlReload(t, g); err != nil {
		t.Fatal(err)
	}
	close(release)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "gone's backlog in the dead-letter queue", func() bool {
		pending, dead := flCounts(g, "gone")
		return pending == 0 && dead == 3
	})
	stopGateway(t, g)

	// A start whose queue holds the backlog of a destination no longer configured listens
	// and is ready while that backlog waits to be moved.
	path2 := fanouttest.WriteConfig(t, withGone)
	g2 := startGateway(t, path2)
	flEnqueue(t, g2, "gone", "d")
	stopGateway(t, g2)
	fanouttest.ReplaceFile(t, path2, keepOnly)
	release2 := make(chan struct{})
	g3, _ := startTuned(t, path2, func(g *Gateway) {
		g.removeHook = func(string) { <-release2 }
	})
	defer close(release2)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "/readyz 200 while the removal is held", func() bool { return flReadyz(g3) == http.StatusOK })
	acceptMessage(t, g3, "during-removal")
}

// TestReloadAfterStop reproduces a reload (the file watcher's, a SIGHUP's) that ran after
// Stop and swapped in a config with no worker started. Now it is refused.
func TestReloadAfterStop(t *testing.T) {
	t.Parallel()
	keep := fanouttest.NewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	path := fanouttest.WriteConfig(t, flHeader("dir: "+qdir)+fmt.Sprintf("destinations:\n  keep: {url: %q}\n", keep.URL())+rlRoutes("all", "keep"))
	g := startGateway(t, path)
	hash := g.live.Load().cfg.Hash
	stopGateway(t, g)
	fanouttest.ReplaceFile(t, path, flHeader("dir: "+qdir)+fmt.Sprintf("destinations:\n  other: {url: %q}\n", keep.URL())+rlRoutes("all", "other"))
	if err := g.Reload(context.Background()); err == nil {
		t.Error("Reload after Stop succeeded")
	}
	if got := g.live.Load().cfg.Hash; got != hash {
		t.Error("Reload after Stop swapped the config")
	}
}

// flNATS starts a nats-server with JetStream for the test and returns it.
func flNATS(t *testing.T) *fanouttest.NATSServer {
	t.Helper()
	return fanouttest.StartNATSServer(t, "fl")
}

// flJetStream connects to s for the test's own look at the streams.
func flJetStream(t *testing.T, s *fanouttest.NATSServer) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestReloadFailsWhenAWorkerCannotStart reproduces a reload that answered success (200,
// last_reload_successful 1) when the consumer of a destination it added could not be
// created, and skipped the destinations after it. Now the reload fails and the old config
// stays live, whole.
func TestReloadFailsWhenAWorkerCannotStart(t *testing.T) {
	t.Parallel()
	ns := flNATS(t)
	keep := fanouttest.NewReceiver(t, nil)
	header := flHeader(fmt.Sprintf("url: %q", ns.URL()))
	path := fanouttest.WriteConfig(t, header+fmt.Sprintf("destinations:\n  keep: {url: %q}\n", keep.URL())+rlRoutes("all", "keep"))
	g := startGateway(t, path)
	before := g.live.Load().cfg.Hash

	// A consumer named like the new destination that cannot become Fanout's: a push
	// consumer, which JetStream refuses to turn into a pull one.
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	if _, err := flJetStream(t, ns).CreateOrUpdatePushConsumer(ctx, "FANOUT_JOBS", jetstream.ConsumerConfig{
		Durable: "late", DeliverSubject: "elsewhere.late", FilterSubject: "fanout.jobs.late", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	fanouttest.ReplaceFile(t, path, header+fmt.Sprintf("destinations:\n  keep: {url: %q}\n  late: {url: %q}\n  zz: {url: %q}\n", keep.URL(), keep.URL(), keep.URL())+
		rlRoutes("all", "keep", "late", "zz"))
	err := rlReload(t, g)
	if err == nil || !strings.Contains(err.Error(), `"late"`) {
		t.Fatalf("Reload = %v, want the error of destination late", err)
	}
	if got := g.live.Load().cfg.Hash; got != before {
		t.Error("the config of the failed reload is live")
	}
	if v := scrapeMetrics(t, g).Sum("fanout_config_last_reload_successful", nil); v != 0 {
		t.Errorf("fanout_config_last_reload_successful = %g after a failed reload", v)
	}
	g.mu.Lock()
	workers := len(g.workers)
	g.mu.Unlock()
	if workers != 1 {
		t.Errorf("%d workers after the failed reload, want 1 (keep)", workers)
	}
	acceptMessage(t, g, "after-failed-reload")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "keep to get the callback", func() bool { return len(keep.ByKey("after-failed-reload")) > 0 })
}

// TestStartBeforeTheQueue reproduces a gateway that exited when its queue was not reachable
// at start (replicas started with, or before, their JetStream cluster). Now it listens,
// answers 503 on /readyz and to callbacks, keeps trying, and serves once the queue is there.
func TestStartBeforeTheQueue(t *testing.T) {
	t.Parallel()
	ns := fanouttest.NewNATSServer(t, "late") // not started yet
	keep := fanouttest.NewReceiver(t, nil)
	path := fanouttest.WriteConfig(t, flHeader(fmt.Sprintf("url: %q", ns.URL()))+fmt.Sprintf("destinations:\n  keep: {url: %q}\n", keep.URL())+rlRoutes("all", "keep"))
	g := startGateway(t, path)
	if status := flReadyz(g); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d without a queue, want 503", status)
	}
	if a := callback(t, g, c2cQuery, fanouttest.C2CMessage("early")); a.Status != http.StatusServiceUnavailable || !strings.Contains(string(a.Body), `"FAIL"`) {
		t.Errorf("callback without a queue: %d %s, want 503 FAIL", a.Status, a.Body)
	}
	ns.Start(t)
	fanouttest.WaitFor(t, time.Minute, "/readyz 200 once the queue is there", func() bool { return flReadyz(g) == http.StatusOK })
	acceptMessage(t, g, "late")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the delivery", func() bool { return len(keep.ByKey("late")) > 0 })
}

// TestConfigSkewBetweenReplicas: two replicas on one JetStream, one of them with an older
// config that lacks a destination the other serves. It reproduces the older one
// dead-letter the other's backlog when it started (and on every reload). Now a backlog is
// dead-lettered only once no replica's config names its destination.
func TestConfigSkewBetweenReplicas(t *testing.T) {
	t.Parallel()
	ns := flNATS(t)
	header := flHeader(fmt.Sprintf("url: %q", ns.URL()))
	keep, shared := fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil)
	// shared's receiver is a closed port at first: its deliveries wait in the queue.
	closedURL := "http://" + fanouttest.FreeAddr(t) + "/down"
	withShared := func(url string) string {
		return header + fmt.Sprintf("destinations:\n  keep: {url: %q}\n  shared:\n    url: %q\n    retry: {max_attempts: 100, backoff: {initial: 1h, max: 1h}}\n", keep.URL(), url) +
			rlRoutes("all", "keep", "shared")
	}
	older := header + fmt.Sprintf("destinations:\n  keep: {url: %q}\n", keep.URL()) + rlRoutes("all", "keep")
	tune := func(g *Gateway) { g.sweepEvery = 100 * time.Millisecond }

	pathA := fanouttest.WriteConfig(t, withShared(closedURL))
	a, _ := startTuned(t, pathA, tune)
	var keys []string
	for i := range 4 {
		k := fmt.Sprintf("skew-%d", i)
		keys = append(keys, k)
		acceptMessage(t, a, k)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "shared's backlog", func() bool { pending, _ := flCounts(a, "shared"); return pending == len(keys) })

	// B starts on the older config, sweeps, and reloads it: shared keeps its backlog.
	pathB := fanouttest.WriteConfig(t, older)
	b, _ := startTuned(t, pathB, tune)
	fanouttest.ReplaceFile(t, pathB, older+"# touched\n")
	if err := rlReload(t, b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	b.sweep(ctx, b.queue.Load()) // one more, known to have run
	if pending, dead := flCounts(a, "shared"); pending != len(keys) || dead != 0 {
		t.Fatalf("shared after the older replica's sweeps: %d pending, %d dead letters; want %d, 0", pending, dead, len(keys))
	}

	// A serves it: its receiver is back.
	fanouttest.ReplaceFile(t, pathA, withShared(shared.URL()))
	if err := rlReload(t, a); err != nil {
		t.Fatal(err)
	}
	// The waiting deliveries are due in an hour; a new callback shows that A delivers.
	acceptMessage(t, a, "served")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "A to deliver to shared", func() bool { return len(shared.ByKey("served")) > 0 })

	// Once A drops shared too, no replica names it: its backlog goes to the dead-letter queue.
	fanouttest.ReplaceFile(t, pathA, older)
	if err := rlReload(t, a); err != nil {
		t.Fatal(err)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "shared's backlog in the dead-letter queue", func() bool {
		pending, dead := flCounts(b, "shared")
		return pending == 0 && dead == len(keys)
	})
}

// flMount mounts a small tmpfs for the test, or skips it where mounting is not allowed.
func flMount(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small file system here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestStoreFullAndBack fills the file system under the embedded queue. It reproduces a
// gateway that, after one failed write, answered every callback 503 only after 1.5 s, until
// a restart, while /readyz said ready. Now /readyz says not ready and callbacks get 503
// while the store cannot write, and once space is back the gateway reopens its queue and
// serves again, the deliveries stored before the failure included.
func TestStoreFullAndBack(t *testing.T) {
	mnt := flMount(t, "16m")
	keep := fanouttest.NewReceiver(t, nil)
	path := fanouttest.WriteConfig(t, flHeader("dir: "+filepath.Join(mnt, "queue"))+
		fmt.Sprintf("destinations:\n  keep: {url: %q}\n", keep.URL())+rlRoutes("all", "keep"))
	g := startGateway(t, path)
	acceptMessage(t, g, "before")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the first delivery", func() bool { return len(keep.ByKey("before")) > 0 })

	// Something else fills the file system.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 32<<20)) // stops at ENOSPC
	f.Close()

	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "/readyz 503 with the file system full", func() bool { return flReadyz(g) == http.StatusServiceUnavailable })
	if a := callback(t, g, c2cQuery, fanouttest.C2CMessage("full")); a.Status != http.StatusServiceUnavailable || !strings.Contains(string(a.Body), `"FAIL"`) {
		t.Fatalf("callback with the file system full: %d %s, want 503 FAIL", a.Status, a.Body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	fanouttest.WaitFor(t, time.Minute, "/readyz 200 once space is back", func() bool { return flReadyz(g) == http.StatusOK })
	acceptMessage(t, g, "after")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the delivery after the failure", func() bool { return len(keep.ByKey("after")) > 0 })
}

// TestQueueDirDeleted deletes queue.dir under a running gateway. It reproduces callbacks
// answered OK and then lost (the store wrote on into the deleted files). Now they are
// answered 503 and /readyz says why.
func TestQueueDirDeleted(t *testing.T) {
	t.Parallel()
	keep := fanouttest.NewReceiver(t, nil)
	qdir := filepath.Join(t.TempDir(), "queue")
	path := fanouttest.WriteConfig(t, flHeader("dir: "+qdir)+fmt.Sprintf("destinations:\n  keep: {url: %q}\n", keep.URL())+rlRoutes("all", "keep"))
	g := startGateway(t, path)
	acceptMessage(t, g, "before")
	if err := os.RemoveAll(qdir); err != nil {
		t.Fatal(err)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "/readyz 503 with queue.dir deleted", func() bool { return flReadyz(g) == http.StatusServiceUnavailable })
	for i := range 10 {
		if a := callback(t, g, c2cQuery, fanouttest.C2CMessage(fmt.Sprint("after-", i))); a.Status != http.StatusServiceUnavailable {
			t.Fatalf("callback %d with queue.dir deleted: %d %s, want 503", i, a.Status, a.Body)
		}
	}
}

// TestRespondUnderBacklog: a respond rule's destination with a deep backlog, held back by
// its rate limit (1/s) and its one slot (each queued delivery takes a while), still
// answers every before callback with its own answer, within the rule's timeout: the
// synchronous request waits neither for the slots nor for the rate limit of the
// asynchronous deliveries. (When it waited on the same limiter, every before callback got
// the on_failure decision under backlog.)
func TestRespondUnderBacklog(t *testing.T) {
	t.Parallel()
	const (
		backlog  = 200
		decision = `{"ActionStatus":"OK","ErrorInfo":"checked by the backend","ErrorCode":0}`
	)
	backend := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if strings.Contains(r.RawQuery, "CallbackBeforeSendMsg") {
			return fanouttest.Answer{Body: decision}
		}
		return fanouttest.Answer{Delay: 200 * time.Millisecond, Body: "ok"}
	})
	qdir := filepath.Join(t.TempDir(), "queue")
	path := fanouttest.WriteConfig(t, flHeader("dir: "+qdir)+fmt.Sprintf(`destinations:
  backend: {url: %q, forward_query: true, concurrency: 1, rate_limit: 1/s}
routes:
  - name: all
    to: [backend]
respond:
  - {commands: [C2C.CallbackBeforeSendMsg], from: backend, timeout: 1s, on_failure: deny}
`, backend.URL()))
	g := startGateway(t, path)
	var keys []string
	for i := range backlog {
		keys = append(keys, fmt.Sprint("backlog-", i))
	}
	flEnqueue(t, g, "backend", keys...)

	before := fanouttest.Payload(t, "C2C.CallbackBeforeSendMsg.json")
	query := fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackBeforeSendMsg")
	for i := range 5 {
		body := bytes.Replace(before, []byte(`"MsgRandom": 2837546`), fmt.Appendf(nil, `"MsgRandom": %d`, i), 1)
		a := callback(t, g, query, body)
		if a.Status != http.StatusOK || string(a.Body) != decision {
			t.Fatalf("before callback %d under a backlog: %d %s, want the backend's answer %s", i, a.Status, a.Body, decision)
		}
	}
	if n := scrapeMetrics(t, g).Sum("fanout_respond_total", map[string]string{"destination": "backend", "outcome": "answered"}); n != 5 {
		t.Errorf("fanout_respond_total{outcome=\"answered\"} = %g, want 5", n)
	}
	// The backlog was there all along: at 1/s, most of it still waits.
	if pending, _ := flCounts(g, "backend"); pending < backlog/2 {
		t.Errorf("%d deliveries pending, want most of the %d queued", pending, backlog)
	}
}

// TestStopBoundedByItsContext: with its JetStream server frozen (SIGSTOP), a stop cannot
// finish (the workers' hand-backs and the queue's close wait for answers that do not come);
// Stop returns when its context ends all the same, saying so, the rest going on in the
// background until the process exits.
func TestStopBoundedByItsContext(t *testing.T) {
	t.Parallel()
	ns := flNATS(t)
	keep := fanouttest.NewReceiver(t, nil)
	path := fanouttest.WriteConfig(t, flHeader(fmt.Sprintf("url: %q", ns.URL()))+fmt.Sprintf("destinations:\n  keep: {url: %q}\n", keep.URL())+rlRoutes("all", "keep"))
	// Not startGateway: its cleanup wants a Stop without error.
	g, err := New(Options{ConfigPath: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer scancel()
	if err := g.Start(sctx); err != nil {
		t.Fatal(err)
	}
	acceptMessage(t, g, "before-freeze")
	ns.Signal(t, syscall.SIGSTOP)
	defer ns.Signal(t, syscall.SIGCONT)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Stop(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Stop with a frozen queue = %v, want its context's deadline", err)
		}
	case <-time.After(fanouttest.WaitTimeout):
		t.Fatal("Stop did not return")
	}
}

// TestStoreBrokenAndReopened leaves the embedded store's file system a little room, enough
// for the directory probe but not for a large callback: JetStream's write fails and its
// store refuses every write from then on. It reproduces a gateway that answered 503 (after
// 1.5 s each) until a restart: now it closes the broken store and, once space is back,
// opens it again by itself and serves, the deliveries stored before included.
func TestStoreBrokenAndReopened(t *testing.T) {
	mnt := flMount(t, "16m")
	keep := fanouttest.NewReceiver(t, nil)
	path := fanouttest.WriteConfig(t, fmt.Sprintf(`server: {listen: "127.0.0.1:0", path: /callback, max_body_bytes: 2MiB}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
destinations:
  keep: {url: %q}
routes:
  - name: all
    to: [keep]
`, fanouttest.App, filepath.Join(mnt, "queue"), keep.URL()))
	g, logs := startGatewayWithLog(t, path)
	acceptMessage(t, g, "before")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the first delivery", func() bool { return len(keep.ByKey("before")) > 0 })

	// Fill the file system, then give back 256 KiB: the probe's 64 KiB fit, a 1 MiB
	// callback does not.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	var size int64
	for {
		n, err := f.Write(chunk)
		size += int64(n)
		if err != nil {
			break
		}
	}
	if err := f.Truncate(size - 256<<10); err != nil {
		t.Fatal(err)
	}
	f.Close()

	big := fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh","MsgKey":"big","CloudCustomData":%q}`,
		strings.Repeat("x", 1<<20))
	if a := callback(t, g, c2cQuery, big); a.Status != http.StatusServiceUnavailable {
		t.Fatalf("a callback the store cannot write: %d %s, want 503", a.Status, a.Body)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the store reported broken", func() bool {
		return strings.Contains(logs.String(), "the queue's store failed")
	})
	if a := callback(t, g, c2cQuery, fanouttest.C2CMessage("while-broken")); a.Status != http.StatusServiceUnavailable {
		t.Fatalf("a callback while the store is broken: %d %s, want 503", a.Status, a.Body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	fanouttest.WaitFor(t, time.Minute, "/readyz 200 once space is back", func() bool { return flReadyz(g) == http.StatusOK })
	if n := strings.Count(logs.String(), "queue ready: delivering"); n < 2 {
		t.Errorf("the queue was made ready %d times, want at least 2 (opened again)", n)
	}
	acceptMessage(t, g, "after")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the delivery after the store was reopened", func() bool { return len(keep.ByKey("after")) > 0 })
}
