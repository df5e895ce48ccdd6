package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
)

// Secrets of the "signed" destination: two, as during a rotation.
const (
	signedSecretNew = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	signedSecretOld = "whsec_c2Vjb25kLWtleS1mb3Itcm90YXRpb24tdGVzdA=="
)

// routingDestinations are the destinations of routingConfig, in file order.
var routingDestinations = []string{"archive", "c2c", "groups", "moderation", "signed", "oncall", "presence"}

// routingConfig routes by command globs and when-expressions, so that the sample payloads
// reach different sets of destinations. Every destination has concurrency 1, so each one
// receives its deliveries in the order they were queued: once a callback sent last has
// arrived, anything queued before it has too.
func routingConfig(queueYAML string, urls map[string]string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue:
%s
defaults:
  concurrency: 1
  retry: {max_attempts: 5, backoff: {initial: 50ms, max: 200ms, multiplier: 2, jitter: 0}}
destinations:
  archive: {url: %q, forward_query: true}
  c2c: {url: %q, headers: {X-Team: im}}
  groups: {url: %q}
  moderation: {url: %q}
  signed: {url: %q, signing_secret: [%s, %s]}
  oncall: {url: %q}
  presence: {url: %q}
routes:
  - name: all
    to: [archive]
  - name: c2c
    commands: ["C2C.*"]
    to: [c2c]
  - name: groups
    commands: ["Group.*"]
    to: [groups]
  - name: before
    commands: ["*.CallbackBefore*", "Sns.CallbackPrev*"]
    to: [moderation]
  - name: jared
    when: From_Account == "jared"
    to: [signed]
  - name: red-packet
    when: text contains "red packet"
    to: [signed, oncall]
  - name: presence
    commands: [State.StateChange, "Profile.*"]
    to: [presence]
  - name: alerts
    commands: ["Alert.*"]
    when: Request > Limit
    to: [oncall]
  - name: sentinel
    commands: [Fanout.Sentinel]
    to: [archive, c2c, groups, moderation, signed, oncall, presence]
`, testApp, queueYAML, urls["archive"], urls["c2c"], urls["groups"], urls["moderation"],
		urls["signed"], signedSecretNew, signedSecretOld, urls["oncall"], urls["presence"])
}

// routingExpect is, for each sample payload, the destinations that must receive it under
// routingConfig and the Fanout-Route header each one gets. Worked out by hand from the
// payloads' fields, not with the rules package.
var routingExpect = map[string]map[string]string{
	"Alert.RequestOverLimit.json":       {"archive": "all", "oncall": "alerts"}, // Request 510 > Limit 200
	"C2C.CallbackAfterMsgReport.json":   {"archive": "all", "c2c": "c2c"},       // Report_Account, not From_Account
	"C2C.CallbackAfterMsgWithDraw.json": {"archive": "all", "c2c": "c2c", "signed": "jared"},
	"C2C.CallbackAfterSendMsg.json": {"archive": "all", "c2c": "c2c", "signed": "jared,red-packet",
		"oncall": "red-packet"},
	"C2C.CallbackBeforeSendMsg.image.json": {"archive": "all", "c2c": "c2c", "moderation": "before"}, // user1, no text
	"C2C.CallbackBeforeSendMsg.json": {"archive": "all", "c2c": "c2c", "moderation": "before",
		"signed": "jared,red-packet", "oncall": "red-packet"},
	"Group.CallbackAfterNewMemberJoin.json":    {"archive": "all", "groups": "groups"},
	"Group.CallbackAfterRecallMsg.json":        {"archive": "all", "groups": "groups"},
	"Group.CallbackAfterSendMsg.json":          {"archive": "all", "groups": "groups", "signed": "jared,red-packet", "oncall": "red-packet"},
	"Group.CallbackBeforeCreateGroup.json":     {"archive": "all", "groups": "groups", "moderation": "before"},
	"Group.CallbackBeforeInviteJoinGroup.json": {"archive": "all", "groups": "groups", "moderation": "before"},
	"Group.CallbackBeforeSendMsg.json": {"archive": "all", "groups": "groups", "moderation": "before",
		"signed": "jared,red-packet", "oncall": "red-packet"},
	"Group.CallbackSendMsgException.json": {"archive": "all", "groups": "groups", "signed": "jared,red-packet",
		"oncall": "red-packet"},
	"Profile.CallbackPortraitSet.json": {"archive": "all", "presence": "presence"}, // From_Account id1
	"Sns.CallbackFriendAdd.json":       {"archive": "all"},
	"Sns.CallbackPrevFriendAdd.json":   {"archive": "all", "moderation": "before"},
	"State.StateChange.json":           {"archive": "all", "presence": "presence"},
}

// TestEveryPayloadReachesExactlyItsDestinations sends every sample payload through a
// gateway on the embedded queue, and checks that each reaches exactly the destinations its
// routes name, once, with its bytes unchanged and Fanout's delivery headers.
func TestEveryPayloadReachesExactlyItsDestinations(t *testing.T) {
	queueYAML := fmt.Sprintf("  dir: %q", filepath.Join(t.TempDir(), "queue"))
	runRouting(t, queueYAML, nil)
}

// runRouting is the routing scenario on the given queue section: the payloads named in
// only (nil: every payload) are sent, then a sentinel that every destination receives last.
func runRouting(t *testing.T, queueYAML string, only []string) {
	payloads := loadPayloads(t)
	for _, p := range payloads {
		if _, ok := routingExpect[p.Name]; !ok {
			t.Errorf("payload %s has no expectation in routingExpect: add it", p.Name)
		}
	}
	if only != nil {
		payloads = slices.DeleteFunc(payloads, func(p payload) bool { return !slices.Contains(only, p.Name) })
		if len(payloads) != len(only) {
			t.Fatalf("found %d of the payloads %v", len(payloads), only)
		}
	}

	receivers := map[string]*receiver{}
	urls := map[string]string{}
	for _, d := range routingDestinations {
		receivers[d] = newReceiver(t, nil)
		urls[d] = receivers[d].URL() + "/hook/" + d
	}
	g := startGateway(t, writeConfig(t, routingConfig(queueYAML, urls)))

	sent := map[string]string{} // payload name -> query sent
	for _, p := range payloads {
		q := tencentQuery(testApp, p.Command)
		sent[p.Name] = q
		accept(t, g, q, p.Body)
	}
	// Wait for every expected copy, then send the sentinel: every destination receives it
	// after anything queued before it, so once it is everywhere, nothing else is coming.
	waitForNone(t, waitTimeout, "every expected delivery", func() []string {
		var missing []string
		for _, p := range payloads {
			for d := range routingExpect[p.Name] {
				if len(receivers[d].withBody(p.Body)) == 0 {
					missing = append(missing, p.Name+" at "+d)
				}
			}
		}
		return missing
	})
	sentinel := fmt.Appendf(nil, `{"CallbackCommand":"Fanout.Sentinel","Nonce":%q}`, randomHex(8))
	accept(t, g, tencentQuery(testApp, "Fanout.Sentinel"), sentinel)
	waitFor(t, waitTimeout, "the sentinel at every destination", func() bool {
		for _, rc := range receivers {
			if len(rc.withBody(sentinel)) == 0 {
				return false
			}
		}
		return true
	})

	// Nothing but the expected copies and the sentinel came, each exactly once.
	wantCount := map[string]int{}
	for _, p := range payloads {
		for d := range routingExpect[p.Name] {
			wantCount[d]++
		}
	}
	for _, d := range routingDestinations {
		hits := receivers[d].all()
		if len(hits) != wantCount[d]+1 {
			var got []string
			for _, h := range hits {
				got = append(got, payloadName(payloads, h.Body, sentinel))
			}
			t.Errorf("destination %s received %d requests %v, want %d (the expected payloads and the sentinel)",
				d, len(hits), got, wantCount[d]+1)
		}
	}

	ids := map[string]string{} // webhook-id -> payload>destination
	for _, p := range payloads {
		t.Run(p.Name, func(t *testing.T) {
			want := routingExpect[p.Name]
			var got []string
			for _, d := range routingDestinations {
				if len(receivers[d].withBody(p.Body)) > 0 {
					got = append(got, d)
				}
			}
			if wantDests := slices.Sorted(maps.Keys(want)); !sameSet(got, wantDests) {
				t.Fatalf("reached %v, want exactly %v", got, wantDests)
			}
			for _, d := range got {
				hits := receivers[d].withBody(p.Body)
				if len(hits) != 1 {
					t.Errorf("%s received it %d times, want once", d, len(hits))
				}
				h := hits[0]
				checkDeliveryHeaders(t, d, h, want[d], sent[p.Name])
				id := h.Header.Get("Webhook-Id")
				if other, dup := ids[id]; dup {
					t.Errorf("%s: webhook-id %q is also the id of %s: it must differ per event and destination", d, id, other)
				}
				ids[id] = p.Name + ">" + d
			}
		})
	}
	t.Run("three or more destinations from one callback", func(t *testing.T) {
		p := "C2C.CallbackAfterSendMsg.json" // every caller sends it
		n := 0
		for _, rc := range receivers {
			n += len(rc.withBody(payloadBody(t, payloads, p)))
		}
		if want := len(routingExpect[p]); n != want || n < 3 {
			t.Errorf("%s was delivered %d times, want %d: once to each of archive, c2c, signed and oncall", p, n, want)
		}
	})
	t.Run("one copy for a destination named by two routes", func(t *testing.T) {
		hits := receivers["signed"].withBody(payloadBody(t, payloads, "C2C.CallbackAfterSendMsg.json"))
		if len(hits) != 1 || hits[0].Header.Get("Fanout-Route") != "jared,red-packet" {
			t.Errorf("signed received %d copies; want 1 with Fanout-Route \"jared,red-packet\"", len(hits))
		}
	})

	// The metrics agree: every callback accepted, each destination's deliveries counted.
	waitMetric(t, g, "fanout_callbacks_total", map[string]string{"outcome": "ok"}, float64(len(payloads)+1))
	for _, d := range routingDestinations {
		waitMetric(t, g, "fanout_deliveries_total", map[string]string{"destination": d, "outcome": "delivered"},
			float64(wantCount[d]+1))
	}
}

// checkDeliveryHeaders checks the headers of the request a destination received.
func checkDeliveryHeaders(t *testing.T, dest string, h hit, wantRoute, sentQuery string) {
	t.Helper()
	hd := h.Header
	if h.Method != http.MethodPost || h.Path != "/hook/"+dest {
		t.Errorf("%s: %s %s, want POST /hook/%s", dest, h.Method, h.Path, dest)
	}
	for name, want := range map[string]string{
		"Content-Type":   "application/json",
		"User-Agent":     "fanout/" + testVersion,
		"Fanout-Route":   wantRoute,
		"Fanout-Attempt": "1",
	} {
		if got := hd.Get(name); got != want {
			t.Errorf("%s: %s = %q, want %q", dest, name, got, want)
		}
	}
	id, ts := hd.Get("Webhook-Id"), hd.Get("Webhook-Timestamp")
	if id == "" {
		t.Errorf("%s: no webhook-id", dest)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 10*time.Minute {
		t.Errorf("%s: webhook-timestamp %q is not the Unix time of the attempt", dest, ts)
	}
	sig := hd.Get("Webhook-Signature")
	switch dest {
	case "signed":
		// One signature per secret, each verifiable with the secret alone.
		got := strings.Fields(sig)
		want := []string{
			signStandardWebhook(t, signedSecretNew, id, ts, h.Body),
			signStandardWebhook(t, signedSecretOld, id, ts, h.Body),
		}
		if !sameSet(got, want) {
			t.Errorf("%s: webhook-signature %q, want the signatures %q", dest, sig, want)
		}
	default:
		if sig != "" {
			t.Errorf("%s: webhook-signature %q without a signing_secret", dest, sig)
		}
	}
	switch dest {
	case "c2c":
		if got := hd.Get("X-Team"); got != "im" {
			t.Errorf("%s: configured header X-Team = %q, want im", dest, got)
		}
	case "archive":
		// forward_query: the original query follows the URL (no Sign to remove here).
		got, err := url.ParseQuery(h.RawQuery)
		want, _ := url.ParseQuery(sentQuery)
		if err != nil || !mapsEqual(got, want) {
			t.Errorf("%s: query %q, want the callback's %q", dest, h.RawQuery, sentQuery)
		}
	default:
		if h.RawQuery != "" {
			t.Errorf("%s: query %q without forward_query", dest, h.RawQuery)
		}
	}
}

func mapsEqual(a, b url.Values) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func payloadBody(t *testing.T, payloads []payload, name string) []byte {
	t.Helper()
	for _, p := range payloads {
		if p.Name == name {
			return p.Body
		}
	}
	t.Fatalf("no payload %s", name)
	return nil
}

// payloadName names a received body for messages.
func payloadName(payloads []payload, body, sentinel []byte) string {
	if string(body) == string(sentinel) {
		return "sentinel"
	}
	for _, p := range payloads {
		if string(p.Body) == string(body) {
			return p.Name
		}
	}
	return fmt.Sprintf("unknown body %.40q", body)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestRejectedCallbacks sends each bad input a callback can have (and the wrong method and
// path): each gets its status and the FAIL JSON, is counted by reason in
// fanout_callbacks_total, and nothing reaches the destination.
func TestRejectedCallbacks(t *testing.T) {
	const (
		signedApp = "1400000001"
		token     = "tim-callback-token"
	)
	sink := newReceiver(t, nil)
	g := startGateway(t, writeConfig(t, fmt.Sprintf(`
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
`, testApp, signedApp, token, filepath.Join(t.TempDir(), "queue"), sink.URL())))

	body := c2cMessage("rejected")
	now := time.Now().Unix()
	signed := func(requestTime int64, tok string) string {
		rt := strconv.FormatInt(requestTime, 10)
		return tencentQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&RequestTime=" + rt + "&Sign=" + tencentSign(tok, rt)
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
		{"body over max_body_bytes", "POST", "/callback", tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), big, 413, "too_large", "max_body_bytes"},
		{"body over max_body_bytes comes before the SdkAppid check", "POST", "/callback", tencentQuery("1499999999", "C2C.CallbackAfterSendMsg"), big, 413, "too_large", "max_body_bytes"},
		{"SdkAppid missing", "POST", "/callback", "CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json", body, 403, "missing_app", "SdkAppid"},
		{"SdkAppid empty", "POST", "/callback", "SdkAppid=&CallbackCommand=C2C.CallbackAfterSendMsg", body, 403, "missing_app", "SdkAppid"},
		{"SdkAppid unknown", "POST", "/callback", tencentQuery("1499999999", "C2C.CallbackAfterSendMsg"), body, 403, "unknown_app", "1499999999"},
		{"Sign and RequestTime missing", "POST", "/callback", tencentQuery(signedApp, "C2C.CallbackAfterSendMsg"), body, 401, "missing_sign", "Sign"},
		{"RequestTime missing", "POST", "/callback", tencentQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&Sign=" + tencentSign(token, "1"), body, 401, "missing_sign", "RequestTime"},
		{"Sign missing", "POST", "/callback", tencentQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&RequestTime=" + strconv.FormatInt(now, 10), body, 401, "missing_sign", "Sign"},
		{"Sign of another token", "POST", "/callback", signed(now, "other-token"), body, 401, "bad_sign", "Sign"},
		{"Sign not hex", "POST", "/callback", tencentQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&RequestTime=" + strconv.FormatInt(now, 10) + "&Sign=not-a-sign", body, 401, "bad_sign", "Sign"},
		{"RequestTime older than max_clock_skew", "POST", "/callback", signed(now-3600, token), body, 401, "stale_request", "RequestTime"},
		{"RequestTime ahead of max_clock_skew", "POST", "/callback", signed(now+3600, token), body, 401, "stale_request", "RequestTime"},
		{"RequestTime not a number", "POST", "/callback", tencentQuery(signedApp, "C2C.CallbackAfterSendMsg") + "&RequestTime=yesterday&Sign=" + tencentSign(token, "yesterday"), body, 401, "bad_request_time", "RequestTime"},
		{"broken JSON", "POST", "/callback", tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), []byte(`{"CallbackCommand": "C2C.CallbackAfterSendMsg",`), 400, "bad_json", ""},
		{"JSON array", "POST", "/callback", tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), []byte(`[{"CallbackCommand":"C2C.CallbackAfterSendMsg"}]`), 400, "bad_json", ""},
		{"JSON string", "POST", "/callback", tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), []byte(`"C2C.CallbackAfterSendMsg"`), 400, "bad_json", ""},
		{"empty body", "POST", "/callback", tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), nil, 400, "bad_json", ""},
		{"signed app, broken JSON", "POST", "/callback", signed(now, token), []byte(`{`), 400, "bad_json", ""},
		{"GET", "GET", "/callback", tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), nil, 405, "", "POST"},
		{"PUT", "PUT", "/callback", tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), body, 405, "", "POST"},
		{"wrong path", "POST", "/other", tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), body, 404, "", "server.path"},
		{"path prefix", "POST", "/callback/x", tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), body, 404, "", ""},
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
	goodPlain := c2cMessage("good-plain")
	goodSigned := c2cMessage("good-signed")
	accept(t, g, tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), goodPlain)
	accept(t, g, signed(time.Now().Unix(), token), goodSigned)
	waitFor(t, waitTimeout, "the two good callbacks", func() bool {
		return len(sink.withBody(goodPlain)) == 1 && len(sink.withBody(goodSigned)) == 1
	})
	if got := sink.keys(); len(got) != 2 {
		t.Errorf("the sink received %v; want only the two good callbacks", got)
	}
	// The signed app's query went out without Sign and RequestTime (no tim_token).
	if h := sink.withBody(goodSigned)[0]; strings.Contains(h.RawQuery, "Sign=") || strings.Contains(h.RawQuery, "RequestTime=") {
		t.Errorf("forwarded query %q still carries Sign or RequestTime", h.RawQuery)
	}

	for reason, n := range wantReasons {
		if got := metricSum(t, g, "fanout_callbacks_total", map[string]string{"outcome": reason}); got != float64(n) {
			t.Errorf("fanout_callbacks_total{outcome=%q} = %g, want %d", reason, got, n)
		}
	}
	if got := metricSum(t, g, "fanout_callbacks_total", map[string]string{"outcome": "ok"}); got != 2 {
		t.Errorf("fanout_callbacks_total{outcome=\"ok\"} = %g, want 2", got)
	}
	if got := metricSum(t, g, "fanout_callbacks_total", map[string]string{"app": "1499999999"}); got != 0 {
		t.Errorf("an unknown SdkAppid got a label of its own (%g samples): labels must stay bounded", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
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
			sink := newReceiver(t, nil)
			g := startGateway(t, writeConfig(t, fmt.Sprintf(`
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
`, tt.server, testApp, tt.allow, filepath.Join(t.TempDir(), "queue"), sink.URL())))
			header := http.Header{}
			if tt.forwardedFor != "" {
				header.Set("X-Forwarded-For", tt.forwardedFor)
			}
			body := c2cMessage(tt.name)
			a := send(t, http.MethodPost, "http://"+g.CallbackAddr()+"/callback?"+tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), body, header)
			if tt.wantStatus == http.StatusOK {
				if a.Status != http.StatusOK || string(a.Body) != okAnswer {
					t.Fatalf("answered %d %s, want 200 %s", a.Status, a.Body, okAnswer)
				}
				waitFor(t, waitTimeout, "the delivery", func() bool { return sink.count() == 1 })
				return
			}
			checkFail(t, a, tt.wantStatus, "allow_ips")
			if got := metricSum(t, g, "fanout_callbacks_total", map[string]string{"outcome": "ip_not_allowed"}); got != 1 {
				t.Errorf("fanout_callbacks_total{outcome=\"ip_not_allowed\"} = %g, want 1", got)
			}
			// Nothing was queued: the queue is empty now, so nothing can reach the sink.
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if n, _, err := g.queue.Load().Pending(ctx, "sink"); err != nil || n != 0 {
				t.Errorf("pending for sink = %d, %v; want 0", n, err)
			}
			if n := sink.count(); n != 0 {
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
	a, b := newReceiver(t, nil), newReceiver(t, nil)
	g := startGateway(t, writeConfig(t, fmt.Sprintf(`
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
`, testApp, otherApp, filepath.Join(t.TempDir(), "queue"), a.URL(), b.URL())))

	body := c2cMessage("sent-twice")
	q := tencentQuery(testApp, "C2C.CallbackAfterSendMsg")
	accept(t, g, q, body)
	accept(t, g, q, body)
	accept(t, g, tencentQuery(otherApp, "C2C.CallbackAfterSendMsg"), body)
	sentinel := c2cMessage("sentinel")
	accept(t, g, q, sentinel)
	for name, rc := range map[string]*receiver{"a": a, "b": b} {
		waitFor(t, waitTimeout, "the sentinel at "+name, func() bool { return len(rc.withBody(sentinel)) == 1 })
		apps := map[string]int{}
		for _, h := range rc.withBody(body) {
			v, _ := url.ParseQuery(h.RawQuery)
			apps[v.Get("SdkAppid")]++
		}
		if want := map[string]int{testApp: 1, otherApp: 1}; !maps.Equal(apps, want) {
			t.Errorf("%s received the callback per SdkAppid %v, want %v", name, apps, want)
		}
		if n := rc.count(); n != 3 {
			t.Errorf("%s received %d requests, want 3", name, n)
		}
	}
	if got := metricSum(t, g, "fanout_callbacks_total", map[string]string{"outcome": "duplicate"}); got != 1 {
		t.Errorf("fanout_callbacks_total{outcome=\"duplicate\"} = %g, want 1", got)
	}
}

// TestFlakyDestinationGetsEverything: a destination that answers 503 to every other
// request still gets every callback, each attempt of one event carrying the same
// webhook-id and the next Fanout-Attempt.
func TestFlakyDestinationGetsEverything(t *testing.T) {
	const n = 40
	var failed atomic.Int64
	flaky := newReceiver(t, func(w http.ResponseWriter, r *http.Request, count int) int {
		if count%2 == 1 {
			failed.Add(1)
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	g := startGateway(t, writeConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
destinations:
  flaky:
    url: %q
    concurrency: 4
    retry: {max_attempts: 20, backoff: {initial: 20ms, max: 200ms, multiplier: 2, jitter: 0.2}}
routes:
  - name: all
    to: [flaky]
`, testApp, filepath.Join(t.TempDir(), "queue"), flaky.URL())))

	for i := range n {
		accept(t, g, tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), c2cMessage(fmt.Sprintf("flaky-%02d", i)))
	}
	waitFor(t, waitTimeout, fmt.Sprintf("%d deliveries", n), func() bool { return len(flaky.delivered()) == n })
	waitMetric(t, g, "fanout_deliveries_total", map[string]string{"destination": "flaky", "outcome": "delivered"}, n)

	hits := flaky.all()
	byKey := map[string][]hit{}
	for _, h := range hits {
		byKey[msgKey(h.Body)] = append(byKey[msgKey(h.Body)], h)
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
	if got := metricSum(t, g, "fanout_delivery_attempts_total", map[string]string{"destination": "flaky", "result": "5xx"}); got != float64(failed.Load()) {
		t.Errorf("fanout_delivery_attempts_total{result=\"5xx\"} = %g, want %d", got, failed.Load())
	}
	if got := metricSum(t, g, "fanout_delivery_attempts_total", map[string]string{"destination": "flaky", "result": "2xx"}); got != n {
		t.Errorf("fanout_delivery_attempts_total{result=\"2xx\"} = %g, want %d", got, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
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
	rejecting := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) int {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, answerBody)
		return http.StatusBadRequest
	})
	fine := newReceiver(t, nil)
	g := startGateway(t, writeConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
defaults:
  retry: {max_attempts: 10, backoff: {initial: 20ms, max: 100ms, multiplier: 2, jitter: 0}}
destinations:
  rejecting: {url: %q}
  fine: {url: %q}
routes:
  - name: all
    to: [rejecting, fine]
`, testApp, filepath.Join(t.TempDir(), "queue"), rejecting.URL(), fine.URL())))

	sent := map[string][]byte{}
	before := time.Now()
	for i := range n {
		key := fmt.Sprintf("rejected-%d", i)
		sent[key] = c2cMessage(key)
		accept(t, g, tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), sent[key])
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	waitFor(t, waitTimeout, "the dead letters", func() bool {
		dead, err := g.queue.Load().DeadLetterCount(ctx, "rejecting")
		return err == nil && dead == n
	})
	waitFor(t, waitTimeout, "the deliveries to fine", func() bool { return len(fine.delivered()) == n })
	waitMetric(t, g, "fanout_deliveries_total", map[string]string{"destination": "rejecting", "outcome": "dead"}, n)

	// One attempt each: the pending count is 0, so no retry is coming either.
	if p, _, err := g.queue.Load().Pending(ctx, "rejecting"); err != nil || p != 0 {
		t.Errorf("pending for rejecting = %d, %v; want 0", p, err)
	}
	if got := rejecting.keys(); len(got) != n || slices.Max(slices.Collect(maps.Values(got))) != 1 {
		t.Errorf("rejecting received %v; want each callback once", got)
	}
	items, _, err := g.queue.Load().ListDeadLetters(ctx, queue.DeadLetterFilter{Destination: "rejecting"}, 0, 100)
	if err != nil || len(items) != n {
		t.Fatalf("ListDeadLetters = %d items, %v; want %d", len(items), err, n)
	}
	for _, dl := range items {
		key := msgKey(dl.Body)
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
	if got := metricSum(t, g, "fanout_dead_letters", map[string]string{"destination": "rejecting"}); got != n {
		t.Errorf("fanout_dead_letters{destination=\"rejecting\"} = %g, want %d", got, n)
	}
}

// TestRetryAfterIsHonoured: a 503 or 429 with Retry-After: 2 is attempted again no sooner
// than 2 s later, although the backoff alone would wait 50 ms.
func TestRetryAfterIsHonoured(t *testing.T) {
	var mu sync.Mutex
	first := map[string]bool{}
	paced := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) int {
		key := r.Header.Get("Webhook-Id")
		mu.Lock()
		seen := first[key]
		first[key] = true
		mu.Unlock()
		if seen {
			return http.StatusOK
		}
		w.Header().Set("Retry-After", "2")
		status := http.StatusServiceUnavailable
		if r.Header.Get("X-Want") == "429" {
			status = http.StatusTooManyRequests
		}
		w.WriteHeader(status)
		return status
	})
	g := startGateway(t, writeConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
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
`, testApp, filepath.Join(t.TempDir(), "queue"), paced.URL(), paced.URL())))

	accept(t, g, tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), c2cMessage("paced"))
	waitFor(t, waitTimeout, "the second attempts", func() bool { return paced.count() == 4 })
	byID := map[string][]hit{}
	for _, h := range paced.all() {
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
	hanging := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) int {
		select {
		case <-release:
			return http.StatusOK
		case <-r.Context().Done():
			return 0
		}
	})
	t.Cleanup(unblock) // runs before the receiver closes: cleanups run last first
	healthy := newReceiver(t, nil)
	g := startGateway(t, writeConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
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
`, testApp, filepath.Join(t.TempDir(), "queue"), hanging.URL(), healthy.URL())))

	for i := range n {
		accept(t, g, tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), c2cMessage(fmt.Sprintf("hang-%02d", i)))
	}
	// If the hanging destination held up the other, each of its 3 s timeouts would delay
	// a healthy delivery: 40 callbacks would take a minute, past the wait's deadline.
	waitFor(t, waitTimeout, "every callback at the healthy destination", func() bool { return len(healthy.delivered()) == n })
	if got := len(hanging.delivered()); got != 0 {
		t.Fatalf("the hanging destination answered %d requests before its release", got)
	}
	if got := len(hanging.keys()); got > 2 {
		t.Errorf("the hanging destination received %d different callbacks, more than its concurrency (2)", got)
	}
	// It never answers within its timeout: the attempts time out and are retried.
	waitFor(t, waitTimeout, "an attempt to time out", func() bool {
		return metricSum(t, g, "fanout_delivery_attempts_total", map[string]string{"destination": "hanging", "result": "timeout"}) >= 1
	})
	if got := len(healthy.delivered()); got != n {
		t.Errorf("healthy has %d deliveries, want %d", got, n)
	}
	unblock()
	waitFor(t, waitTimeout, "every callback at the released destination", func() bool { return len(hanging.delivered()) == n })
	t.Logf("hanging destination: %d requests for %d callbacks, %g timed out",
		hanging.count(), n, metricSum(t, g, "fanout_delivery_attempts_total", map[string]string{"destination": "hanging", "result": "timeout"}))
}

// TestRestartDeliversPending stops a gateway while its deliveries to a down destination
// (a closed port) are pending, starts a new gateway on the same queue directory, brings the
// destination up, and counts every callback arriving.
func TestRestartDeliversPending(t *testing.T) {
	const n = 30
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the destination is down: connections are refused

	path := writeConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue: {dir: %q}
destinations:
  down:
    url: "http://%s/hook"
    timeout: 1s
    concurrency: 4
    retry: {max_attempts: 20, max_age: 1h, backoff: {initial: 3s, max: 6s, multiplier: 2, jitter: 0.2}}
routes:
  - name: all
    to: [down]
`, testApp, filepath.Join(t.TempDir(), "queue"), addr))

	g1 := startGateway(t, path)
	for i := range n {
		accept(t, g1, tencentQuery(testApp, "C2C.CallbackAfterSendMsg"), c2cMessage(fmt.Sprintf("restart-%02d", i)))
	}
	waitFor(t, waitTimeout, "failed attempts to the down destination", func() bool {
		return metricSum(t, g1, "fanout_delivery_attempts_total", map[string]string{"destination": "down", "result": "connection"}) >= 4
	})
	failedBefore := metricSum(t, g1, "fanout_delivery_attempts_total", map[string]string{"destination": "down", "result": "connection"})
	stopGateway(t, g1)

	g2 := startGateway(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	// A retry being stored is counted twice for a moment (the new copy is written before the
	// one in hand is acknowledged), so the count is awaited, not read once.
	waitFor(t, waitTimeout, fmt.Sprintf("%d deliveries pending after the restart", n), func() bool {
		p, _, err := g2.queue.Load().Pending(ctx, "down")
		return err == nil && p == n
	})
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("bringing the destination up on %s: %v", addr, err)
	}
	down := serveReceiver(t, ln, nil)
	// The deliveries stored for a retry (3 s after their first attempt) come back when due,
	// those in hand at the stop were handed back at once; a retry that still finds the
	// destination down waits up to 7.2 s more.
	waitFor(t, 90*time.Second, fmt.Sprintf("%d callbacks after the restart", n), func() bool { return len(down.delivered()) == n })
	dups := 0
	for _, c := range down.delivered() {
		dups += c - 1
	}
	var retried []string // Fanout-Attempt of the deliveries that were attempted before the stop
	for _, h := range down.all() {
		if a := h.Header.Get("Fanout-Attempt"); a != "1" {
			retried = append(retried, a)
		}
	}
	t.Logf("%d callbacks: %g connection failures before the stop, %d requests after the restart (Fanout-Attempt of those tried before: %v), %d duplicates",
		n, failedBefore, down.count(), retried, dups)
	if dups != 0 {
		t.Errorf("%d duplicates: a delivery that never reached the destination was delivered twice", dups)
	}
	waitFor(t, waitTimeout, "the queue to drain", func() bool {
		p, _, err := g2.queue.Load().Pending(ctx, "down")
		return err == nil && p == 0
	})
	if dead, err := g2.queue.Load().DeadLetterCount(ctx, "down"); err != nil || dead != 0 {
		t.Errorf("dead letters for down = %d, %v; want none", dead, err)
	}
}
