package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestEveryPayloadReachesExactlyItsDestinations sends every sample payload through a
// gateway on the embedded queue, and checks that each reaches exactly the destinations its
// routes name, once, with its bytes unchanged and Fanout's delivery headers.
func TestEveryPayloadReachesExactlyItsDestinations(t *testing.T) {
	queueYAML := fmt.Sprintf("  dir: %q", filepath.Join(t.TempDir(), "queue"))
	fanouttest.RunRouting(t, queueYAML, nil, func(t *testing.T, config string) (string, string) {
		g := startGateway(t, config)
		return g.CallbackAddr(), g.AdminAddr()
	})
}

// TestRejectedCallbacks sends each bad input a callback can have (and the wrong method and
// path): each gets its status and the FAIL JSON, is counted by reason in
// fanout_callbacks_total, and nothing reaches the destination.
func TestRejectedCallbacks(t *testing.T) {
	const (
		signedApp = "1400000001"
		token     = "tim-callback-token"
	)
	sink := fanouttest.NewReceiver(t, nil)
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback, max_body_bytes: 4KiB}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps:
    - sdkappid: %s
    - sdkappid: %s
      token: %s
  max_clock_skew: 60s
queue: {dir: %q}
defaults: {concurrency: 1}
destinations:
  sink: {url: %q, forward_query: true}
routes:
  - name: all
    to: [sink]
