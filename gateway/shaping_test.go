package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Tests of how Fanout shapes what it sends to systems it sits in front of: the Tencent
// query and Sign for a backend that verifies them, a rate limit, and the pause of a
// destination that keeps failing.

// rsCheckSign verifies a request's query the way Tencent documents it for an app backend:
// Sign must be the hex SHA-256 of token + RequestTime, and RequestTime (Unix seconds)
// within 60 s of now.
func rsCheckSign(q url.Values, token string, now time.Time) error {
	sign, rt := q.Get("Sign"), q.Get("RequestTime")
	if sign == "" || rt == "" {
		return errors.New("Sign or RequestTime missing")
	}
	want := fanouttest.Sign(token, rt)
	if subtle.ConstantTimeCompare([]byte(sign), []byte(want)) != 1 {
		return fmt.Errorf("Sign %s does not verify with the token", sign)
	}
	sec, err := strconv.ParseInt(rt, 10, 64)
	if err != nil {
		return fmt.Errorf("RequestTime %q: %v", rt, err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > time.Minute || d < -time.Minute {
		return fmt.Errorf("RequestTime %s is %s from now", rt, d)
	}
	return nil
}

// TestForwardQueryResigned: a backend that checks Sign like Tencent documents it accepts
// what Fanout forwards with forward_query + tim_token, synchronously (respond) and
// asynchronously, and sees the query keys and the body of the original callback; without
// tim_token Sign and RequestTime are removed.
func TestForwardQueryResigned(t *testing.T) {
	const (
		tencentToken = "token-of-the-im-console"
		backendToken = "token-the-backend-checks"
	)
	verified := `{"ActionStatus":"OK","ErrorInfo":"signature verified","ErrorCode":0}`
	resigned := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		q, _ := url.ParseQuery(r.RawQuery)
		if err := rsCheckSign(q, backendToken, time.Now()); err != nil {
			return fanouttest.Answer{Status: http.StatusUnauthorized,
				Body: fmt.Sprintf(`{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":%q}`, err.Error())}
		}
		return fanouttest.Answer{Body: verified}
	})
	stripped := fanouttest.NewReceiver(t, nil)
	g := startGateway(t, writeQueueConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: 1400000000, token: %q}]
queue: {dir: QUEUE_DIR}
defaults:
  retry: {max_attempts: 3, backoff: {initial: 50ms, max: 100ms, multiplier: 2, jitter: 0}}
destinations:
  resigned: {url: %q, forward_query: true, tim_token: %q}
  stripped: {url: %q, forward_query: true}
routes:
  - name: all
    to: [resigned, stripped]
respond:
  - {commands: [C2C.CallbackBeforeSendMsg], from: resigned, timeout: 1500ms, on_failure: deny}
