package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Scale-out (docs/cluster.md): Fanout replicas, the real binary, on a nats-server cluster,
// every process on 127.0.0.1, started and killed by the tests by pid.

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
	*fanouttest.NATSServer
	monitorPort int
}

// clStartCluster starts n nats-server nodes routed to each other and waits until every one
// is healthy (JetStream meta leader elected). They are killed at the end of the test.
func clStartCluster(t testing.TB, n int) []*clNode {
	t.Helper()
	nodes := make([]*clNode, n)
	clusterPorts := make([]int, n)
	routes := make([]string, n)
	for i := range nodes {
		clusterPorts[i] = fanouttest.FreePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", clusterPorts[i])
	}
	for i := range nodes {
		monitor := fanouttest.FreePort(t)
		nodes[i] = &clNode{monitorPort: monitor, NATSServer: fanouttest.NewNATSServer(t, fmt.Sprintf("n%d", i+1),
			"-m", strconv.Itoa(monitor), "--cluster", routes[i], "--cluster_name", clClusterName, "--routes", strings.Join(routes, ","))}
	}
	for _, nd := range nodes {
		nd.Start(t)
	}
	clWaitHealthy(t, nodes...)
	return nodes
}

func (nd *clNode) monitor(path string) (int, []byte) {
	return fanouttest.Do(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", nd.monitorPort, path), "", nil)
}

func (nd *clNode) healthy() bool {
	status, _ := nd.monitor("/healthz")
	return status == http.StatusOK
}

// clWaitHealthy waits until every running node among nodes answers /healthz 200.
func clWaitHealthy(t testing.TB, nodes ...*clNode) {
	t.Helper()
	for _, nd := range nodes {
		if nd.Running() {
			fanouttest.WaitFor(t, time.Minute, "nats-server "+nd.Name+" to be healthy", nd.healthy)
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
	status, body := nd.monitor("/jsz?accounts=true&streams=true&config=true")
	if status != http.StatusOK {
		return nil, fmt.Errorf("nats-server %s: GET /jsz: %d %s", nd.Name, status, body)
	}
	var jsz struct {
		Accounts []struct {
			Streams []clStream `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.Unmarshal(body, &jsz); err != nil {
		return nil, fmt.Errorf("nats-server %s: /jsz: %w", nd.Name, err)
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
	fanouttest.WaitFor(t, clClusterWait, "a leader of stream "+stream, func() bool {
		for _, nd := range nodes {
			if !nd.Running() {
				continue
			}
			streams, err := clStreams(nd)
			if err != nil {
				continue
			}
			for _, other := range nodes {
				if other.Running() && other.Name == streams[stream].Cluster.Leader {
					leader = other
					return true
				}
			}
		}
		return false
	})
	return leader
}

// clReplica is a running fanout binary, one replica of the cluster.
type clReplica struct {
	*fanouttest.Fanout
	name string
}

// clStartReplica runs `fanout serve` on config.
func clStartReplica(t testing.TB, name, bin, config string) *clReplica {
	t.Helper()
	r := &clReplica{Fanout: fanouttest.StartFanout(t, bin, config), name: name}
	r.Process.Name = "fanout replica " + name
	return r
}

// clPost POSTs a C2C.CallbackAfterSendMsg callback to addr and returns the status (0 when no
// answer came) and whether the answer is the OK JSON.
func clPost(addr string, body []byte) (int, bool) {
	a := fanouttest.PostCallback(addr, c2cQuery, body)
	return a.Status, a.OK()
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
	status, answer := fanouttest.Do(method, "http://"+r.Admin+path, clToken, b)
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

// delivered is the replica's fanout_deliveries_total of destination, outcome delivered.
func (r *clReplica) delivered(t testing.TB, destination string) float64 {
	t.Helper()
	return r.Metrics(t, clToken).Sum("fanout_deliveries_total", map[string]string{"destination": destination, "outcome": "delivered"})
}

// clConfig writes the replicas' config (both read the same file) for a cluster of nodes:
// queue.url lists every node, replicas 3, the admin API behind clToken. rest holds the
// defaults, destinations and routes.
func clConfig(t testing.TB, nodes []*clNode, rest string) string {
	t.Helper()
	urls := make([]string, len(nodes))
	for i, nd := range nodes {
		urls[i] = nd.URL()
	}
	return fanouttest.WriteConfig(t, fmt.Sprintf(`server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: %s}
tencent:
  apps: [{sdkappid: %s}]
queue:
  url: %q
  replicas: 3
`, clToken, fanouttest.App, strings.Join(urls, ", "))+rest)
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
		if _, ok := clPost(r.Listen, body); ok {
			return r, refused
		}
		refused++
		time.Sleep(20 * time.Millisecond) // pacing between tries, not a wait for a condition
	}
	return nil, refused
}

// clFirstDeliveries returns, by MsgKey, when rc first answered a request 2xx.
func clFirstDeliveries(rc *fanouttest.Receiver) map[string]fanouttest.Request {
	first := map[string]fanouttest.Request{}
	for _, h := range rc.Requests() {
		if h.Status < 200 || h.Status > 299 {
			continue
		}
		if _, ok := first[fanouttest.MsgKey(h.Body)]; !ok {
			first[fanouttest.MsgKey(h.Body)] = h
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

// clEnv is the cluster that TestCluster's steps share: each step leaves it as the next
// one expects.
type clEnv struct {
	nodes   []*clNode
	a, b    *clReplica
	sink    *fanouttest.Receiver // every callback not sent to another destination; slow until replica a dies
	limited *fanouttest.Receiver // rate_limit 5/s per replica: 10/s for the cluster
	reject  *fanouttest.Receiver // answers 400 until the dead letter is replayed
	slow    *fanouttest.Receiver // concurrency 4 per replica; each answer takes 100 ms
}

// TestCluster runs two fanout replicas (the real binary) on a three-node nats-server
// cluster with queue.replicas 3, and checks docs/cluster.md step by step: the streams are
// replicated; a rate-limited destination gets everything through both replicas and
// concurrency is per replica; a dead letter made through one replica is replayed through the other;
// a replica and then a NATS node die under load without losing an acknowledged callback,
// the dead replica's deliveries being made by the other after the ack wait; and while the
// cluster is unreachable callbacks are answered 503, never OK, and /readyz is 503.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fanout, runs three nats-server and two fanout processes")
	}
	bin := fanouttest.FanoutBinary(t)
	e := &clEnv{
		nodes:   clStartCluster(t, 3),
		limited: fanouttest.NewReceiver(t, nil),
		// Until replica a is killed, each delivery takes a while, so that a has some in
		// flight then. The receiver notes the arrival before: measured delays exclude it.
		sink:   fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Delay: 100 * time.Millisecond, Body: "ok"})),
		reject: fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Status: http.StatusBadRequest, Body: `{"error":"unknown account"}`})),
		// A slow receiver, so that deliveries overlap.
		slow: fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Delay: 100 * time.Millisecond, Body: "ok"})),
	}
	// No quick retries (backoff.initial above delivery.QuickRetryMax) and a 2 s timeout:
	// the ack wait is then 2 s + 30 s, the time a dead replica's deliveries wait.
	config := clConfig(t, e.nodes, fmt.Sprintf(`defaults:
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
		{"rate-limited deliveries through both replicas", clStepRateLimit},
		{"concurrency is per replica", clStepConcurrency},
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
		if s := r.Readyz(); s != http.StatusOK {
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
			t.Errorf("stream %s is not on %s", name, e.nodes[0].Name)
			continue
		}
		if s.Config.Replicas != 3 || s.Cluster.Leader == "" || len(s.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: %d replicas, leader %q, %d other peers; want 3, a leader and 2",
				name, s.Config.Replicas, s.Cluster.Leader, len(s.Cluster.Replicas))
		}
	}
}

// clStepRateLimit: a destination at rate_limit 5/s on each of two replicas gets every
// callback sent to it, delivered through both replicas. The pace (10/s for the cluster) is
// a timing, measured by BenchmarkCluster/rate-limit rather than asserted here.
func clStepRateLimit(t *testing.T, e *clEnv) {
	const n = 60
	keys := clSendAll(t, []*clReplica{e.a, e.b}, "limited", n)
	fanouttest.WaitForNone(t, clClusterWait, "the rate-limited deliveries", func() []string { return e.limited.Missing(keys) })
	var byA, byB float64
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, fmt.Sprintf("the replicas to count %d deliveries", n), func() bool {
		byA, byB = e.a.delivered(t, "limited"), e.b.delivered(t, "limited")
		return byA+byB == n
	})
	t.Logf("rate limit 5/s per replica: %d deliveries, by a: %g, by b: %g", n, byA, byB)
}

// clStepConcurrency: a destination's concurrency bounds the requests in flight from each
// replica (its slots), so the slow receiver never has more than twice that at once from
// the two.
func clStepConcurrency(t *testing.T, e *clEnv) {
	const n = 40
	keys := clSendAll(t, []*clReplica{e.a, e.b}, "slow", n)
	fanouttest.WaitForNone(t, clClusterWait, "the slow deliveries", func() []string { return e.slow.Missing(keys) })
	if most := e.slow.MaxInFlight(); most > 2*4 {
		t.Errorf("slow had %d requests in flight at once, want at most its concurrency 4 from each of the two replicas", most)
	}
	t.Logf("concurrency 4: at most %d requests in flight at the receiver; delivered by a: %g, by b: %g",
		e.slow.MaxInFlight(), e.a.delivered(t, "slow"), e.b.delivered(t, "slow"))
}

// clSendAll sends n callbacks to To_Account to, from three senders spread over replicas,
// each until it is answered OK, and returns their MsgKeys.
func clSendAll(t testing.TB, replicas []*clReplica, to string, n int) []string {
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
	if _, ok := clPost(e.a.Listen, clBody(key, "reject", time.Now())); !ok {
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
	fanouttest.WaitFor(t, clClusterWait, "the dead letter, listed by replica a", func() bool {
		e.a.api(t, http.MethodGet, "/api/v1/dlq?destination=reject", nil, &dlq)
		return len(dlq.Items) > 0
	})
	if len(dlq.Items) != 1 || dlq.Items[0].Reason != "status 400" || dlq.Items[0].LastStatus != 400 {
		t.Fatalf("dead letters of reject: %+v, want one with reason \"status 400\"", dlq.Items)
	}
	id := dlq.Items[0].ID

	e.reject.SetAnswer(nil)
	var replay struct {
		Replayed []uint64        `json:"replayed"`
		Errors   json.RawMessage `json:"errors"`
	}
	e.b.api(t, http.MethodPost, "/api/v1/dlq/replay", map[string]any{"filter": map[string]string{"destination": "reject"}}, &replay)
	if !slices.Equal(replay.Replayed, []uint64{id}) {
		t.Fatalf("replay through b: replayed %v (errors %s), want [%d]", replay.Replayed, replay.Errors, id)
	}
	fanouttest.WaitFor(t, clClusterWait, "the replayed delivery", func() bool { return e.reject.Delivered()[key] == 1 })
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the dead-letter queue of reject to be empty, seen from a", func() bool {
		e.a.api(t, http.MethodGet, "/api/v1/dlq?destination=reject", nil, &dlq)
		return len(dlq.Items) == 0
	})
	var statuses []int
	for _, h := range e.reject.Requests() {
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
					if _, ok := clPost(r.Listen, body); ok {
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

	fanouttest.WaitFor(t, clClusterWait, "a quarter of the load to be acknowledged", func() bool { return ackedN.Load() >= killReplica })
	e.a.Kill(t)
	replicaKilled := time.Now()
	e.sink.SetAnswer(nil)
	alive.Store(&[]*clReplica{e.b}) // the load balancer's health check took a out

	fanouttest.WaitFor(t, clClusterWait, "half of the load to be acknowledged", func() bool { return ackedN.Load() >= killNode })
	node := clStreamLeader(t, e.nodes, "FANOUT_JOBS")
	node.Kill(t)
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
	fanouttest.WaitForNone(t, clClusterWait, "every acknowledged callback at the sink", func() []string { return e.sink.Missing(keys) })
	// The deliveries that a had in flight stay in the queue until b makes them again.
	fanouttest.WaitFor(t, clClusterWait, "the sink's queue to be empty", func() bool { return e.b.pending(t, "sink") == 0 })

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
	for key, n := range e.sink.Delivered() {
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
		total, byReplica["a"], byReplica["b"], killReplica, node.Name, killNode)
	t.Logf("failover: %d deliveries for %d callbacks: %d duplicates (redeliveries of interrupted attempts), by nearest interruption: %v",
		e.sink.Count(), len(first), duplicates, near)
	// The sink answers every attempt 200, so a second attempt is a redelivery: of a delivery
	// that replica a had in flight when it died (sent before), made by b after the ack wait.
	var redelivered []time.Duration
	for _, h := range e.sink.Requests() {
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
	for _, h := range e.sink.Requests() {
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
				statuses[i], ok = clPost(b.Listen, clBody(fmt.Sprintf("%s-%d", prefix, i), "all", time.Now()))
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
		if nd.Running() {
			up = append(up, nd)
		}
	}
	if len(up) != 2 {
		t.Fatalf("%d NATS nodes up, want 2 after the failover step", len(up))
	}
	up[0].Kill(t)
	quorumLost := notOK("quorum-lost")

	up[1].Kill(t)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "replica b's /readyz to answer 503", func() bool { return b.Readyz() == http.StatusServiceUnavailable })
	disconnected := notOK("disconnected")
	for _, s := range disconnected {
		if s != http.StatusServiceUnavailable {
			t.Errorf("a callback while disconnected was answered %d, want 503", s)
		}
	}
	if s, _ := fanouttest.Do(http.MethodGet, "http://"+b.Admin+"/healthz", "", nil); s != http.StatusOK {
		t.Errorf("/healthz while disconnected: %d, want 200 (the process is alive)", s)
	}

	outage := time.Now()
	for _, nd := range e.nodes {
		nd.Start(t)
	}
	clWaitHealthy(t, e.nodes...)
	fanouttest.WaitFor(t, clClusterWait, "replica b's /readyz to answer 200", func() bool { return b.Readyz() == http.StatusOK })
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
	fanouttest.WaitForNone(t, clClusterWait, "the callbacks acknowledged after the restart", func() []string { return e.sink.Missing(keys) })
	t.Logf("unreachable: answers with 2 of 3 nodes down %v, with all down %v; ready %s after the restart; "+
		"%d callbacks then delivered (%d answers not OK before the streams were back)",
		quorumLost, disconnected, ready.Round(time.Millisecond), n, refused)
}

// BenchmarkCluster measures, on a three-node nats-server cluster (queue.replicas 3):
//
//   - replicas=1, replicas=2: the callbacks per second that one fanout replica answers OK,
//     then two: a burst of callbacks with unique MsgKeys from 32 senders, spread over the
//     replicas, with the answer delay and the rate at which the sink then has them all. On a
//     machine with few cores the replicas, the nodes and the load share the same CPUs, so a
//     second replica is not expected to add much.
//
//   - rate-limit: the pace two replicas deliver at to a destination with rate_limit 5/s,
//     which is per replica: 10/s for the cluster, and at most 10/s * 3 s + 2 (each replica's
//     first token) within any 3 s.
//
//     go test -run '^$' -bench Cluster -benchtime 3x ./test/e2e/
func BenchmarkCluster(b *testing.B) {
	bin := fanouttest.FanoutBinary(b)
	nodes := clStartCluster(b, 3)
	sink := fanouttest.NewReceiver(b, nil)
	limited := fanouttest.NewReceiver(b, nil)
	config := clConfig(b, nodes, fmt.Sprintf(`destinations:
  sink: {url: %q}
  limited: {url: %q, concurrency: 4, rate_limit: 5/s}
routes:
  - {name: limited, commands: [C2C.CallbackAfterSendMsg], when: 'To_Account == "limited"', to: [limited], stop: true}
  - {name: all, to: [sink]}
`, sink.URL(), limited.URL()))
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
							_, ok[i] = clPost(replicas[i%n].Listen, clBody(keys[i], "all", sent))
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
				fanouttest.WaitForNone(b, clClusterWait, "the burst at the sink", func() []string { return sink.Missing(stored) })
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
	b.Run("rate-limit", func(b *testing.B) {
		const n = 60
		replicas := []*clReplica{clStartReplica(b, "a", bin, config), clStartReplica(b, "b", bin, config)}
		var most int
		var rate float64
		for b.Loop() {
			before := limited.Count()
			keys := clSendAll(b, replicas, "limited", n)
			fanouttest.WaitForNone(b, clClusterWait, "the rate-limited deliveries", func() []string { return limited.Missing(keys) })
			var at []time.Time
			for _, h := range limited.Requests()[before:] {
				at = append(at, h.At)
			}
			most = max(most, fanouttest.MostWithin(at, 3*time.Second))
			rate = float64(len(at)-1) / at[len(at)-1].Sub(at[0]).Seconds()
		}
		b.ReportMetric(float64(most), "most-in-3s")
		b.ReportMetric(rate, "delivered/s")
	})
}