`, fanouttest.App, signedApp, token, filepath.Join(t.TempDir(), "queue"), sink.URL())))

	body := fanouttest.C2CMessage("rejected")
	now := time.Now().Unix()
	signed := func(requestTime int64, tok string) string {
		rt := strconv.FormatInt(requestTime, 10)
		return fanouttest.CallbackQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&RequestTime=" + rt + "&Sign=" + fanouttest.Sign(tok, rt)
	}
	big := fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","Pad":%q}`, strings.Repeat("x", 4096))
	tests := []struct {
		name       string
		method     string
		path       string
		query      string
		body       []byte
		wantStatus int
		wantReason string // outcome label of fanout_callbacks_total; "" for step 1
		wantInfo   string // a part of ErrorInfo
	}{
		{"body over max_body_bytes", "POST", "/callback", c2cQuery, big, 413, "too_large", "max_body_bytes"},
		{"body over max_body_bytes comes before the SdkAppid check", "POST", "/callback", fanouttest.CallbackQuery("1499999999", "C2C.CallbackAfterSendMsg"), big, 413, "too_large", "max_body_bytes"},
		{"SdkAppid missing", "POST", "/callback", "CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json", body, 403, "missing_app", "SdkAppid"},
		{"SdkAppid empty", "POST", "/callback", "SdkAppid=&CallbackCommand=C2C.CallbackAfterSendMsg", body, 403, "missing_app", "SdkAppid"},
		{"SdkAppid unknown", "POST", "/callback", fanouttest.CallbackQuery("1499999999", "C2C.CallbackAfterSendMsg"), body, 403, "unknown_app", "1499999999"},
		{"Sign and RequestTime missing", "POST", "/callback", fanouttest.CallbackQuery(signedApp, "C2C.CallbackAfterSendMsg"), body, 401, "missing_sign", "Sign"},
		{"RequestTime missing", "POST", "/callback", fanouttest.CallbackQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&Sign=" + fanouttest.Sign(token, "1"), body, 401, "missing_sign", "RequestTime"},
		{"Sign missing", "POST", "/callback", fanouttest.CallbackQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&RequestTime=" + strconv.FormatInt(now, 10), body, 401, "missing_sign", "Sign"},
		{"Sign of another token", "POST", "/callback", signed(now, "other-token"), body, 401, "bad_sign", "Sign"},
		{"Sign not hex", "POST", "/callback", fanouttest.CallbackQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&RequestTime=" + strconv.FormatInt(now, 10) + "&Sign=not-a-sign", body, 401, "bad_sign", "Sign"},
		{"RequestTime older than max_clock_skew", "POST", "/callback", signed(now-3600, token), body, 401, "stale_request", "RequestTime"},
		{"RequestTime ahead of max_clock_skew", "POST", "/callback", signed(now+3600, token), body, 401, "stale_request", "RequestTime"},
		{"RequestTime not a number", "POST", "/callback", fanouttest.CallbackQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&RequestTime=yesterday&Sign=" + fanouttest.Sign(token, "yesterday"), body, 401, "bad_request_time", "RequestTime"},
		{"broken JSON", "POST", "/callback", c2cQuery, []byte(`{"CallbackCommand": "C2C.CallbackAfterSendMsg",`), 400, "bad_json", ""},
		{"JSON array", "POST", "/callback", c2cQuery, []byte(`[{"CallbackCommand":"C2C.CallbackAfterSendMsg"}]`), 400, "bad_json", ""},
		{"JSON string", "POST", "/callback", c2cQuery, []byte(`"C2C.CallbackAfterSendMsg"`), 400, "bad_json", ""},
		{"empty body", "POST", "/callback", c2cQuery, nil, 400, "bad_json", ""},
		{"signed app, broken JSON", "POST", "/callback", signed(now, token), []byte(`{`), 400, "bad_json", ""},
		{"GET", "GET", "/callback", c2cQuery, nil, 405, "", "POST"},
		{"PUT", "PUT", "/callback", c2cQuery, body, 405, "", "POST"},
		{"wrong path", "POST", "/other", c2cQuery, body, 404, "", "server.path"},
		{"path prefix", "POST", "/callback/x", c2cQuery, body, 404, "", ""},
	}
	wantReasons := map[string]int{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := send(t, tt.method, "http://"+g.CallbackAddr()+tt.path+"?"+tt.query, tt.body, nil)
			checkFail(t, a, tt.wantStatus, tt.wantInfo)
			if tt.wantStatus == http.StatusMethodNotAllowed && a.Header.Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST (got %q)", a.Header.Get("Allow"))
			}
		})
		if tt.wantReason != "" {
			wantReasons[tt.wantReason]++
		}
	}

	// Two good callbacks, one per app, sent after the bad ones: the sink receives them in
	// order (concurrency 1), so once they are in, anything queued before would be too.
	goodPlain := fanouttest.C2CMessage("good-plain")
	goodSigned := fanouttest.C2CMessage("good-signed")
	accept(t, g, c2cQuery, goodPlain)
	accept(t, g, signed(time.Now().Unix(), token), goodSigned)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the two good callbacks", func() bool {
		return len(sink.WithBody(goodPlain)) == 1 && len(sink.WithBody(goodSigned)) == 1
	})
	if got := sink.Keys(); len(got) != 2 {
		t.Errorf("the sink received %v; want only the two good callbacks", got)
	}
	// The signed app's query went out without Sign and RequestTime (no tim_token).
	if h := sink.WithBody(goodSigned)[0]; strings.Contains(h.RawQuery, "Sign=") || strings.Contains(h.RawQuery, "RequestTime=") {
		t.Errorf("forwarded query %q still carries Sign or RequestTime", h.RawQuery)
	}

	for reason, n := range wantReasons {
		if got := scrapeMetrics(t, g).Sum("fanout_callbacks_total", map[string]string{"outcome": reason}); got != float64(n) {
			t.Errorf("fanout_callbacks_total{outcome=%q} = %g, want %d", reason, got, n)
		}
	}
	if got := scrapeMetrics(t, g).Sum("fanout_callbacks_total", map[string]string{"outcome": "ok"}); got != 2 {
		t.Errorf("fanout_callbacks_total{outcome=\"ok\"} = %g, want 2", got)
	}
	if got := scrapeMetrics(t, g).Sum("fanout_callbacks_total", map[string]string{"app": "1499999999"}); got != 0 {
		t.Errorf("an unknown SdkAppid got a label of its own (%g samples): labels must stay bounded", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	if n, _, err := g.queue.Load().Pending(ctx, "sink"); err != nil || n != 0 {
		t.Errorf("pending for sink = %d, %v; want 0", n, err)
	}
}

// checkFail checks a FAIL answer: status, JSON content type and
// {"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"<why>"}.
func checkFail(t *testing.T, a answer, wantStatus int, wantInfo string) {
	t.Helper()
	if a.Status != wantStatus {
		t.Errorf("status %d, want %d (body %s)", a.Status, wantStatus, a.Body)
	}
	if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var f struct {
		ActionStatus string
		ErrorCode    *int
		ErrorInfo    *string
	}
	if err := json.Unmarshal(a.Body, &f); err != nil {
		t.Fatalf("answer %q is not JSON: %v", a.Body, err)
	}
	if f.ActionStatus != "FAIL" || f.ErrorCode == nil || *f.ErrorCode != 1 || f.ErrorInfo == nil || *f.ErrorInfo == "" {
		t.Errorf("answer %s, want {\"ActionStatus\":\"FAIL\",\"ErrorCode\":1,\"ErrorInfo\":\"<why>\"}", a.Body)
	} else if !strings.Contains(*f.ErrorInfo, wantInfo) {
		t.Errorf("ErrorInfo %q does not mention %q", *f.ErrorInfo, wantInfo)
	}
}

// TestSourceAddressChecks covers allow_ips with and without trusted proxies: the direct
// peer is 127.0.0.1, X-Forwarded-For is believed only from a trusted proxy, and then its
// right-most untrusted entry is the source.
func TestSourceAddressChecks(t *testing.T) {
	tests := []struct {
		name         string
		server       string // extra server keys
		allow        string
		forwardedFor string
		wantStatus   int
	}{
		{"peer outside allow_ips", "", "[10.0.0.0/8]", "", 403},
		{"peer outside allow_ips, X-Forwarded-For from an untrusted peer is ignored", "", "[203.0.113.0/24]", "203.0.113.9", 403},
		{"trusted proxy, no X-Forwarded-For: the proxy itself is checked", ", trusted_proxies: [127.0.0.0/8]", "[203.0.113.0/24]", "", 403},
		{"trusted proxy, client outside allow_ips", ", trusted_proxies: [127.0.0.0/8]", "[203.0.113.0/24]", "198.51.100.7", 403},
		{"trusted proxy, spoofed allowed address on the left", ", trusted_proxies: [127.0.0.0/8]", "[203.0.113.0/24]", "203.0.113.9, 198.51.100.7", 403},
		{"trusted proxy, client inside allow_ips", ", trusted_proxies: [127.0.0.0/8]", "[203.0.113.0/24]", "203.0.113.9", 200},
		{"trusted proxy chain, client inside allow_ips", ", trusted_proxies: [127.0.0.0/8, 10.0.0.0/8]", "[203.0.113.0/24]", "198.51.100.7, 203.0.113.9, 10.1.2.3", 200},
		{"peer inside allow_ips", "", "[127.0.0.1/32]", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := fanouttest.NewReceiver(t, nil)
			g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback%s}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
  allow_ips: %s
queue: {dir: %q}
destinations:
  sink: {url: %q}
routes:
  - name: all
    to: [sink]
`, tt.server, fanouttest.App, tt.allow, filepath.Join(t.TempDir(), "queue"), sink.URL())))
			header := http.Header{}
			if tt.forwardedFor != "" {
				header.Set("X-Forwarded-For", tt.forwardedFor)
			}
			body := fanouttest.C2CMessage(tt.name)
			a := send(t, http.MethodPost, "http://"+g.CallbackAddr()+"/callback?"+c2cQuery, body, header)
			if tt.wantStatus == http.StatusOK {
				if a.Status != http.StatusOK || string(a.Body) != fanouttest.OKAnswer {
					t.Fatalf("answered %d %s, want 200 %s", a.Status, a.Body, fanouttest.OKAnswer)
				}
				fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the delivery", func() bool { return sink.Count() == 1 })
				return
			}
			checkFail(t, a, tt.wantStatus, "allow_ips")
			if got := scrapeMetrics(t, g).Sum("fanout_callbacks_total", map[string]string{"outcome": "ip_not_allowed"}); got != 1 {
				t.Errorf("fanout_callbacks_total{outcome=\"ip_not_allowed\"} = %g, want 1", got)
			}
			// Nothing was queued: the queue is empty now, so nothing can reach the sink.
			ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
			defer cancel()
			if n, _, err := g.queue.Load().Pending(ctx, "sink"); err != nil || n != 0 {
				t.Errorf("pending for sink = %d, %v; want 0", n, err)
			}
			if n := sink.Count(); n != 0 {
				t.Errorf("the sink received %d requests", n)
			}
		})
	}
}

// TestDuplicateCallback sends the same callback twice within dedup_window: both are
// answered OK, and each destination receives it once. The same body from another app is
// another callback.
func TestDuplicateCallback(t *testing.T) {
	const otherApp = "1400000001"
	a, b := fanouttest.NewReceiver(t, nil), fanouttest.NewReceiver(t, nil)
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}, {sdkappid: %s}]
queue: {dir: %q, dedup_window: 2m}
defaults: {concurrency: 1}
destinations:
  a: {url: %q, forward_query: true}
  b: {url: %q, forward_query: true}
routes:
  - name: all
    to: [a, b]
`, fanouttest.App, otherApp, filepath.Join(t.TempDir(), "queue"), a.URL(), b.URL())))

	body := fanouttest.C2CMessage("sent-twice")
	q := c2cQuery
	accept(t, g, q, body)
	accept(t, g, q, body)
	accept(t, g, fanouttest.CallbackQuery(otherApp, "C2C.CallbackAfterSendMsg"), body)
	sentinel := fanouttest.C2CMessage("sentinel")
	accept(t, g, q, sentinel)
	for name, rc := range map[string]*fanouttest.Receiver{"a": a, "b": b} {
		fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the sentinel at "+name, func() bool { return len(rc.WithBody(sentinel)) == 1 })
		apps := map[string]int{}
		for _, h := range rc.WithBody(body) {
			v, _ := url.ParseQuery(h.RawQuery)
			apps[v.Get("SdkAppid")]++
		}
		if want := map[string]int{fanouttest.App: 1, otherApp: 1}; !maps.Equal(apps, want) {
			t.Errorf("%s received the callback per SdkAppid %v, want %v", name, apps, want)
		}
		if n := rc.Count(); n != 3 {
			t.Errorf("%s received %d requests, want 3", name, n)
		}
	}
	if got := scrapeMetrics(t, g).Sum("fanout_callbacks_total", map[string]string{"outcome": "duplicate"}); got != 1 {
		t.Errorf("fanout_callbacks_total{outcome=\"duplicate\"} = %g, want 1", got)
	}
}

