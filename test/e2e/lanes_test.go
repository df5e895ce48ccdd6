package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Ordered delivery (order_by) through the real binary: a kill -9 under load on the embedded
// queue, and two replicas sharing the lanes on an external nats-server.

// laneBody is a C2C message of conversation from -> "peer" whose MsgKey is key.
func laneBody(from, key string) []byte {
	return fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":%q,"To_Account":"peer",`+
		`"MsgKey":%q,"SendMsgResult":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`, from, key)
}

// flakyReceiver answers 503 to a fifth of the attempts, at random, each after 0 to
// maxDelay.
func flakyReceiver(t *testing.T, maxDelay time.Duration) *fanouttest.Receiver {
	return fanouttest.NewReceiver(t, func(fanouttest.Request) fanouttest.Answer {
		a := fanouttest.Answer{Delay: rand.N(maxDelay + 1)}
		if rand.IntN(5) == 0 {
			a.Status = http.StatusServiceUnavailable
		}
		return a
	})
}

// laneOrder compares, per key (the MsgKey before its "-"), what rc accepted (2xx) in the
// order it received them, repeats one after the other collapsed, with the order sent. It
// returns the problems (at most 10), the duplicates, and when rc first accepted each MsgKey.
func laneOrder(rc *fanouttest.Receiver, sent map[string][]string) (problems []string, duplicates int, first map[string]time.Time) {
	got := map[string][]string{}
	first = map[string]time.Time{}
	for _, r := range rc.Requests() {
		if r.Status < 200 || r.Status > 299 {
			continue
		}
		msg := fanouttest.MsgKey(r.Body)
		key, _, _ := strings.Cut(msg, "-")
		if l := got[key]; len(l) > 0 && l[len(l)-1] == msg {
			duplicates++
			continue
		}
		if _, ok := first[msg]; ok {
			problems = append(problems, fmt.Sprintf("%s accepted again after a later one of its key", msg))
		} else {
			first[msg] = r.At
		}
		got[key] = append(got[key], msg)
	}
	for key, want := range sent {
		if !slices.Equal(got[key], want) {
			i := 0
			for i < len(want) && i < len(got[key]) && got[key][i] == want[i] {
				i++
			}
			problems = append(problems, fmt.Sprintf("key %s: accepted %d in order, then %v, want %v", key, i,
				got[key][i:min(i+3, len(got[key]))], want[i:min(i+3, len(want))]))
		}
	}
	slices.Sort(problems)
	return problems[:min(len(problems), 10)], duplicates, first
}

// deliveredBy counts the MsgKeys first accepted up to at.
func deliveredBy(first map[string]time.Time, at time.Time) int {
	n := 0
	for _, t := range first {
		if !t.After(at) {
			n++
		}
	}
	return n
}

