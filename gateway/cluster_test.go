package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/queue"
)

// Scale-out (SPEC section 9, docs/cluster.md): Fanout replicas, the real binary, on a
// nats-server cluster, every process on 127.0.0.1, started and killed by the tests by pid.

const (
	// clClusterName is the NATS cluster of the tests.
	clClusterName = "fanout-test"

	// clToken is the admin token of the test replicas.
	clToken = "cluster-test-token"

	// clClusterWait bounds the waits that span a JetStream election or a redelivery after the
	// ack wait (about 32 s for the sink of TestCluster).
	clClusterWait = 2 * time.Minute
)

// clNode is one nats-server of a test cluster: JetStream in its own store, routes to the
// others, a monitoring port for /healthz and /jsz.
type clNode struct {
	t                              testing.TB
	name, bin, dir, routes         string
	port, clusterPort, monitorPort int
	output                         *syncBuffer // across restarts
	cmd                            *exec.Cmd   // nil while it is not running
}

// clFreePort returns a port of 127.0.0.1 that was free a moment ago.
func clFreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// clStartCluster starts n nats-server nodes routed to each other and waits until every one
// is healthy (JetStream meta leader elected). They are killed at the end of the test.
func clStartCluster(t testing.TB, n int) []*clNode {
	t.Helper()
	bin := natsServerBinary(t)
	nodes := make([]*clNode, n)
	routes := make([]string, n)
	for i := range nodes {
		nodes[i] = &clNode{t: t, name: fmt.Sprintf("n%d", i+1), bin: bin, dir: t.TempDir(),
			port: clFreePort(t), clusterPort: clFreePort(t), monitorPort: clFreePort(t), output: &syncBuffer{}}
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].clusterPort)
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.kill()
			if t.Failed() {
				t.Logf("output of nats-server %s:\n%s", nd.name, nd.output)
			}
		}
	})
	for _, nd := range nodes {
		nd.routes = strings.Join(routes, ",")
		nd.start()
	}
	clWaitHealthy(t, nodes...)
	return nodes
}

// start runs the node (again: same ports, same store).
func (nd *clNode) start() {
	nd.t.Helper()
	nd.cmd = exec.Command(nd.bin, "-js", "-sd", nd.dir, "--server_name", nd.name,
		"-a", "127.0.0.1", "-p", strconv.Itoa(nd.port), "-m", strconv.Itoa(nd.monitorPort),
		"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", nd.clusterPort), "--cluster_name", clClusterName,
		"--routes", nd.routes)
	nd.cmd.Stdout, nd.cmd.Stderr = nd.output, nd.output
	if err := nd.cmd.Start(); err != nil {
		nd.t.Fatalf("start nats-server %s: %v", nd.name, err)
	}
}

// kill sends SIGKILL to the node's process, by its pid, and reaps it.
func (nd *clNode) kill() {
	if nd.cmd == nil {
		return
	}
	if err := nd.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		nd.t.Errorf("kill nats-server %s (pid %d): %v", nd.name, nd.cmd.Process.Pid, err)
	}
	_ = nd.cmd.Wait() // "signal: killed"
	nd.cmd = nil
}