// TestFlakyDestinationGetsEverything: a destination that answers 503 to every other
// request still gets every callback, each attempt of one event carrying the same
// webhook-id and the next Fanout-Attempt.
func TestFlakyDestinationGetsEverything(t *testing.T) {
	const n = 40
	var failed atomic.Int64
	flaky := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if r.N%2 == 1 {
			failed.Add(1)
			return fanouttest.Answer{Status: http.StatusServiceUnavailable, Body: "try again\n"}
		}
		return fanouttest.Answer{}
	})
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
destinations:
  flaky:
    url: %q
    concurrency: 4
    retry: {max_attempts: 20, backoff: {initial: 20ms, max: 200ms, multiplier: 2, jitter: 0.2}}
routes:
  - name: all
    to: [flaky]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "queue")), flaky.URL())))

	for i := range n {
		acceptMessage(t, g, fmt.Sprintf("flaky-%02d", i))
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, fmt.Sprintf("%d deliveries", n), func() bool { return len(flaky.Delivered()) == n })
	waitMetric(t, g, "fanout_deliveries_total", map[string]string{"destination": "flaky", "outcome": "delivered"}, n)

	hits := flaky.Requests()
	byKey := map[string][]fanouttest.Request{}
	for _, h := range hits {
		byKey[fanouttest.MsgKey(h.Body)] = append(byKey[fanouttest.MsgKey(h.Body)], h)
	}
	maxAttempts := 0
	for key, hs := range byKey {
		ok := 0
		for i, h := range hs {
			if got := h.Header.Get("Fanout-Attempt"); got != strconv.Itoa(i+1) {
				t.Errorf("%s: request %d has Fanout-Attempt %q, want %d", key, i+1, got, i+1)
			}
			if h.Header.Get("Webhook-Id") != hs[0].Header.Get("Webhook-Id") {
				t.Errorf("%s: webhook-id changed between attempts: %q then %q", key, hs[0].Header.Get("Webhook-Id"), h.Header.Get("Webhook-Id"))
			}
			if h.Status == http.StatusOK {
				ok++
				if i != len(hs)-1 {
					t.Errorf("%s: attempted again after a 200", key)
				}
			}
		}
		if ok != 1 {
			t.Errorf("%s: %d successful deliveries, want 1", key, ok)
		}
		maxAttempts = max(maxAttempts, len(hs))
	}
	t.Logf("%d callbacks to a destination failing every other request: %d attempts (%d answered 503), at most %d for one callback",
		n, len(hits), failed.Load(), maxAttempts)
	if len(byKey) != n || len(hits) != n+int(failed.Load()) {
		t.Errorf("%d callbacks and %d requests, want %d callbacks and %d+%d requests", len(byKey), len(hits), n, n, failed.Load())
	}
	if got := scrapeMetrics(t, g).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "flaky", "result": "5xx"}); got != float64(failed.Load()) {
		t.Errorf("fanout_delivery_attempts_total{result=\"5xx\"} = %g, want %d", got, failed.Load())
	}
	if got := scrapeMetrics(t, g).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "flaky", "result": "2xx"}); got != n {
		t.Errorf("fanout_delivery_attempts_total{result=\"2xx\"} = %g, want %d", got, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	if dead, err := g.queue.Load().DeadLetterCount(ctx, "flaky"); err != nil || dead != 0 {
		t.Errorf("dead letters = %d, %v; want none", dead, err)
	}
}

// TestRejectingDestinationIsDeadLettered: a 400 is not retried; the delivery goes to the
// dead-letter queue at once with the status and the start of the answer's body.
func TestRejectingDestinationIsDeadLettered(t *testing.T) {
	const n = 3
	answerBody := `{"error":"field MsgKey is not accepted here"}` + strings.Repeat(" ", 600) + "END"
	rejecting := fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Status: http.StatusBadRequest,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: answerBody}))
	fine := fanouttest.NewReceiver(t, nil)
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
defaults:
  retry: {max_attempts: 10, backoff: {initial: 20ms, max: 100ms, multiplier: 2, jitter: 0}}