// lastAt is the last of the times in first.
func lastAt(first map[string]time.Time) time.Time {
	var last time.Time
	for _, t := range first {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// TestOrderedDeliveryAcrossKill: 20 conversations, 100 callbacks each, sent one after the
// other per conversation (the next once the previous is answered OK), to a destination with
// order_by and to one without, each with concurrency 8, whose receivers answer 503 to a fifth
// of the attempts and take 0 to 20 ms. The gateway is killed (SIGKILL) once half the
// callbacks are accepted, and started again on the same queue. Per conversation, the ordered
// receiver accepts the callbacks in the order they were sent, a callback at most repeated
// right after itself (an attempt the kill cut short, made again). It logs the duplicates, and
// the deliveries per second of both destinations before the kill (both behind the same
// backlog) and after the restart.
func TestOrderedDeliveryAcrossKill(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 callbacks through the real binary, killed once")
	}
	const (
		keys     = 20
		perKey   = 100
		total    = keys * perKey
		interval = 15 * time.Millisecond // between two callbacks of a conversation: about 1,300/s in all
	)
	bin := fanouttest.FanoutBinary(t)
	ordered, unordered := flakyReceiver(t, 20*time.Millisecond), flakyReceiver(t, 20*time.Millisecond)
	config := fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
defaults:
  concurrency: 8
  timeout: 2s
  retry: {max_attempts: 100, backoff: {initial: 20ms, max: 500ms, multiplier: 2, jitter: 0.2}}
destinations:
  ordered:
    url: %q
    order_by: GroupId ?? (From_Account + ":" + To_Account)
  unordered:
    url: %q
routes:
  - name: all
    to: [ordered, unordered]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "data")), ordered.URL(), unordered.URL()))

	first := fanouttest.StartFanout(t, bin, config)
	var addr atomic.Pointer[string]
	addr.Store(&first.Listen)
	sent := make(map[string][]string, keys)
	var (
		mu       sync.Mutex
		accepted atomic.Int64
		refused  atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	for k := range keys {
		key := fmt.Sprintf("u%02d", k)
		wg.Go(func() {
			for i := range perKey {
				msg := fmt.Sprintf("%s-%03d", key, i)
				body := laneBody(key, msg)
				for tries := 0; ; tries++ {
					if tries == 1000 || time.Now().After(deadline) {
						t.Errorf("%s: never answered OK", msg)
						return
					}
					if fanouttest.PostCallback(*addr.Load(), c2cQuery, body).OK() {
						break
					}
					refused.Add(1)
					time.Sleep(20 * time.Millisecond) // pacing between tries, not a wait for a condition
				}
				mu.Lock()
				sent[key] = append(sent[key], msg)
				mu.Unlock()
				accepted.Add(1)
				time.Sleep(interval) // load shaping
			}
		})
	}
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()

	fanouttest.WaitFor(t, time.Minute, "half the callbacks accepted", func() bool { return accepted.Load() >= total/2 })
	first.Kill(t)
	killed := time.Now()
	second := fanouttest.StartFanout(t, bin, config)
	addr.Store(&second.Listen)
	restarted := time.Now()
	select {
	case <-loadDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("the load did not finish")
	}
	if t.Failed() {
		return
	}
	all := func(rc *fanouttest.Receiver) func() []string {
		return func() []string {
			got := rc.Delivered()
			var missing []string
			for _, msgs := range sent {
				for _, m := range msgs {
					if got[m] == 0 {
						missing = append(missing, m)
					}
				}
			}
			slices.Sort(missing)
			return missing[:min(len(missing), 10)]
		}
	}
	fanouttest.WaitForNone(t, time.Minute, "every callback at the ordered receiver", all(ordered))
	// The unordered destination's deliveries in the killed process's hands wait for the ack
	// wait (15 s) before they are handed out again.
	fanouttest.WaitForNone(t, time.Minute, "every callback at the unordered receiver", all(unordered))

	problems, dupOrdered, firstOrdered := laneOrder(ordered, sent)
	if len(problems) > 0 {
		t.Errorf("the ordered receiver did not get each conversation in order:\n%s", strings.Join(problems, "\n"))
	}
	_, dupUnordered, firstUnordered := laneOrder(unordered, nil)
	rate := func(first map[string]time.Time, from, to time.Time) float64 {
		return float64(deliveredBy(first, to)-deliveredBy(first, from)) / to.Sub(from).Seconds()
	}
	attempts := func(rc *fanouttest.Receiver) (n, failed int) {
		for _, r := range rc.Requests() {
			n++
			if r.Status != http.StatusOK {
				failed++
			}
		}
		return n, failed
	}
	oa, of := attempts(ordered)
	ua, uf := attempts(unordered)
	t.Logf("ordered: %d conversations x %d callbacks, sent in order by conversation (%d answers not OK around the kill); "+
		"killed after %d accepted, %s into the run; restarted in %s",
		keys, perKey, refused.Load(), total/2, killed.Sub(start).Round(time.Millisecond), restarted.Sub(killed).Round(time.Millisecond))
	t.Logf("ordered: every conversation accepted in the order sent: %v; duplicates: ordered %d, unordered %d; "+
		"attempts: ordered %d (%d refused), unordered %d (%d refused)",
		len(problems) == 0, dupOrdered, dupUnordered, oa, of, ua, uf)
	t.Logf("ordered: before the kill (%s): ordered %.0f deliveries/s, unordered %.0f/s",
		killed.Sub(start).Round(time.Millisecond), rate(firstOrdered, start, killed), rate(firstUnordered, start, killed))
	lastO, lastU := lastAt(firstOrdered), lastAt(firstUnordered)
	t.Logf("ordered: after the restart: ordered %.0f deliveries/s, all delivered %s after the restart; "+
		"unordered %.0f/s, all delivered %s after the restart (the last after the ack wait)",
		rate(firstOrdered, restarted, lastO), lastO.Sub(restarted).Round(time.Millisecond),
		rate(firstUnordered, restarted, lastU), lastU.Sub(restarted).Round(time.Millisecond))
	t.Logf("ordered: whole run: ordered %.0f deliveries/s, unordered %.0f/s (first send to last first delivery)",
		float64(total)/lastO.Sub(start).Seconds(), float64(total)/lastU.Sub(start).Seconds())
}

// laneReplica reads the lane partitions a replica consumes, from its admin API.
func laneReplica(t *testing.T, r *clReplica) []int {
	t.Helper()
	var l struct {
		Consuming []struct {
			Partitions []int `json:"partitions"`
		} `json:"consuming"`
	}
	status, body := fanouttest.Do(http.MethodGet, "http://"+r.Admin+"/api/v1/lanes", clToken, nil)
	if status != http.StatusOK {
		return nil // being killed
	}
	if err := json.Unmarshal(body, &l); err != nil || len(l.Consuming) != 1 {
		t.Fatalf("replica %s: GET /api/v1/lanes: %v\n%s", r.name, err, body)
	}
	return l.Consuming[0].Partitions
}