`, tencentToken, resigned.URL(), backendToken, stripped.URL())))

	keys := []string{"SdkAppid", "CallbackCommand", "contenttype", "ClientIP", "OptPlatform"}
	type sentCallback struct {
		query url.Values
		body  []byte
	}
	var sent []sentCallback
	for _, tc := range []struct{ payload, want string }{
		{"C2C.CallbackAfterSendMsg.json", rsDecision(0)}, // queued for both, answered OK
		{"C2C.CallbackBeforeSendMsg.json", verified},     // answered by resigned, queued for stripped
	} {
		body := fanouttest.Payload(t, tc.payload)
		var head struct{ CallbackCommand string }
		if err := json.Unmarshal(body, &head); err != nil {
			t.Fatal(err)
		}
		rt := strconv.FormatInt(time.Now().Unix(), 10)
		raw := "SdkAppid=1400000000&CallbackCommand=" + head.CallbackCommand + "&contenttype=json" +
			"&ClientIP=" + url.QueryEscape("2001:db8::7") + "&OptPlatform=iOS" +
			"&Sign=" + fanouttest.Sign(tencentToken, rt) + "&RequestTime=" + rt
		q, _ := url.ParseQuery(raw)
		if err := rsCheckSign(q, backendToken, time.Now()); err == nil {
			t.Fatal("the backend's check accepts Tencent's own Sign: it proves nothing")
		}
		if a := callback(t, g, raw, body); a.Status != http.StatusOK || string(a.Body) != tc.want {
			t.Fatalf("%s: answered %d %s, want 200 %s", tc.payload, a.Status, a.Body, tc.want)
		}
		sent = append(sent, sentCallback{q, body})
	}

	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "every copy", func() bool {
		return len(resigned.WithBody(sent[0].body)) > 0 && len(stripped.WithBody(sent[0].body)) > 0 && len(stripped.WithBody(sent[1].body)) > 0
	})
	for _, r := range resigned.Requests() {
		q, err := url.ParseQuery(r.RawQuery)
		if err != nil {
			t.Fatalf("resigned: query %q: %v", r.RawQuery, err)
		}
		i := slices.IndexFunc(sent, func(s sentCallback) bool { return string(s.body) == string(r.Body) })
		if i < 0 {
			t.Fatalf("resigned: a body that was never sent: %.80s", r.Body)
		}
		if r.Status != http.StatusOK {
			t.Errorf("resigned: the Sign check refused %s (query %s)", sent[i].query.Get("CallbackCommand"), r.RawQuery)
		}
		for _, k := range keys {
			if q.Get(k) != sent[i].query.Get(k) || len(q[k]) != 1 {
				t.Errorf("resigned: %s = %q, want %q as in the original", k, q[k], sent[i].query.Get(k))
			}
		}
		if q.Get("Sign") == sent[i].query.Get("Sign") {
			t.Error("resigned: Sign is Tencent's, not made for tim_token")
		}
		if len(q["Sign"]) != 1 || len(q["RequestTime"]) != 1 {
			t.Errorf("resigned: Sign %q RequestTime %q, want one of each", q["Sign"], q["RequestTime"])
		}
	}
	if n := resigned.Count(); n != 2 {
		t.Errorf("resigned got %d requests, want 2 (one answer, one queued copy)", n)
	}
	for _, r := range stripped.Requests() {
		q, err := url.ParseQuery(r.RawQuery)
		if err != nil {
			t.Fatalf("stripped: query %q: %v", r.RawQuery, err)
		}
		i := slices.IndexFunc(sent, func(s sentCallback) bool { return string(s.body) == string(r.Body) })
		if i < 0 {
			t.Fatalf("stripped: a body that was never sent: %.80s", r.Body)
		}
		for _, k := range keys {
			if q.Get(k) != sent[i].query.Get(k) {
				t.Errorf("stripped: %s = %q, want %q as in the original", k, q.Get(k), sent[i].query.Get(k))
			}
		}
		if q.Has("Sign") || q.Has("RequestTime") {
			t.Errorf("stripped: query %s still has Sign or RequestTime", r.RawQuery)
		}
	}
}

// rsRateLimitConfig sends every callback to a destination limited to 10/s and to one
// without a limit.
const rsRateLimitConfig = `
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: 1400000000}]
queue: {dir: QUEUE_DIR}
defaults:
  concurrency: 4
destinations:
  limited: {url: %q, rate_limit: 10/s}
  unlimited: {url: %q}
routes:
  - name: all
    to: [limited, unlimited]