destinations:
  rejecting: {url: %q}
  fine: {url: %q}
routes:
  - name: all
    to: [rejecting, fine]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "queue")), rejecting.URL(), fine.URL())))

	sent := map[string][]byte{}
	before := time.Now()
	for i := range n {
		key := fmt.Sprintf("rejected-%d", i)
		sent[key] = fanouttest.C2CMessage(key)
		accept(t, g, c2cQuery, sent[key])
	}
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the dead letters", func() bool {
		dead, err := g.queue.Load().DeadLetterCount(ctx, "rejecting")
		return err == nil && dead == n
	})
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the deliveries to fine", func() bool { return len(fine.Delivered()) == n })
	waitMetric(t, g, "fanout_deliveries_total", map[string]string{"destination": "rejecting", "outcome": "dead"}, n)

	// One attempt each: the pending count is 0, so no retry is coming either.
	if p, _, err := g.queue.Load().Pending(ctx, "rejecting"); err != nil || p != 0 {
		t.Errorf("pending for rejecting = %d, %v; want 0", p, err)
	}
	if got := rejecting.Keys(); len(got) != n || slices.Max(slices.Collect(maps.Values(got))) != 1 {
		t.Errorf("rejecting received %v; want each callback once", got)
	}
	items, _, err := g.queue.Load().ListDeadLetters(ctx, queue.DeadLetterFilter{Destination: "rejecting"}, 0, 100)
	if err != nil || len(items) != n {
		t.Fatalf("ListDeadLetters = %d items, %v; want %d", len(items), err, n)
	}
	for _, dl := range items {
		key := fanouttest.MsgKey(dl.Body)
		if string(dl.Body) != string(sent[key]) {
			t.Errorf("dead letter %d: body %q, want the callback's bytes", dl.ID, dl.Body)
		}
		if dl.Reason != "status 400" || dl.LastStatus != 400 || dl.Attempts != 1 {
			t.Errorf("dead letter %s: reason %q, last status %d, attempts %d; want \"status 400\", 400, 1", key, dl.Reason, dl.LastStatus, dl.Attempts)
		}
		if !strings.HasPrefix(answerBody, dl.BodyExcerpt) || !strings.Contains(dl.BodyExcerpt, "field MsgKey is not accepted") {
			t.Errorf("dead letter %s: body excerpt %q, want the start of the answer", key, dl.BodyExcerpt)
		}
		if dl.Destination != "rejecting" || !slices.Equal(dl.Routes, []string{"all"}) || dl.EventID == "" {
			t.Errorf("dead letter %s: destination %q, routes %v, event %q", key, dl.Destination, dl.Routes, dl.EventID)
		}
		if dl.LastAttempt.Before(before) || dl.DeadAt.Before(dl.LastAttempt) {
			t.Errorf("dead letter %s: last attempt %v, dead at %v: not in order after the send at %v", key, dl.LastAttempt, dl.DeadAt, before)
		}
	}
	if got := scrapeMetrics(t, g).Sum("fanout_dead_letters", map[string]string{"destination": "rejecting"}); got != n {
		t.Errorf("fanout_dead_letters{destination=\"rejecting\"} = %g, want %d", got, n)
	}
}