func (nd *clNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", nd.port) }

func (nd *clNode) healthy() bool {
	status, _ := clGet(fmt.Sprintf("http://127.0.0.1:%d/healthz", nd.monitorPort), "")
	return status == http.StatusOK
}

// clWaitHealthy waits until every running node among nodes answers /healthz 200.
func clWaitHealthy(t testing.TB, nodes ...*clNode) {
	t.Helper()
	for _, nd := range nodes {
		if nd.cmd != nil {
			waitFor(t, time.Minute, "nats-server "+nd.name+" to be healthy", nd.healthy)
		}
	}
}

// clStream is a stream as a node's /jsz shows it.
type clStream struct {
	Name   string `json:"name"`
	Config struct {
		Replicas int `json:"num_replicas"`
	} `json:"config"`
	Cluster struct {
		Leader   string `json:"leader"`
		Replicas []struct {
			Name string `json:"name"`
		} `json:"replicas"` // the other peers
	} `json:"cluster"`
}

// clStreams returns the streams a running node hosts, by name.
func clStreams(nd *clNode) (map[string]clStream, error) {
	status, body := clGet(fmt.Sprintf("http://127.0.0.1:%d/jsz?accounts=true&streams=true&config=true", nd.monitorPort), "")
	if status != http.StatusOK {
		return nil, fmt.Errorf("nats-server %s: GET /jsz: %d %s", nd.name, status, body)
	}
	var jsz struct {
		Accounts []struct {
			Streams []clStream `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.Unmarshal(body, &jsz); err != nil {
		return nil, fmt.Errorf("nats-server %s: /jsz: %w", nd.name, err)
	}
	out := map[string]clStream{}
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			out[s.Name] = s
		}
	}
	return out, nil
}

// clStreamLeader waits until a running node knows the leader of stream, and returns that node.
func clStreamLeader(t testing.TB, nodes []*clNode, stream string) *clNode {
	t.Helper()
	var leader *clNode
	waitFor(t, clClusterWait, "a leader of stream "+stream, func() bool {
		for _, nd := range nodes {
			if nd.cmd == nil {
				continue
			}
			streams, err := clStreams(nd)
			if err != nil {
				continue
			}
			for _, other := range nodes {
				if other.cmd != nil && other.name == streams[stream].Cluster.Leader {
					leader = other
					return true
				}
			}
		}
		return false
	})
	return leader
}

// clReplica is a running fanout binary with its admin address.
type clReplica struct {
	name  string
	p     *fanoutProcess
	admin string
}

// clStartReplica runs `fanout serve` on config (see startFanout) and reads its admin address
// from the "fanout started" log line.
func clStartReplica(t testing.TB, name, bin, config string) *clReplica {
	t.Helper()
	p := startFanout(t, bin, config)
	for line := range strings.SplitSeq(p.logs.String(), "\n") {
		var l struct{ Msg, Admin string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "fanout started" {
			return &clReplica{name: name, p: p, admin: l.Admin}
		}
	}
	t.Fatalf("replica %s: no admin address in its log:\n%s", name, p.logs)
	return nil
}

// clClient talks to the replicas, the nodes' monitoring ports and the admin APIs.
var clClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// clPost POSTs a C2C.CallbackAfterSendMsg callback to addr and returns the status (0 when no
// answer came) and whether the answer is the OK JSON.
func clPost(addr string, body []byte) (int, bool) {
	resp, err := clClient.Post("http://"+addr+"/callback?"+tencentQuery(testApp, "C2C.CallbackAfterSendMsg"),
		"application/json", bytes.NewReader(body))
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, err == nil && resp.StatusCode == http.StatusOK && string(b) == okAnswer
}

// clGet GETs url (with a bearer token when set) and returns the status (0 when no answer
// came) and the body.
func clGet(url, token string) (int, []byte) {
	return clDo(http.MethodGet, url, token, nil)
}

func clDo(method, url, token string, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := clClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// readyz is the status of the replica's /readyz.
func (r *clReplica) readyz() int {
	status, _ := clGet("http://"+r.admin+"/readyz", "")
	return status
}

// api calls the replica's admin API with the token and decodes a 200 answer into out.
func (r *clReplica) api(t testing.TB, method, path string, body, out any) {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	status, answer := clDo(method, "http://"+r.admin+path, clToken, b)
	if status != http.StatusOK {
		t.Fatalf("replica %s: %s %s: %d %s", r.name, method, path, status, answer)
	}
	if err := json.Unmarshal(answer, out); err != nil {
		t.Fatalf("replica %s: %s %s: %v\n%s", r.name, method, path, err, answer)
	}
}

// pending is the number of deliveries stored for destination and not yet acknowledged, as
// the replica's admin API tells.
func (r *clReplica) pending(t testing.TB, destination string) int {
	t.Helper()
	var ds struct {
		Destinations []struct {
			Name    string `json:"name"`
			Pending int    `json:"pending"`
		} `json:"destinations"`
	}
	r.api(t, http.MethodGet, "/api/v1/destinations", nil, &ds)
	for _, d := range ds.Destinations {
		if d.Name == destination {
			return d.Pending
		}
	}
	t.Fatalf("replica %s: no destination %s in /api/v1/destinations", r.name, destination)
	return 0
}

// metric sums the samples of the metric name whose labels include labels, on the replica's
// /metrics (0 when the replica cannot be scraped).
func (r *clReplica) metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	status, body := clGet("http://"+r.admin+"/metrics", clToken)
	if status != http.StatusOK {
		return 0
	}
	sum := 0.0
	for line := range strings.SplitSeq(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		got := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			got = parseLabels(t, rest[1:end])
			rest = rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil && match {
			sum += v
		}
	}
	return sum
}

// clConfig writes the replicas' config (both read the same file) for a cluster of nodes:
// queue.url lists every node, replicas 3, the admin API behind clToken. rest holds the
// defaults, destinations and routes.
func clConfig(t testing.TB, dir string, nodes []*clNode, rest string) string {
	t.Helper()
	urls := make([]string, len(nodes))
	for i, nd := range nodes {
		urls[i] = nd.url()
	}
	path := filepath.Join(dir, "fanout-cluster.yaml")
	text := fmt.Sprintf(`server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: %s}
tencent:
  apps: [{sdkappid: %s}]
queue:
  url: %q
  replicas: 3
`, clToken, testApp, strings.Join(urls, ", ")) + rest
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clBody is a C2C.CallbackAfterSendMsg callback with MsgKey key to To_Account to (routes
// pick destinations by it); CloudCustomData carries sent in Unix nanoseconds, so that the
// receiver can measure the delay from sending to delivery.
func clBody(key, to string, sent time.Time) []byte {
	return fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":%q,`+
		`"MsgKey":%q,"MsgTime":%d,"SendMsgResult":0,"CloudCustomData":"%d",`+
		`"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`, to, key, sent.Unix(), sent.UnixNano())
}

// clSentAt is the send time that clBody wrote in body.
func clSentAt(body []byte) time.Time {
	var m struct{ CloudCustomData string }
	_ = json.Unmarshal(body, &m)
	ns, _ := strconv.ParseInt(m.CloudCustomData, 10, 64)
	return time.Unix(0, ns)
}

// clSendUntilOK POSTs body to the replicas in turn, starting at first, until one answers OK,
// at most tries times; it returns the replica that answered OK (nil if none did) and how
// many answers were not OK.
func clSendUntilOK(replicas []*clReplica, first int, body []byte, tries int) (*clReplica, int) {
	refused := 0
	for try := range tries {
		r := replicas[(first+try)%len(replicas)]
		if _, ok := clPost(r.p.addr, body); ok {
			return r, refused
		}
		refused++
		time.Sleep(20 * time.Millisecond) // pacing between tries, not a wait for a condition
	}
	return nil, refused
}

// clFirstDeliveries returns, by MsgKey, when rc first answered a request 2xx.
func clFirstDeliveries(rc *receiver) map[string]hit {
	first := map[string]hit{}
	for _, h := range rc.all() {
		if h.Status < 200 || h.Status > 299 {
			continue
		}
		if _, ok := first[msgKey(h.Body)]; !ok {
			first[msgKey(h.Body)] = h
		}
	}
	return first
}

// clQuantiles returns the 50th and 99th percentiles and the maximum of d (sorted in place).
func clQuantiles(d []time.Duration) (p50, p99, top time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return at(0.50), at(0.99), d[len(d)-1]
}

// clLongestPause is the longest time between from and to without an event of at (or
// between two of them).
func clLongestPause(at []time.Time, from, to time.Time) time.Duration {
	in := []time.Time{from, to}
	for _, t := range at {
		if t.After(from) && t.Before(to) {
			in = append(in, t)
		}
	}
	slices.SortFunc(in, func(x, y time.Time) int { return x.Compare(y) })
	var longest time.Duration
	for i := 1; i < len(in); i++ {
		longest = max(longest, in[i].Sub(in[i-1]))
	}
	return longest
}

// clMissing lists the keys (at most 10) that rc has not answered 2xx.
func clMissing(rc *receiver, keys []string) []string {
	got := rc.delivered()
	var out []string
	for _, k := range keys {
		if got[k] == 0 {
			out = append(out, k)
			if len(out) == 10 {
				break
			}
		}
	}
	return out
}

// clEnv is the cluster that TestCluster's steps share: each step leaves it as the next
// one expects.
type clEnv struct {
	nodes   []*clNode
	a, b    *clReplica
	sink    *receiver // every callback not sent to another destination; slow while sinkSlow
	limited *receiver // rate_limit 5/s per replica: 10/s for the cluster
	reject  *receiver // answers 400 while rejecting
	slow    *receiver // concurrency 4 for the cluster; each answer takes 100 ms

	sinkSlow  atomic.Bool
	rejecting atomic.Bool
	inFlight  atomic.Int64 // requests slow is answering
	mostSlow  atomic.Int64 // the most requests slow had in flight at once
}

// TestCluster runs two fanout replicas (the real binary) on a three-node nats-server
// cluster with queue.replicas 3, and checks SPEC section 9 and docs/cluster.md step by
// step: the streams are replicated; the rate limit is per replica and concurrency is for
// the whole cluster; a dead letter made through one replica is replayed through the other;
// a replica and then a NATS node die under load without losing an acknowledged callback,
// the dead replica's deliveries being made by the other after the ack wait; and while the
// cluster is unreachable callbacks are answered 503, never OK, and /readyz is 503.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fanout, runs three nats-server and two fanout processes")
	}
	dir := t.TempDir()
	bin := buildFanout(t, dir)
	e := &clEnv{nodes: clStartCluster(t, 3), limited: newReceiver(t, nil)}
	e.sinkSlow.Store(true)
	e.sink = newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) int {
		if e.sinkSlow.Load() {
			// Until replica a is killed, each delivery takes a while, so that a has some in
			// flight then. The receiver notes the arrival before: measured delays exclude it.
			time.Sleep(100 * time.Millisecond)
		}
		io.WriteString(w, "ok")
		return http.StatusOK
	})
	e.rejecting.Store(true)
	e.slow = newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) int {
		n := e.inFlight.Add(1)
		for m := e.mostSlow.Load(); n > m && !e.mostSlow.CompareAndSwap(m, n); m = e.mostSlow.Load() {
		}
		time.Sleep(100 * time.Millisecond) // a slow receiver, so that deliveries overlap
		e.inFlight.Add(-1)
		io.WriteString(w, "ok")
		return http.StatusOK
	})
	e.reject = newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) int {
		if e.rejecting.Load() {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"unknown account"}`)
			return http.StatusBadRequest
		}
		io.WriteString(w, "ok")
		return http.StatusOK
	})
	// No quick retries (backoff.initial above delivery.QuickRetryMax) and a 2 s timeout:
	// the ack wait is then 2 s + 30 s, the time a dead replica's deliveries wait.
	config := clConfig(t, dir, e.nodes, fmt.Sprintf(`defaults:
  timeout: 2s
  retry: {backoff: {initial: 6s, max: 30s}}
destinations:
  sink: {url: %q, concurrency: 32}
  limited: {url: %q, concurrency: 4, rate_limit: 5/s}
  reject: {url: %q, concurrency: 2}
  slow: {url: %q, concurrency: 4}
routes:
  - {name: limited, commands: [C2C.CallbackAfterSendMsg], when: 'To_Account == "limited"', to: [limited], stop: true}
  - {name: reject, commands: [C2C.CallbackAfterSendMsg], when: 'To_Account == "reject"', to: [reject], stop: true}
  - {name: slow, commands: [C2C.CallbackAfterSendMsg], when: 'To_Account == "slow"', to: [slow], stop: true}
  - {name: all, to: [sink]}
`, e.sink.URL(), e.limited.URL(), e.reject.URL(), e.slow.URL()))
	e.a = clStartReplica(t, "a", bin, config)
	e.b = clStartReplica(t, "b", bin, config)

	for _, step := range []struct {
		name string
		run  func(*testing.T, *clEnv)
	}{
		{"streams have queue.replicas", clStepStreams},
		{"rate limit is per replica", clStepRateLimit},
		{"concurrency is for the whole cluster", clStepConcurrency},
		{"dead letter replayed through the other replica", clStepDeadLetter},
		{"a replica then a NATS node die under load", clStepFailover},
		{"cluster unreachable", clStepUnreachable},
	} {
		if !t.Run(step.name, func(t *testing.T) { step.run(t, e) }) {
			return // the next steps need this one's outcome
		}
	}
}

// clStepStreams: queue.replicas reached the streams, and both replicas are ready.
func clStepStreams(t *testing.T, e *clEnv) {
	for _, r := range []*clReplica{e.a, e.b} {
		if s := r.readyz(); s != http.StatusOK {
			t.Errorf("replica %s: /readyz %d, want 200", r.name, s)
		}
	}
	streams, err := clStreams(e.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"FANOUT_JOBS", "FANOUT_DLQ"} {
		s, ok := streams[name]
		if !ok {
			t.Errorf("stream %s is not on %s", name, e.nodes[0].name)
			continue
		}
		if s.Config.Replicas != 3 || s.Cluster.Leader == "" || len(s.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: %d replicas, leader %q, %d other peers; want 3, a leader and 2",
				name, s.Config.Replicas, s.Cluster.Leader, len(s.Cluster.Replicas))
		}
	}
}

// clStepRateLimit: a destination at rate_limit 5/s on each of two replicas receives at
// most 10/s: in any window of 3 s, at most 10/s * 3 s + 2 (each replica's first token).
func clStepRateLimit(t *testing.T, e *clEnv) {
	const (
		n       = 60
		window  = 3 * time.Second
		allowed = 10*3 + 2
	)
	keys := clSendAll(t, []*clReplica{e.a, e.b}, "limited", n)
	waitForNone(t, clClusterWait, "the rate-limited deliveries", func() []string { return clMissing(e.limited, keys) })

	var at []time.Time
	for _, h := range e.limited.all() {
		at = append(at, h.At)
	}
	slices.SortFunc(at, func(x, y time.Time) int { return x.Compare(y) })
	most := 0
	for i := range at {
		in := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < window; j++ {
			in++
		}
		most = max(most, in)
	}
	if most > allowed {
		t.Errorf("%d deliveries within %s, want at most %d (10/s over both replicas, plus one token each)", most, window, allowed)
	}
	span := at[len(at)-1].Sub(at[0])
	labels := map[string]string{"destination": "limited", "outcome": "delivered"}
	t.Logf("rate limit 5/s per replica: %d deliveries in %s (%.1f/s), at most %d in any %s (allowed %d); "+
		"delivered by a: %g, by b: %g", len(at), span.Round(time.Millisecond), float64(len(at)-1)/span.Seconds(),
		most, window, allowed, e.a.metric(t, "fanout_deliveries_total", labels), e.b.metric(t, "fanout_deliveries_total", labels))
}

// clStepConcurrency: a destination's concurrency bounds the deliveries in flight of all the
// replicas together, since they share its consumer (MaxAckPending): each replica runs that
// many workers, yet the slow receiver never has more requests at once.
func clStepConcurrency(t *testing.T, e *clEnv) {
	const n = 40
	keys := clSendAll(t, []*clReplica{e.a, e.b}, "slow", n)
	waitForNone(t, clClusterWait, "the slow deliveries", func() []string { return clMissing(e.slow, keys) })
	if most := e.mostSlow.Load(); most > 4 {
		t.Errorf("slow had %d requests in flight at once, want at most its concurrency 4 across both replicas", most)
	}
	labels := map[string]string{"destination": "slow", "outcome": "delivered"}
	t.Logf("concurrency 4: at most %d requests in flight at the receiver; delivered by a: %g, by b: %g",
		e.mostSlow.Load(), e.a.metric(t, "fanout_deliveries_total", labels), e.b.metric(t, "fanout_deliveries_total", labels))
}

// clSendAll sends n callbacks to To_Account to, from three senders spread over replicas,
// each until it is answered OK, and returns their MsgKeys.
func clSendAll(t *testing.T, replicas []*clReplica, to string, n int) []string {
	t.Helper()
	keys := make([]string, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 3 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				keys[i] = fmt.Sprintf("%s-%03d", to, i)
				if r, _ := clSendUntilOK(replicas, i, clBody(keys[i], to, time.Now()), 100); r == nil {
					t.Errorf("%s: never answered OK", keys[i])
				}
			}
		})
	}
	wg.Wait()
	return keys
}

// clStepDeadLetter: a callback accepted by replica a whose destination answers 400 becomes a
// dead letter, listed through a, replayed through b's admin API, then delivered.
func clStepDeadLetter(t *testing.T, e *clEnv) {
	const key = "reject-1"
	if _, ok := clPost(e.a.p.addr, clBody(key, "reject", time.Now())); !ok {
		t.Fatal("replica a did not answer OK")
	}
	type page struct {
		Items []struct {
			ID          uint64 `json:"id"`
			Destination string `json:"destination"`
			Reason      string `json:"reason"`
			LastStatus  int    `json:"last_status"`
		} `json:"items"`
	}
	var dlq page
	waitFor(t, clClusterWait, "the dead letter, listed by replica a", func() bool {
		e.a.api(t, http.MethodGet, "/api/v1/dlq?destination=reject", nil, &dlq)
		return len(dlq.Items) > 0
	})
	if len(dlq.Items) != 1 || dlq.Items[0].Reason != "status 400" || dlq.Items[0].LastStatus != 400 {
		t.Fatalf("dead letters of reject: %+v, want one with reason \"status 400\"", dlq.Items)
	}
	id := dlq.Items[0].ID

	e.rejecting.Store(false)
	var replay struct {
		Replayed []uint64        `json:"replayed"`
		Errors   json.RawMessage `json:"errors"`
	}
	e.b.api(t, http.MethodPost, "/api/v1/dlq/replay", map[string]any{"filter": map[string]string{"destination": "reject"}}, &replay)
	if !slices.Equal(replay.Replayed, []uint64{id}) {
		t.Fatalf("replay through b: replayed %v (errors %s), want [%d]", replay.Replayed, replay.Errors, id)
	}
	waitFor(t, clClusterWait, "the replayed delivery", func() bool { return e.reject.delivered()[key] == 1 })
	waitFor(t, waitTimeout, "the dead-letter queue of reject to be empty, seen from a", func() bool {
		e.a.api(t, http.MethodGet, "/api/v1/dlq?destination=reject", nil, &dlq)
		return len(dlq.Items) == 0
	})
	var statuses []int
	for _, h := range e.reject.all() {
		statuses = append(statuses, h.Status)
	}
	if !slices.Equal(statuses, []int{400, 200}) {
		t.Errorf("reject answered %v, want [400 200]: the 400 dead-letters at once, the replay delivers", statuses)
	}
	t.Logf("dead letter %d made through replica a, replayed with replica b's POST /api/v1/dlq/replay", id)
}

// clStepFailover: a continuous load of callbacks with unique MsgKeys, spread over both
// replicas; replica a is killed (SIGKILL) a quarter of the way, then the NATS node leading
// the jobs stream half-way. Every callback answered OK reaches the sink. A sender tries the
// next replica when one does not answer OK, as a load balancer would after Tencent's retry.
func clStepFailover(t *testing.T, e *clEnv) {
	const (
		total       = 3000
		senders     = 4
		pace        = 20 * time.Millisecond // per sender: about 200 callbacks/s in all
		killReplica = total / 4             // acknowledged callbacks before a dies
		killNode    = total / 2             // ... and before a NATS node dies
	)
	type outcome struct {
		key          string
		sent, acked  time.Time
		refused      int // answers that were not OK
		acknowledger string
	}
	var (
		outcomes = make([]outcome, total) // element i is written by one sender only
		next     atomic.Int64
		ackedN   atomic.Int64
		failed   atomic.Int64
		alive    atomic.Pointer[[]*clReplica]
		wg       sync.WaitGroup
	)
	alive.Store(&[]*clReplica{e.a, e.b})
	deadline := time.Now().Add(3 * time.Minute)
	for range senders {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total || time.Now().After(deadline) {
					return
				}
				o := &outcomes[i]
				o.key, o.sent = fmt.Sprintf("load-%05d", i), time.Now()
				body := clBody(o.key, "all", o.sent)
				for try := 0; ; try++ {
					if try == 1000 || time.Now().After(deadline) {
						failed.Add(1)
						break
					}
					reps := *alive.Load()
					r := reps[(i+try)%len(reps)]
					if _, ok := clPost(r.p.addr, body); ok {
						o.acked, o.acknowledger = time.Now(), r.name
						ackedN.Add(1)
						break
					}
					o.refused++
					time.Sleep(pace) // pacing between tries
				}
				time.Sleep(pace) // load shaping, not a wait for a condition
			}
		})
	}
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()

	waitFor(t, clClusterWait, "a quarter of the load to be acknowledged", func() bool { return ackedN.Load() >= killReplica })
	e.a.p.kill(t)
	replicaKilled := time.Now()
	e.sinkSlow.Store(false)
	alive.Store(&[]*clReplica{e.b}) // the load balancer's health check took a out

	waitFor(t, clClusterWait, "half of the load to be acknowledged", func() bool { return ackedN.Load() >= killNode })
	node := clStreamLeader(t, e.nodes, "FANOUT_JOBS")
	node.kill()
	nodeKilled := time.Now()

	select {
	case <-loadDone:
	case <-time.After(4 * time.Minute):
		t.Fatal("the load did not finish")
	}
	loadEnded := time.Now()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d callbacks never answered OK", n)
	}
	var keys []string
	for _, o := range outcomes {
		keys = append(keys, o.key)
	}
	waitForNone(t, clClusterWait, "every acknowledged callback at the sink", func() []string { return clMissing(e.sink, keys) })
	// The deliveries that a had in flight stay in the queue until b makes them again.
	waitFor(t, clClusterWait, "the sink's queue to be empty", func() bool { return e.b.pending(t, "sink") == 0 })

	// Duplicates, and delays by phase: sent while both replicas ran (those a had in flight
	// when it died included), then, sent later, first delivered before the NATS node was
	// killed or after (those the failure held up included).
	type phase struct {
		name     string
		latency  []time.Duration
		n, tries int
	}
	phases := []*phase{{name: "sent to two replicas"}, {name: "one replica, NATS up"}, {name: "one replica, NATS node down"}}
	first := clFirstDeliveries(e.sink)
	byReplica := map[string]int{}
	for _, o := range outcomes {
		byReplica[o.acknowledger]++
		at := first[o.key].At
		p := phases[0]
		switch {
		case o.sent.Before(replicaKilled):
		case at.Before(nodeKilled):
			p = phases[1]
		default:
			p = phases[2]
		}
		p.n++
		p.tries += o.refused
		p.latency = append(p.latency, at.Sub(o.sent))
	}
	sent := map[string]bool{}
	for _, k := range keys {
		sent[k] = true
	}
	duplicates, extra := 0, 0
	near := map[string]int{} // duplicated callbacks by the interruption their first delivery was closest to
	for key, n := range e.sink.delivered() {
		if !sent[key] {
			extra++
			continue
		}
		if n > 1 {
			duplicates += n - 1
			at := first[key].At
			if at.Sub(replicaKilled).Abs() < at.Sub(nodeKilled).Abs() {
				near["replica a killed"] += n - 1
			} else {
				near["NATS node killed"] += n - 1
			}
		}
	}
	if extra > 0 {
		t.Errorf("%d callbacks delivered that were never sent", extra)
	}
	t.Logf("failover: %d callbacks answered OK (%d by a, %d by b); replica a killed at %d, NATS node %s (leader of FANOUT_JOBS) at %d",
		total, byReplica["a"], byReplica["b"], killReplica, node.name, killNode)
	t.Logf("failover: %d deliveries for %d callbacks: %d duplicates (redeliveries of interrupted attempts), by nearest interruption: %v",
		e.sink.count(), len(first), duplicates, near)
	// The sink answers every attempt 200, so a second attempt is a redelivery: of a delivery
	// that replica a had in flight when it died (sent before), made by b after the ack wait.
	var redelivered []time.Duration
	for _, h := range e.sink.all() {
		if h.Header.Get("Fanout-Attempt") != "1" && clSentAt(h.Body).Before(replicaKilled) {
			redelivered = append(redelivered, h.At.Sub(replicaKilled))
		}
	}
	if len(redelivered) == 0 {
		t.Errorf("no delivery in flight in replica a when it was killed was made again")
	}
	_, _, top := clQuantiles(redelivered)
	t.Logf("failover: %d deliveries in flight in replica a when it died were made again by b, the last %s after the kill (the ack wait is 32 s)",
		len(redelivered), top.Round(time.Millisecond))
	var answered, arrived []time.Time
	for _, o := range outcomes {
		answered = append(answered, o.acked)
	}
	for _, h := range e.sink.all() {
		arrived = append(arrived, h.At)
	}
	for _, ev := range []struct {
		name     string
		from, to time.Time
	}{{"replica a was killed", replicaKilled, nodeKilled}, {"the NATS node was killed", nodeKilled, loadEnded}} {
		t.Logf("failover: after %s: longest pause in OK answers %s, in deliveries %s", ev.name,
			clLongestPause(answered, ev.from, ev.to).Round(time.Millisecond), clLongestPause(arrived, ev.from, ev.to).Round(time.Millisecond))
	}
	for _, p := range phases {
		p50, p99, top := clQuantiles(p.latency)
		t.Logf("failover: %-28s %4d callbacks, %4d answers not OK; send-to-delivery p50 %s p99 %s max %s",
			p.name+":", p.n, p.tries, p50.Round(time.Millisecond), p99.Round(time.Millisecond), top.Round(time.Millisecond))
	}
}

// clStepUnreachable: with two of three NATS nodes down the streams have no quorum, and with
// all three down the replica is disconnected: no callback is answered OK meanwhile, /readyz
// is 503 while disconnected (and /healthz still 200). When the nodes are back, the replica
// reconnects on its own, is ready again and delivers what it acknowledges.
func clStepUnreachable(t *testing.T, e *clEnv) {
	b := e.b
	notOK := func(prefix string) []int {
		statuses := make([]int, 4)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Go(func() {
				var ok bool
				statuses[i], ok = clPost(b.p.addr, clBody(fmt.Sprintf("%s-%d", prefix, i), "all", time.Now()))
				if ok {
					t.Errorf("%s-%d answered OK while the queue cannot store it", prefix, i)
				}
			})
		}
		wg.Wait()
		return statuses
	}

	var up []*clNode
	for _, nd := range e.nodes {
		if nd.cmd != nil {
			up = append(up, nd)
		}
	}
	if len(up) != 2 {
		t.Fatalf("%d NATS nodes up, want 2 after the failover step", len(up))
	}
	up[0].kill()
	quorumLost := notOK("quorum-lost")

	up[1].kill()
	waitFor(t, waitTimeout, "replica b's /readyz to answer 503", func() bool { return b.readyz() == http.StatusServiceUnavailable })
	disconnected := notOK("disconnected")
	for _, s := range disconnected {
		if s != http.StatusServiceUnavailable {
			t.Errorf("a callback while disconnected was answered %d, want 503", s)
		}
	}
	if s, _ := clGet("http://"+b.admin+"/healthz", ""); s != http.StatusOK {
		t.Errorf("/healthz while disconnected: %d, want 200 (the process is alive)", s)
	}

	outage := time.Now()
	for _, nd := range e.nodes {
		nd.start()
	}
	clWaitHealthy(t, e.nodes...)
	waitFor(t, clClusterWait, "replica b's /readyz to answer 200", func() bool { return b.readyz() == http.StatusOK })
	ready := time.Since(outage)

	const n = 100
	keys := make([]string, n)
	refused := 0
	for i := range keys {
		keys[i] = fmt.Sprintf("back-%03d", i)
		r, no := clSendUntilOK([]*clReplica{b}, 0, clBody(keys[i], "all", time.Now()), 1000)
		if r == nil {
			t.Fatalf("%s: never answered OK after the restart", keys[i])
		}
		refused += no
	}
	waitForNone(t, clClusterWait, "the callbacks acknowledged after the restart", func() []string { return clMissing(e.sink, keys) })
	t.Logf("unreachable: answers with 2 of 3 nodes down %v, with all down %v; ready %s after the restart; "+
		"%d callbacks then delivered (%d answers not OK before the streams were back)",
		quorumLost, disconnected, ready.Round(time.Millisecond), n, refused)
}

// BenchmarkCluster measures the callbacks per second that one fanout replica answers OK, then
// two, on a three-node nats-server cluster (queue.replicas 3): a burst of callbacks with
// unique MsgKeys from 32 senders, spread over the replicas, with the answer delay and the
// rate at which the sink then has them all. On a machine with few cores the replicas, the
// nodes and the load share the same CPUs, so a second replica is not expected to add much.
//
//	go test -run '^$' -bench Cluster -benchtime 3x ./gateway/
func BenchmarkCluster(b *testing.B) {
	dir := b.TempDir()
	bin := buildFanout(b, dir)
	nodes := clStartCluster(b, 3)
	sink := newReceiver(b, nil)
	config := clConfig(b, dir, nodes, fmt.Sprintf("destinations:\n  sink: {url: %q}\nroutes:\n  - {name: all, to: [sink]}\n", sink.URL()))
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			const (
				burst   = 4000
				senders = 32
			)
			var replicas []*clReplica
			for i := range n {
				replicas = append(replicas, clStartReplica(b, strconv.Itoa(i), bin, config))
			}
			var (
				accepted, refused int
				answering         time.Duration // sending the bursts
				delivering        time.Duration // from the start of a burst until the sink has it all
				answers           []time.Duration
				round             int
			)
			for b.Loop() {
				round++
				keys := make([]string, burst)
				lat := make([]time.Duration, burst)
				ok := make([]bool, burst)
				var next atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				for range senders {
					wg.Go(func() {
						for i := int(next.Add(1)) - 1; i < burst; i = int(next.Add(1)) - 1 {
							keys[i] = fmt.Sprintf("bench-%d-%d-%05d", n, round, i)
							sent := time.Now()
							_, ok[i] = clPost(replicas[i%n].p.addr, clBody(keys[i], "all", sent))
							lat[i] = time.Since(sent)
						}
					})
				}
				wg.Wait()
				answering += time.Since(start)
				var stored []string
				for i := range keys {
					if ok[i] {
						stored = append(stored, keys[i])
					}
				}
				accepted += len(stored)
				refused += burst - len(stored)
				answers = append(answers, lat...)
				waitForNone(b, clClusterWait, "the burst at the sink", func() []string { return clMissing(sink, stored) })
				delivering += time.Since(start)
			}
			p50, p99, _ := clQuantiles(answers)
			b.ReportMetric(float64(accepted)/answering.Seconds(), "callbacks/s")
			b.ReportMetric(float64(accepted)/delivering.Seconds(), "delivered/s")
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-answer-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-answer-ms")
			b.ReportMetric(float64(refused), "not-ok")
		})
	}
}

// TestClusterQueueOptions checks that every queue key of the config reaches the queue:
// several servers, credentials, TLS files and replicas for an external cluster.
func TestClusterQueueOptions(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	creds, ca, cert, key := file("nats.creds"), file("ca.pem"), file("client.pem"), file("client-key.pem")
	for _, tt := range []struct {
		name, queue string
		want        queue.Options
	}{{
		name: "external cluster",
		queue: fmt.Sprintf(`  url: "nats://n1:4222, tls://fanout:s3cret@n2:4222,nats://n3:4222"
  credentials: %s
  tls: {ca: %s, cert: %s, key: %s}
  replicas: 3
  dedup_window: 5m
  dead_letter_max_age: 24h
`, creds, ca, cert, key),
		want: queue.Options{URL: "nats://n1:4222, tls://fanout:s3cret@n2:4222,nats://n3:4222", Credentials: creds,
			TLS: queue.TLS{CA: ca, Cert: cert, Key: key}, Replicas: 3, SyncInterval: time.Second,
			DedupWindow: queueDedupWindow, DeadLetterMaxAge: 24 * time.Hour},
	}, {
		name:  "embedded",
		queue: "  dir: /var/lib/fanout\n  sync: always\n",
		want: queue.Options{Dir: "/var/lib/fanout", Replicas: 1, SyncAlways: true, SyncInterval: time.Second,
			DeadLetterMaxAge: 336 * time.Hour},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			text := "tencent: {apps: [{sdkappid: " + testApp + "}]}\nqueue:\n" + tt.queue
			cfg, probs := config.Parse("fanout.yaml", []byte(text), func(string) (string, bool) { return "", false })
			if cfg == nil || len(probs) > 0 {
				t.Fatalf("config problems:\n%v", probs)
			}
			got := queueOptions(cfg.Queue, nil)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("queueOptions =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestClusterSecureQueue runs a gateway on a nats-server that requires TLS with a client
// certificate and a user of an operator (a .creds file), with queue.url listing a server
// that is down before the one that is up: callbacks are stored and delivered through it.
// Without the credentials, or without the client certificate, the queue cannot open.
func TestClusterSecureQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a nats-server process")
	}
	dir := t.TempDir()
	ca, caKey := clCertificate(t, dir, "ca", nil, nil)
	clCertificate(t, dir, "server", ca, caKey)
	clCertificate(t, dir, "client", ca, caKey)
	operator, account, creds := clOperator(t, dir)

	port := clFreePort(t)
	conf := filepath.Join(dir, "nats-server.conf")
	err := os.WriteFile(conf, fmt.Appendf(nil, `server_name: secure
listen: 127.0.0.1:%d
jetstream {store_dir: %q}
tls {
  cert_file: %q
  key_file: %q
  ca_file: %q
  verify: true
}
operator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s
}
`, port, filepath.Join(dir, "store"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"),
		filepath.Join(dir, "ca.pem"), operator, account.system, account.preload), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var output syncBuffer
	cmd := exec.Command(natsServerBinary(t), "-c", conf)
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("kill nats-server pid %d: %v", cmd.Process.Pid, err)
		}
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server output:\n%s", output.String())
		}
	})
	waitFor(t, waitTimeout, "nats-server to listen", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	sink := newReceiver(t, nil)
	path := writeConfig(t, fmt.Sprintf(`server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue:
  url: "nats://127.0.0.1:%d, tls://127.0.0.1:%d"
  credentials: %s
  tls: {ca: %s, cert: %s, key: %s}
  replicas: 1