`

// TestRateLimitedDestination: a destination limited to 10/s is paced by a limiter of 10 per
// second (whose pace delivery's tests read on a virtual clock) and gets every callback
// once, after a destination without a limit that gets the same callbacks and is not slowed
// by it. BenchmarkRateLimitedDestination measures the pace a receiver sees.
func TestRateLimitedDestination(t *testing.T) {
	const n = 60
	limited, unlimited := fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil)
	g := startGateway(t, writeQueueConfig(t, fmt.Sprintf(rsRateLimitConfig, limited.URL(), unlimited.URL())))
	dests := g.live.Load().dests
	if l, ok := dests["limited"].RateLimit.(*delivery.RateLimit); !ok || !l.Same(10, time.Second) {
		t.Errorf("limited is paced by %v, want a rate limit of 10 per second", dests["limited"].RateLimit)
	}
	if l := dests["unlimited"].RateLimit; l != nil {
		t.Errorf("unlimited is paced by %v, want no rate limit", l)
	}

	for i := range n {
		acceptMessage(t, g, "rate-"+strconv.Itoa(i))
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "every callback at the unlimited destination", func() bool { return unlimited.Count() >= n })
	limitedThen := limited.Count()
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "every callback at the limited destination", func() bool { return limited.Count() >= n })

	if limitedThen >= n {
		t.Errorf("the unlimited destination had all %d callbacks only once the limited one had them too: it was slowed", n)
	}
	if got, keys := limited.Count(), limited.Keys(); got != n || len(keys) != n {
		t.Errorf("limited got %d requests for %d callbacks, want %d for %d", got, len(keys), n, n)
	}
	t.Logf("%d callbacks: the limited destination had %d when the unlimited one had them all", n, limitedThen)
}

// BenchmarkRateLimitedDestination measures the pace at which a destination limited to 10/s
// receives bursts of 60 callbacks: its rate, and the most requests it saw within any 1 s
// and any 3 s (10 and 30 at an exact pace; the receiver's clock, which reads each request
// a little late or early, can see one more).
//
//	go test -run '^$' -bench RateLimitedDestination ./gateway/
func BenchmarkRateLimitedDestination(b *testing.B) {
	const n = 60
	limited, unlimited := fanouttest.NewReceiver(b, nil), fanouttest.NewReceiver(b, nil)
	g := startGateway(b, writeQueueConfig(b, fmt.Sprintf(rsRateLimitConfig, limited.URL(), unlimited.URL())))
	var most1, most3 int
	var rate float64
	round := 0
	for b.Loop() {
		round++
		before := limited.Count()
		var keys []string
		for i := range n {
			key := fmt.Sprintf("rate-%d-%d", round, i)
			keys = append(keys, key)
			acceptMessage(b, g, key)
		}
		fanouttest.WaitForNone(b, fanouttest.WaitTimeout, "every callback at the limited destination", func() []string { return limited.Missing(keys) })
		var at []time.Time
		for _, r := range limited.Requests()[before:] {
			at = append(at, r.At)
		}
		slices.SortFunc(at, time.Time.Compare)
		most1 = max(most1, fanouttest.MostWithin(at, time.Second))
		most3 = max(most3, fanouttest.MostWithin(at, 3*time.Second))
		rate = float64(len(at)-1) / at[len(at)-1].Sub(at[0]).Seconds()
	}
	b.ReportMetric(rate, "delivered/s")
	b.ReportMetric(float64(most1), "most-in-1s")
	b.ReportMetric(float64(most3), "most-in-3s")
}

// TestFailingDestinationPaused: destinations that fail for a minute (503, and a closed
// port) are paused, which shows in fanout_destination_paused and the destination's health;
// they resume when the endpoint answers again, with every delivery made once, and with far
// fewer attempts than the same policy makes without the pause. The breaker is always on in
// the gateway, so the figure without it comes from delivery.Workers run beside it on the
// same failing endpoint for the same minute, one with a Breaker and one without, each
// consuming its own destination of a real embedded queue, with the gateway's policy and
// concurrency.
func TestFailingDestinationPaused(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 80 s: the endpoint fails for a minute")
	}
	const (
		failFor     = time.Minute
		jobs        = 20
		concurrency = 8
	)
	// Every failed round goes back to the queue for 6 s (a wait longer than
	// delivery.QuickRetryMax): the rounds are short and only the queue holds the retries.
	policy := delivery.Policy{MaxAttempts: 1000, Initial: 6 * time.Second, Max: 6 * time.Second, Multiplier: 1, MaxAge: time.Hour}
	const policyYAML = `{max_attempts: 1000, max_age: 1h, backoff: {initial: 6s, max: 6s, multiplier: 1, jitter: 0}}`

	// One endpoint that answers 503 until the minute is over, then 200; the callers are told
	// apart by the URL path.
	until := time.Now().Add(failFor)
	flaky := fanouttest.NewReceiver(t, func(fanouttest.Request) fanouttest.Answer {
		if time.Now().Before(until) {
			return fanouttest.Answer{Status: http.StatusServiceUnavailable}
		}
		return fanouttest.Answer{}
	})
	// counts returns the attempts at path, and how many keys were delivered once and more
	// than once.
	counts := func(path string) (attempts, once, more int) {
		delivered := map[string]int{}
		for _, r := range flaky.Requests() {
			if r.Path != path {
				continue
			}
			attempts++
			if r.Status >= 200 && r.Status <= 299 {
				delivered[fanouttest.MsgKey(r.Body)]++
			}
		}
		for _, n := range delivered {
			if n == 1 {
				once++
			} else {
				more++
			}
		}
		return attempts, once, more
	}

	// "down" refuses connections until the minute is over, then a receiver listens there.
	downAddr := fanouttest.FreeAddr(t)
	var down *fanouttest.Receiver

	g := startGateway(t, writeQueueConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: 1400000000}]
queue: {dir: QUEUE_DIR}
defaults:
  timeout: 2s
  concurrency: %d
  retry: %s
destinations:
  flaky: {url: %q}
  down: {url: %q}
routes:
  - name: all
    to: [flaky, down]
`, concurrency, policyYAML, flaky.URL()+"/gateway", "http://"+downAddr+"/hook")))

	// The delivery workers without and with a Breaker, on a queue of their own.
	q, err := queue.Open(context.Background(), queue.Options{Dir: t.TempDir(), DedupWindow: time.Minute,
		DeadLetterMaxAge: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("queue.Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	sender := delivery.NewSender(delivery.SenderOptions{Version: "rs-test"})
	breaker := delivery.NewBreaker(nil)
	for _, name := range []string{"nobreaker", "breaker"} {
		d, err := delivery.NewDestination(delivery.Destination{Name: name, URL: flaky.URL() + "/" + name, Timeout: 2 * time.Second, Policy: policy})
		if err != nil {
			t.Fatal(err)
		}
		w := &delivery.Worker{Queue: q, Sender: sender, Current: func() *delivery.Destination { return d },
			Logger: slog.New(slog.DiscardHandler)}
		if name == "breaker" {
			w.Breaker = breaker
		}
		c, err := q.Consume(context.Background(), name, queue.ConsumeOptions{Window: concurrency, AckWait: delivery.AckWait}, w.Handle)
		if err != nil {
			t.Fatalf("Consume: %v", err)
		}
		t.Cleanup(c.Stop)
	}

	var queued []queue.Job
	for i := range jobs {
		key := "pause-" + strconv.Itoa(i)
		for _, name := range []string{"nobreaker", "breaker"} {
			queued = append(queued, queue.Job{EventID: key, Destination: name, Query: c2cQuery,
				Body: fanouttest.C2CMessage(key), ReceivedAt: time.Now(), RequestID: key})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	if err := q.Enqueue(ctx, queued); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	for i := range jobs {
		acceptMessage(t, g, "pause-"+strconv.Itoa(i))
	}

	// Watch until every delivery is made, reopening "down" when the minute is over.
	sawPaused := map[string]bool{}
	deadline := time.Now().Add(failFor + 3*time.Minute)
	var lastScrape time.Time
	downDelivered := func() int {
		if down == nil {
			return 0
		}
		return len(down.Keys())
	}
	for {
		if time.Now().After(deadline) {
			_, gw, _ := counts("/gateway")
			_, nb, _ := counts("/nobreaker")
			_, br, _ := counts("/breaker")
			t.Fatalf("not every delivery was made %s after the endpoints recovered: flaky %d, nobreaker %d, breaker %d, down %d of %d",
				deadline.Sub(until), gw, nb, br, downDelivered(), jobs)
		}
		if down == nil && !time.Now().Before(until) {
			ln, err := net.Listen("tcp", downAddr)
			if err != nil {
				t.Fatalf("listening on %s again: %v", downAddr, err)
			}
			down = fanouttest.ServeReceiver(t, ln, nil)
		}
		if time.Since(lastScrape) >= time.Second {
			lastScrape = time.Now()
			for _, name := range []string{"flaky", "down"} {
				h := g.destinationHealth(name)
				if h.Paused && h.PausedUntil.After(lastScrape) && scrapeMetrics(t, g).Sum("fanout_destination_paused", map[string]string{"destination": name}) == 1 {
					sawPaused[name] = true
				}
			}
			if paused, _ := breaker.Paused(); paused {
				sawPaused["breaker"] = true
			}
		}
		_, gw, _ := counts("/gateway")
		_, nb, _ := counts("/nobreaker")
		_, br, _ := counts("/breaker")
		if gw == jobs && nb == jobs && br == jobs && downDelivered() == jobs {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	recovered := time.Since(until.Add(-failFor))

	for _, name := range []string{"flaky", "down", "breaker"} {
		if !sawPaused[name] {
			t.Errorf("%s was never seen paused (metric fanout_destination_paused = 1 and destinationHealth paused)", name)
		}
	}
	// Every delivery made once: none lost, and none made twice although jobs were held
	// unacknowledged during the pause for longer than their ack wait.
	without, _, nbMore := counts("/nobreaker")
	with, _, brMore := counts("/breaker")
	gateway, _, gwMore := counts("/gateway")
	downAttempts := int(scrapeMetrics(t, g).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "down"}))
	downMore := down.Count() - downDelivered()
	for name, more := range map[string]int{"nobreaker": nbMore, "breaker": brMore, "flaky": gwMore, "down": downMore} {
		if more > 0 {
			t.Errorf("%s: %d deliveries made more than once", name, more)
		}
	}
	t.Logf("all %d deliveries made %s after the failures began; attempts during the minute and after: "+
		"without the pause %d, with the pause %d (delivery.Worker), gateway %d (503) and %d (closed port)",
		jobs, recovered.Round(time.Second), without, with, gateway, downAttempts)
	for name, n := range map[string]int{"delivery.Worker with a Breaker": with, "gateway flaky": gateway, "gateway down": downAttempts} {
		if n >= without/2 {
			t.Errorf("%s made %d attempts, want fewer than half of the %d made without the pause", name, n, without)
		}
	}

	// Resumed: the pause is gone from the metric and the health, nothing is left queued
	// or dead-lettered.
	for _, name := range []string{"flaky", "down"} {
		labels := map[string]string{"destination": name}
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, name+" resumed and drained", func() bool {
			m := scrapeMetrics(t, g)
			return !g.destinationHealth(name).Paused && m.Sum("fanout_destination_paused", labels) == 0 &&
				m.Sum("fanout_queue_pending", labels) == 0
		})
		if n := scrapeMetrics(t, g).Sum("fanout_dead_letters", labels); n != 0 {
			t.Errorf("%s: %g dead letters", name, n)
		}
	}
	if paused, _ := breaker.Paused(); paused {
		t.Error("the delivery.Worker's breaker is still paused")
	}
}