// TestRetryAfterIsHonoured: a 503 or 429 with Retry-After: 2 is attempted again no sooner
// than 2 s later, although the backoff alone would wait 50 ms.
func TestRetryAfterIsHonoured(t *testing.T) {
	var mu sync.Mutex
	first := map[string]bool{}
	paced := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		key := r.Header.Get("Webhook-Id")
		mu.Lock()
		seen := first[key]
		first[key] = true
		mu.Unlock()
		if seen {
			return fanouttest.Answer{}
		}
		status := http.StatusServiceUnavailable
		if r.Header.Get("X-Want") == "429" {
			status = http.StatusTooManyRequests
		}
		return fanouttest.Answer{Status: status, Header: http.Header{"Retry-After": {"2"}}}
	})
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
destinations:
  paced-503:
    url: %q
    retry: {max_attempts: 5, backoff: {initial: 50ms, max: 10s, multiplier: 2, jitter: 0}}
  paced-429:
    url: %q
    headers: {X-Want: "429"}
    retry: {max_attempts: 5, backoff: {initial: 50ms, max: 10s, multiplier: 2, jitter: 0}}
routes:
  - name: all
    to: [paced-503, paced-429]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "queue")), paced.URL(), paced.URL())))

	acceptMessage(t, g, "paced")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the second attempts", func() bool { return paced.Count() == 4 })
	byID := map[string][]fanouttest.Request{}
	for _, h := range paced.Requests() {
		byID[h.Header.Get("Webhook-Id")] = append(byID[h.Header.Get("Webhook-Id")], h)
	}
	if len(byID) != 2 {
		t.Fatalf("got %d webhook-ids, want 2 (one per destination)", len(byID))
	}
	for id, hs := range byID {
		if len(hs) != 2 {
			t.Errorf("%s: %d attempts, want 2", id, len(hs))
			continue
		}
		gap := hs[1].At.Sub(hs[0].At)
		t.Logf("%s: first answer %d with Retry-After: 2, next attempt %s later", id, hs[0].Status, gap.Round(time.Millisecond))
		if gap < 2*time.Second {
			t.Errorf("%s: attempt 2 came %s after attempt 1, before the Retry-After of 2s", id, gap)
		}
		if hs[1].Header.Get("Fanout-Attempt") != "2" || hs[1].Status != http.StatusOK {
			t.Errorf("%s: second request has Fanout-Attempt %q and got %d", id, hs[1].Header.Get("Fanout-Attempt"), hs[1].Status)
		}
	}
}