destinations:
  sink: {url: %q}
routes:
  - {name: all, to: [sink]}
`, testApp, clFreePort(t), port, creds, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"),
		filepath.Join(dir, "client-key.pem"), sink.URL()))
	g := startGateway(t, path)
	accept(t, g, tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), c2cMessage("secure-1"))
	waitFor(t, waitTimeout, "the delivery", func() bool { return sink.delivered()["secure-1"] == 1 })
	if s := send(t, http.MethodGet, "http://"+g.AdminAddr()+"/readyz", nil, nil).Status; s != http.StatusOK {
		t.Errorf("/readyz: %d, want 200", s)
	}

	// Each of the two is needed.
	opts := queueOptions(g.live.Load().cfg.Queue, slog.New(slog.DiscardHandler))
	opts.URL = fmt.Sprintf("tls://127.0.0.1:%d", port)
	noCreds, noCert := opts, opts
	noCreds.Credentials = ""
	noCert.TLS.Cert, noCert.TLS.Key = "", ""
	for name, o := range map[string]queue.Options{"without credentials": noCreds, "without a client certificate": noCert} {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		q, err := queue.Open(ctx, o)
		cancel()
		if err == nil {
			q.Close()
			t.Errorf("queue.Open %s succeeded, want an error", name)
			continue
		}
		if name == "without credentials" && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("queue.Open %s: %v, want an authorization error", name, err)
		}
		t.Logf("queue.Open %s: %v", name, err)
	}
}

// clAccounts are the accounts of clOperator, for the server config.
type clAccounts struct {
	system  string // the system account's public key
	preload string // resolver_preload entries: public key: JWT
}

// clOperator makes an operator, a system account, an account with JetStream and a user of
// it; it returns the operator JWT, the accounts and the path of the user's .creds file.
func clOperator(t testing.TB, dir string) (string, clAccounts, string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	ojwt, err := jwt.NewOperatorClaims(opub).Encode(okp)
	must(err)

	var accounts clAccounts
	account := func(name string, js bool) nkeys.KeyPair {
		akp, err := nkeys.CreateAccount()
		must(err)
		apub, err := akp.PublicKey()
		must(err)
		claims := jwt.NewAccountClaims(apub)
		claims.Name = name
		if js {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := claims.Encode(okp)
		must(err)
		accounts.preload += apub + ": " + ajwt + "\n  "
		if name == "SYS" {
			accounts.system = apub
		}
		return akp
	}
	account("SYS", false)
	akp := account("FANOUT", true)

	ukp, err := nkeys.CreateUser()
	must(err)
	upub, err := ukp.PublicKey()
	must(err)
	useed, err := ukp.Seed()
	must(err)
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	must(err)
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	must(err)
	path := filepath.Join(dir, "fanout.creds")
	must(os.WriteFile(path, creds, 0o600))
	return ojwt, accounts, path
}

// clCertificate writes name.pem and name-key.pem in dir: a CA when parent is nil, else a
// certificate for 127.0.0.1 (server and client use) signed by parent.
func clCertificate(t testing.TB, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "fanout test " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{
		name + ".pem":     {Type: "CERTIFICATE", Bytes: der},
		name + "-key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// clExampleDir is examples/cluster, seen from gateway/.
const clExampleDir = "../examples/cluster"

// TestClusterExample checks that the pieces of examples/cluster fit together: the three
// nats-server configs are valid (nats-server -t) and form one cluster with JetStream, and
// config.yaml loads with the environment that compose.yaml and the Kubernetes Deployment
// give it, listing the three nodes with replicas 3, the admin port where the probes look.
// (cmd/fanout's TestExamples checks it with an empty environment and routes its payloads.)
func TestClusterExample(t *testing.T) {
	t.Run("nats", func(t *testing.T) {
		bin := natsServerBinary(t)
		names := []string{"nats-1", "nats-2", "nats-3"}
		for _, name := range names {
			path := filepath.Join(clExampleDir, "nats", name+".conf")
			if out, err := exec.Command(bin, "-t", "-c", path).CombinedOutput(); err != nil {
				t.Errorf("nats-server -t -c %s: %v\n%s", path, err, out)
				continue
			}
			c, err := conf.ParseFile(path)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			js, _ := c["jetstream"].(map[string]any)
			cluster, _ := c["cluster"].(map[string]any)
			routes, _ := cluster["routes"].([]any)
			var want []any
			for _, n := range names {
				want = append(want, "nats-route://"+n+":6222")
			}
			if c["server_name"] != name || js["store_dir"] == nil || cluster["name"] != "fanout" || !reflect.DeepEqual(routes, want) {
				t.Errorf("%s: server_name %v, jetstream store_dir %v, cluster %v routes %v; want %s, a store, fanout and %v",
					path, c["server_name"], js["store_dir"], cluster["name"], routes, name, want)
			}
		}
	})

	// The environment each runtime gives the replicas, with a token for the check.
	compose := clExampleCompose(t)
	deployment := clExampleDeployment(t)
	for name, env := range map[string]map[string]string{"compose": compose, "kubernetes": deployment} {
		t.Run(name, func(t *testing.T) {
			env["FANOUT_ADMIN_TOKEN"] = "x"
			data, err := os.ReadFile(filepath.Join(clExampleDir, "config.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, probs := config.Parse("config.yaml", data, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if cfg == nil || len(probs) > 0 {
				t.Fatalf("config.yaml with the %s environment:\n%v", name, probs)
			}
			o := queueOptions(cfg.Queue, nil)
			if servers := strings.Split(o.URL, ","); len(servers) != 3 || o.Replicas != 3 || o.Dir != "" {
				t.Errorf("queue: %d servers (%s), replicas %d, dir %q; want 3 servers, 3 replicas, no dir", len(servers), o.URL, o.Replicas, o.Dir)
			}
			if cfg.Admin.Listen != "0.0.0.0:9090" || cfg.Admin.Token.Value() != "x" {
				t.Errorf("admin listens on %s, token %q; want 0.0.0.0:9090 and the token of the environment", cfg.Admin.Listen, cfg.Admin.Token.Value())
			}
		})
	}
}

// clExampleCompose checks compose.yaml's services and returns the environment of its Fanout
// replicas.
func clExampleCompose(t *testing.T) map[string]string {
	t.Helper()
	var compose struct {
		Services map[string]struct {
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
			Command     []string          `yaml:"command"`
		} `yaml:"services"`
	}
	clReadYAML(t, filepath.Join(clExampleDir, "compose.yaml"), &compose)
	var env map[string]string
	for _, name := range []string{"nats-1", "nats-2", "nats-3", "fanout-1", "fanout-2"} {
		s, ok := compose.Services[name]
		switch {
		case !ok:
			t.Errorf("compose.yaml: no service %s", name)
		case strings.HasPrefix(name, "nats-"):
			if !slices.Contains(s.Volumes, "./nats/"+name+".conf:/etc/nats/nats-server.conf:ro") {
				t.Errorf("compose.yaml: %s does not mount nats/%s.conf: %v", name, name, s.Volumes)
			}
		default:
			if !slices.Contains(s.Volumes, ".:/etc/fanout:ro") ||
				!slices.Equal(s.Command, []string{"serve", "--config", "/etc/fanout/config.yaml"}) {
				t.Errorf("compose.yaml: %s: volumes %v, command %v; want config.yaml served from /etc/fanout", name, s.Volumes, s.Command)
			}
			env = s.Environment
		}
	}
	if len(compose.Services) != 5 {
		t.Errorf("compose.yaml: %d services, want 3 nats and 2 fanout", len(compose.Services))
	}
	return env
}

// clExampleDeployment checks the Kubernetes manifests and returns the environment of the
// Fanout container (secrets as set).
func clExampleDeployment(t *testing.T) map[string]string {
	t.Helper()
	var kustomization struct {
		Resources  []string `yaml:"resources"`
		Generators []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
	}
	clReadYAML(t, filepath.Join(clExampleDir, "kustomization.yaml"), &kustomization)
	if len(kustomization.Generators) != 1 || kustomization.Generators[0].Name != "fanout-config" ||
		!slices.Equal(kustomization.Generators[0].Files, []string{"config.yaml"}) {
		t.Errorf("kustomization.yaml: config maps %+v, want fanout-config from config.yaml", kustomization.Generators)
	}

	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	type manifest struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Env []struct {
							Name      string `yaml:"name"`
							Value     string `yaml:"value"`
							ValueFrom *struct {
								SecretKeyRef *struct{ Name, Key string } `yaml:"secretKeyRef"`
							} `yaml:"valueFrom"`
						} `yaml:"env"`
						Ports []struct {
							Name          string `yaml:"name"`
							ContainerPort int    `yaml:"containerPort"`
						} `yaml:"ports"`
						Liveness     probe `yaml:"livenessProbe"`
						Readiness    probe `yaml:"readinessProbe"`
						VolumeMounts []struct {
							Name      string `yaml:"name"`
							MountPath string `yaml:"mountPath"`
						} `yaml:"volumeMounts"`
					} `yaml:"containers"`
					Volumes []struct {
						Name      string `yaml:"name"`
						ConfigMap struct {
							Name string `yaml:"name"`
						} `yaml:"configMap"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	kinds := map[string]manifest{}
	for _, file := range kustomization.Resources {
		f, err := os.Open(filepath.Join(clExampleDir, file))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var m manifest
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			kinds[m.Kind] = m
		}
		f.Close()
	}
	for _, kind := range []string{"Deployment", "Service", "PodDisruptionBudget"} {
		if _, ok := kinds[kind]; !ok {
			t.Errorf("kubernetes: no %s", kind)
		}
	}
	pod := kinds["Deployment"].Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("Deployment: %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if c.Liveness.HTTPGet.Path != "/healthz" || c.Readiness.HTTPGet.Path != "/readyz" ||
		ports[c.Liveness.HTTPGet.Port] != 9090 || ports[c.Readiness.HTTPGet.Port] != 9090 {
		t.Errorf("Deployment probes: liveness %+v, readiness %+v, ports %v; want /healthz and /readyz on 9090",
			c.Liveness.HTTPGet, c.Readiness.HTTPGet, ports)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			mounted = mounted || m.MountPath == "/etc/fanout" && m.Name == v.Name && v.ConfigMap.Name == "fanout-config"
		}
	}
	if !mounted {
		t.Errorf("Deployment: the ConfigMap fanout-config is not mounted at /etc/fanout")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "from secret " + e.ValueFrom.SecretKeyRef.Name
		default:
			env[e.Name] = e.Value
		}
	}
	if env["FANOUT_ADMIN_TOKEN"] != "from secret fanout-admin" {
		t.Errorf("Deployment: FANOUT_ADMIN_TOKEN is %q, want it from the Secret fanout-admin", env["FANOUT_ADMIN_TOKEN"])
	}
	return env
}

func clReadYAML(t *testing.T, path string, out any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
