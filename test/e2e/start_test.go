package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// stReplicaConfig is the config of one replica on the queue at urls, listening on listen
// and admin (fixed, so that readiness can be polled before the process says where it
// listens), delivering to sink.
func stReplicaConfig(t testing.TB, urls, listen, admin, sink string) string {
	t.Helper()
	return fanouttest.WriteConfig(t, fmt.Sprintf(`server: {listen: %q, path: /callback}
admin: {listen: %q}
tencent:
  apps: [{sdkappid: %s}]
queue:
  url: %q
  replicas: 3
destinations:
  sink: {url: %q}
routes:
  - name: all
    to: [sink]
`, listen, admin, fanouttest.App, urls, sink))
}

// TestReplicasStartTogether starts two replicas (the real binary) at the same moment on a
// fresh three-node cluster. It reproduces both exiting within 5 s (create or update stream
// FANOUT_JOBS: context deadline exceeded) while started one after the other they worked:
// each now keeps trying until the queue is ready, and both become ready and deliver.
func TestReplicasStartTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fanout, runs three nats-server and two fanout processes")
	}
	bin := fanouttest.FanoutBinary(t)
	nodes := clStartCluster(t, 3)
	urls := make([]string, len(nodes))
	for i, nd := range nodes {
		urls[i] = nd.URL()
	}
	sink := fanouttest.NewReceiver(t, nil)
	type replica struct {
		name, listen, admin string
		proc                *fanouttest.Process
		ready               time.Duration
	}
	replicas := []*replica{{name: "a"}, {name: "b"}}
	configs := make([]string, len(replicas))
	for i, r := range replicas {
		r.listen, r.admin = fanouttest.FreeAddr(t), fanouttest.FreeAddr(t)
		configs[i] = stReplicaConfig(t, strings.Join(urls, ","), r.listen, r.admin, sink.URL())
	}
	start := time.Now()
	for i, r := range replicas {
		r.proc = fanouttest.StartProcess(t, "fanout replica "+r.name, bin, "serve", "--config", configs[i], "--log-format", "json")
	}
	var wg sync.WaitGroup
	for _, r := range replicas {
		wg.Go(func() {
			for deadline := time.Now().Add(clClusterWait); time.Now().Before(deadline) && r.proc.Running(); time.Sleep(20 * time.Millisecond) {
				if status, _ := fanouttest.Do(http.MethodGet, "http://"+r.admin+"/readyz", "", nil); status == http.StatusOK {
					r.ready = time.Since(start)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, r := range replicas {
		if r.ready == 0 {
			t.Fatalf("replica %s never became ready (running: %v)", r.name, r.proc.Running())
		}
		var failed []string
		for line := range strings.Lines(r.proc.Output.String()) {
			var l struct{ Msg, Err string }
			if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, "the queue is not ready yet") {
				failed = append(failed, l.Err)
			}
		}
		t.Logf("replica %s ready %s after both were started; attempts that failed first: %q", r.name, r.ready.Round(time.Millisecond), failed)
	}
	for _, r := range replicas {
		key := "together-" + r.name
		if a := fanouttest.PostCallback(r.listen, fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg"), fanouttest.C2CMessage(key)); !a.OK() {
			t.Fatalf("replica %s answered %d %s", r.name, a.Status, a.Body)
		}
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "both callbacks delivered", func() bool {
		return len(sink.Missing([]string{"together-a", "together-b"})) == 0
	})
	for _, r := range replicas {
		r.proc.Stop(t)
	}
}

// TestSecondSignalEndsTheProcess: a graceful stop that hangs (its JetStream server frozen)
// ends at once on a second SIGTERM, by the signal, instead of waiting out the stop timeout.
func TestSecondSignalEndsTheProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fanout, runs nats-server")
	}
	bin := fanouttest.FanoutBinary(t)
	ns := fanouttest.StartNATSServer(t, "frozen")
	sink := fanouttest.NewReceiver(t, nil)
	config := fanouttest.WriteConfig(t, fmt.Sprintf(`server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue: {url: %q}
destinations:
  sink: {url: %q}
routes:
  - name: all
    to: [sink]
`, fanouttest.App, ns.URL(), sink.URL()))
	f := fanouttest.StartFanout(t, bin, config)
	ns.Signal(t, syscall.SIGSTOP)
	defer ns.Signal(t, syscall.SIGCONT)

	f.Signal(t, syscall.SIGTERM)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the graceful stop to begin", func() bool {
		return strings.Contains(f.Output.String(), "stopping: finishing callbacks in flight")
	})
	f.Signal(t, syscall.SIGTERM)
	select {
	case <-f.Exited():
	case <-time.After(fanouttest.WaitTimeout):
		t.Fatal("fanout still runs after a second SIGTERM")
	}
	if err := f.Err(); err == nil || !strings.Contains(err.Error(), "signal: terminated") {
		t.Errorf("fanout exited with %v after a second SIGTERM, want ended by the signal", err)
	}
}