// TestLanesTwoReplicas: two replicas on one nats-server share the lane partitions of an
// ordered destination (eight each, never one partition in both), both accept callbacks, and
// one is killed (SIGKILL) halfway: the other takes its partitions over when their leases
// expire, and every conversation is accepted in order by the receiver.
func TestLanesTwoReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a nats-server and two fanout processes")
	}
	const (
		keys   = 10
		perKey = 60
		total  = keys * perKey
	)
	bin := fanouttest.FanoutBinary(t)
	nats := fanouttest.StartNATSServer(t, "lanes")
	rc := flakyReceiver(t, 10*time.Millisecond)
	config := fanouttest.WriteConfig(t, fmt.Sprintf(`server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0", token: %s}
tencent:
  apps: [{sdkappid: %s}]
queue: {url: %q}
destinations:
  app:
    url: %q
    order_by: From_Account
    concurrency: 4
    timeout: 2s
    retry: {max_attempts: 100, backoff: {initial: 20ms, max: 200ms, multiplier: 2, jitter: 0.2}}
routes:
  - name: all
    to: [app]
`, clToken, fanouttest.App, nats.URL(), rc.URL()))
	a := clStartReplica(t, "a", bin, config)
	b := clStartReplica(t, "b", bin, config)
	// shared reads a's partitions before and after b's: a partition in all three reads was
	// consumed by both at once (a hands partitions over one lease round apart, not within
	// the milliseconds between two reads).
	shared := func() (pa, pb []int) {
		before := laneReplica(t, a)
		pb = laneReplica(t, b)
		pa = laneReplica(t, a)
		for _, p := range pb {
			if slices.Contains(before, p) && slices.Contains(pa, p) {
				t.Fatalf("partition %d consumed by both replicas (a %v, b %v)", p, pa, pb)
			}
		}
		return pa, pb
	}
	var split []int
	fanouttest.WaitFor(t, time.Minute, "the replicas to share the partitions", func() bool {
		pa, pb := shared()
		split = []int{len(pa), len(pb)}
		return len(pa) == 8 && len(pb) == 8
	})

	sent := map[string][]string{}
	var (
		mu       sync.Mutex
		accepted atomic.Int64
		alive    atomic.Pointer[[]*clReplica]
		wg       sync.WaitGroup
	)
	alive.Store(&[]*clReplica{a, b})
	deadline := time.Now().Add(2 * time.Minute)
	for k := range keys {
		key := fmt.Sprintf("k%02d", k)
		wg.Go(func() {
			for i := range perKey {
				msg := fmt.Sprintf("%s-%03d", key, i)
				for try := 0; ; try++ {
					if try == 1000 || time.Now().After(deadline) {
						t.Errorf("%s: never answered OK", msg)
						return
					}
					reps := *alive.Load()
					if _, ok := clPost(reps[(i+try)%len(reps)].Listen, laneBody(key, msg)); ok {
						break
					}
					time.Sleep(20 * time.Millisecond) // pacing between tries
				}
				mu.Lock()
				sent[key] = append(sent[key], msg)
				mu.Unlock()
				accepted.Add(1)
				time.Sleep(10 * time.Millisecond) // load shaping
			}
		})
	}
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()

	fanouttest.WaitFor(t, time.Minute, "half the callbacks accepted", func() bool {
		shared()
		return accepted.Load() >= total/2
	})
	byA := a.delivered(t, "app")
	a.Kill(t)
	killed := time.Now()
	alive.Store(&[]*clReplica{b})
	fanouttest.WaitFor(t, time.Minute, "replica b to consume every partition", func() bool { return len(laneReplica(t, b)) == 16 })
	takeover := time.Since(killed)
	select {
	case <-loadDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("the load did not finish")
	}
	if t.Failed() {
		return
	}
	fanouttest.WaitForNone(t, time.Minute, "every callback at the receiver", func() []string {
		got := rc.Delivered()
		var missing []string
		for _, msgs := range sent {
			for _, m := range msgs {
				if got[m] == 0 {
					missing = append(missing, m)
				}
			}
		}
		return missing[:min(len(missing), 10)]
	})
	problems, duplicates, _ := laneOrder(rc, sent)
	if len(problems) > 0 {
		t.Errorf("the receiver did not get each conversation in order:\n%s", strings.Join(problems, "\n"))
	}
	t.Logf("two replicas: partitions split %v; %d conversations x %d callbacks; replica a delivered %g before it was killed "+
		"halfway; b consumed all 16 partitions %s after the kill (lease TTL 12 s); in order: %v; duplicates: %d",
		split, keys, perKey, byA, takeover.Round(time.Millisecond), len(problems) == 0, duplicates)
}