// TestHangingDestinationDoesNotDelayOthers: while one destination never answers within its
// timeout, the other receives every callback; once it answers again, it gets them all too.
func TestHangingDestinationDoesNotDelayOthers(t *testing.T) {
	const n = 40
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	hanging := fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Hold: release}))
	t.Cleanup(unblock) // runs before the receiver closes: cleanups run last first
	healthy := fanouttest.NewReceiver(t, nil)
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
destinations:
  hanging:
    url: %q
    timeout: 3s
    concurrency: 2
    retry: {max_attempts: 100, backoff: {initial: 100ms, max: 500ms, multiplier: 2, jitter: 0}}
  healthy: {url: %q, concurrency: 2}
routes:
  - name: all
    to: [hanging, healthy]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "queue")), hanging.URL(), healthy.URL())))

	for i := range n {
		acceptMessage(t, g, fmt.Sprintf("hang-%02d", i))
	}
	// If the hanging destination held up the other, each of its 3 s timeouts would delay
	// a healthy delivery: 40 callbacks would take a minute, past the wait's deadline.
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "every callback at the healthy destination", func() bool { return len(healthy.Delivered()) == n })
	if got := len(hanging.Delivered()); got != 0 {
		t.Fatalf("the hanging destination answered %d requests before its release", got)
	}
	if got := len(hanging.Keys()); got > 2 {
		t.Errorf("the hanging destination received %d different callbacks, more than its concurrency (2)", got)
	}
	// It never answers within its timeout: the attempts time out and are retried.
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "an attempt to time out", func() bool {
		return scrapeMetrics(t, g).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "hanging", "result": "timeout"}) >= 1
	})
	if got := len(healthy.Delivered()); got != n {
		t.Errorf("healthy has %d deliveries, want %d", got, n)
	}
	unblock()
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "every callback at the released destination", func() bool { return len(hanging.Delivered()) == n })
	t.Logf("hanging destination: %d requests for %d callbacks, %g timed out",
		hanging.Count(), n, scrapeMetrics(t, g).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "hanging", "result": "timeout"}))
}

