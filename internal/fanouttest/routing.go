package fanouttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The routing scenario: a config whose routes send each of Tencent's sample payloads to a
// different set of destinations, and what each destination must receive.

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
  extra_commands: [Fanout.Sentinel]
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
`, App, queueYAML, urls["archive"], urls["c2c"], urls["groups"], urls["moderation"],
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

// StartGateway runs a gateway, in process or a process, on the config file at config until
// the end of the test, and returns the addresses of its callback receiver and admin port.
type StartGateway func(t *testing.T, config string) (listen, admin string)

// RunRouting is the routing scenario on the gateway that start runs, with the given queue
// section (indented by two spaces): the payloads named in only (nil: every payload) are
// sent, then a sentinel that every destination receives last. Each payload must reach
// exactly the destinations its routes name, once, with its bytes unchanged and Fanout's
// delivery headers, and the metrics must agree.
func RunRouting(t *testing.T, queueYAML string, only []string, start StartGateway) {
	payloads := samplePayloads(t)
	for _, p := range payloads {
		if _, ok := routingExpect[p.Name]; !ok {
			t.Errorf("payload %s has no expectation in routingExpect: add it", p.Name)
		}
	}
	if only != nil {
		payloads = slices.DeleteFunc(payloads, func(p samplePayload) bool { return !slices.Contains(only, p.Name) })
		if len(payloads) != len(only) {
			t.Fatalf("found %d of the payloads %v", len(payloads), only)
		}
	}

	receivers := map[string]*Receiver{}
	urls := map[string]string{}
	for _, d := range routingDestinations {
		receivers[d] = NewReceiver(t, nil)
		urls[d] = receivers[d].URL() + "/hook/" + d
	}
	listen, admin := start(t, WriteConfig(t, routingConfig(queueYAML, urls)))
	accept := func(query string, body []byte) {
		t.Helper()
		if a := PostCallback(listen, query, body); !a.OK() {
			t.Fatalf("callback %s answered %d %s, want 200 %s", query, a.Status, a.Body, OKAnswer)
		}
	}

	began := time.Now().Unix()  // no attempt can be stamped earlier
	sent := map[string]string{} // payload name -> query sent
	for _, p := range payloads {
		q := CallbackQuery(App, p.Command)
		sent[p.Name] = q
		accept(q, p.Body)
	}
	// Wait for every expected copy, then send the sentinel: every destination receives it
	// after anything queued before it, so once it is everywhere, nothing else is coming.
	WaitForNone(t, WaitTimeout, "every expected delivery", func() []string {
		var missing []string
		for _, p := range payloads {
			for d := range routingExpect[p.Name] {
				if len(receivers[d].WithBody(p.Body)) == 0 {
					missing = append(missing, p.Name+" at "+d)
				}
			}
		}
		return missing
	})
	sentinel := fmt.Appendf(nil, `{"CallbackCommand":"Fanout.Sentinel","Nonce":%q}`, randomHex(8))
	accept(CallbackQuery(App, "Fanout.Sentinel"), sentinel)
	WaitFor(t, WaitTimeout, "the sentinel at every destination", func() bool {
		for _, rc := range receivers {
			if len(rc.WithBody(sentinel)) == 0 {
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
		hits := receivers[d].Requests()
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
				if len(receivers[d].WithBody(p.Body)) > 0 {
					got = append(got, d)
				}
			}
			if wantDests := slices.Sorted(maps.Keys(want)); !slices.Equal(slices.Sorted(slices.Values(got)), wantDests) {
				t.Fatalf("reached %v, want exactly %v", got, wantDests)
			}
			for _, d := range got {
				hits := receivers[d].WithBody(p.Body)
				if len(hits) != 1 {
					t.Errorf("%s received it %d times, want once", d, len(hits))
				}
				h := hits[0]
				checkDeliveryHeaders(t, d, h, want[d], sent[p.Name], began)
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
			n += len(rc.WithBody(payloadBody(t, payloads, p)))
		}
		if want := len(routingExpect[p]); n != want || n < 3 {
			t.Errorf("%s was delivered %d times, want %d: once to each of archive, c2c, signed and oncall", p, n, want)
		}
	})
	t.Run("one copy for a destination named by two routes", func(t *testing.T) {
		hits := receivers["signed"].WithBody(payloadBody(t, payloads, "C2C.CallbackAfterSendMsg.json"))
		if len(hits) != 1 || hits[0].Header.Get("Fanout-Route") != "jared,red-packet" {
			t.Errorf("signed received %d copies; want 1 with Fanout-Route \"jared,red-packet\"", len(hits))
		}
	})

	// The metrics agree: every callback accepted, each destination's deliveries counted.
	waitMetric := func(name string, labels map[string]string, want float64) {
		t.Helper()
		WaitFor(t, WaitTimeout, fmt.Sprintf("%s%v = %g", name, labels, want), func() bool {
			return ScrapeMetrics(t, "http://"+admin+"/metrics", "").Sum(name, labels) == want
		})
	}
	waitMetric("fanout_callbacks_total", map[string]string{"outcome": "ok"}, float64(len(payloads)+1))
	for _, d := range routingDestinations {
		waitMetric("fanout_deliveries_total", map[string]string{"destination": d, "outcome": "delivered"}, float64(wantCount[d]+1))
	}
}

// checkDeliveryHeaders checks the headers, method, path and query of the request a
// destination received; its attempt began at the Unix second began or later.
func checkDeliveryHeaders(t *testing.T, dest string, h Request, wantRoute, sentQuery string, began int64) {
	t.Helper()
	hd := h.Header
	if h.Method != http.MethodPost || h.Path != "/hook/"+dest {
		t.Errorf("%s: %s %s, want POST /hook/%s", dest, h.Method, h.Path, dest)
	}
	for name, want := range map[string]string{
		"Content-Type":   "application/json",
		"User-Agent":     "fanout/" + Version,
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
	if err != nil || sec < began || sec > h.At.Unix() {
		t.Errorf("%s: webhook-timestamp %q is not the Unix time of the attempt", dest, ts)
	}
	sig := hd.Get("Webhook-Signature")
	switch dest {
	case "signed":
		// One signature per secret, each verifiable with the secret alone.
		got := slices.Sorted(slices.Values(strings.Fields(sig)))
		var want []string
		for _, secret := range []string{signedSecretNew, signedSecretOld} {
			s, err := StandardWebhookSignature(secret, id, ts, h.Body)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, s)
		}
		if slices.Sort(want); !slices.Equal(got, want) {
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
		if err != nil || !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s: query %q, want the callback's %q", dest, h.RawQuery, sentQuery)
		}
	default:
		if h.RawQuery != "" {
			t.Errorf("%s: query %q without forward_query", dest, h.RawQuery)
		}
	}
}

// samplePayload is one of Tencent's sample callbacks.
type samplePayload struct {
	Name    string // file name
	Command string // its CallbackCommand
	Body    []byte // the file's bytes, sent as they are
}

// samplePayloads reads every sample payload, in name order.
func samplePayloads(t *testing.T) []samplePayload {
	t.Helper()
	var out []samplePayload
	for _, file := range PayloadFiles(t) {
		p := samplePayload{Name: filepath.Base(file), Body: Payload(t, filepath.Base(file))}
		var head struct{ CallbackCommand string }
		if err := json.Unmarshal(p.Body, &head); err != nil || head.CallbackCommand == "" {
			t.Fatalf("%s: no CallbackCommand in the body (%v)", file, err)
		}
		p.Command = head.CallbackCommand
		out = append(out, p)
	}
	return out
}

func payloadBody(t *testing.T, payloads []samplePayload, name string) []byte {
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
func payloadName(payloads []samplePayload, body, sentinel []byte) string {
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