// TestRestartDeliversPending stops a gateway while its deliveries to a down destination
// (a closed port) are pending, starts a new gateway on the same queue directory, brings the
// destination up, and counts every callback arriving.
func TestRestartDeliversPending(t *testing.T) {
	const n = 30
	addr := fanouttest.FreeAddr(t) // the destination is down: connections are refused

	path := fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
destinations:
  down:
    url: "http://%s/hook"
    timeout: 1s
    concurrency: 4
    retry: {max_attempts: 20, max_age: 1h, backoff: {initial: 3s, max: 6s, multiplier: 2, jitter: 0.2}}
routes:
  - name: all
    to: [down]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "queue")), addr))

	g1 := startGateway(t, path)
	for i := range n {
		acceptMessage(t, g1, fmt.Sprintf("restart-%02d", i))
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "failed attempts to the down destination", func() bool {
		return scrapeMetrics(t, g1).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "down", "result": "connection"}) >= 4
	})
	failedBefore := scrapeMetrics(t, g1).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "down", "result": "connection"})
	stopGateway(t, g1)

	g2 := startGateway(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	// A retry being stored is counted twice for a moment (the new copy is written before the
	// one in hand is acknowledged), so the count is awaited, not read once.
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, fmt.Sprintf("%d deliveries pending after the restart", n), func() bool {
		p, _, err := g2.queue.Load().Pending(ctx, "down")
		return err == nil && p == n
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("bringing the destination up on %s: %v", addr, err)
	}
	down := fanouttest.ServeReceiver(t, ln, nil)
	// The deliveries stored for a retry (3 s after their first attempt) come back when due,
	// those in hand at the stop were handed back at once; a retry that still finds the
	// destination down waits up to 7.2 s more.
	fanouttest.WaitFor(t, 90*time.Second, fmt.Sprintf("%d callbacks after the restart", n), func() bool { return len(down.Delivered()) == n })
	dups := 0
	for _, c := range down.Delivered() {
		dups += c - 1
	}
	var retried []string // Fanout-Attempt of the deliveries that were attempted before the stop
	for _, h := range down.Requests() {
		if a := h.Header.Get("Fanout-Attempt"); a != "1" {
			retried = append(retried, a)
		}
	}
	t.Logf("%d callbacks: %g connection failures before the stop, %d requests after the restart (Fanout-Attempt of those tried before: %v), %d duplicates",
		n, failedBefore, down.Count(), retried, dups)
	if dups != 0 {
		t.Errorf("%d duplicates: a delivery that never reached the destination was delivered twice", dups)
	}
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the queue to drain", func() bool {
		p, _, err := g2.queue.Load().Pending(ctx, "down")
		return err == nil && p == 0
	})
	if dead, err := g2.queue.Load().DeadLetterCount(ctx, "down"); err != nil || dead != 0 {
		t.Errorf("dead letters for down = %d, %v; want none", dead, err)
	}
}
