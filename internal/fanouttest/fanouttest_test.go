package fanouttest

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestSign(t *testing.T) {
	// Tencent's published test vector (Webhook Overview, "Security Considerations").
	if got, want := Sign("xxxxyyyy", "1669872112"), "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	q, err := url.ParseQuery(SignedCallbackQuery(App, "C2C.CallbackAfterSendMsg", "xxxxyyyy", time.Unix(1669872112, 0)))
	if err != nil || q.Get("RequestTime") != "1669872112" || q.Get("Sign") != Sign("xxxxyyyy", "1669872112") ||
		q.Get("SdkAppid") != App || q.Get("CallbackCommand") != "C2C.CallbackAfterSendMsg" {
		t.Errorf("SignedCallbackQuery = %v, %v", q, err)
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(`# HELP fanout_deliveries_total Deliveries.
# TYPE fanout_deliveries_total counter
fanout_deliveries_total{destination="a",outcome="delivered"} 3
fanout_deliveries_total{destination="b",outcome="delivered"} 4
fanout_deliveries_total{destination="b",outcome="dead"} 1
fanout_deliveries_total_other 100
fanout_config_hash 1.5e+06 1700000000000
weird{path="a\"b\\c\nd",x="}"} 2
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"fanout_deliveries_total", nil, 8},
		{"fanout_deliveries_total", map[string]string{"outcome": "delivered"}, 7},
		{"fanout_deliveries_total", map[string]string{"destination": "b", "outcome": "dead"}, 1},
		{"fanout_deliveries_total", map[string]string{"destination": "c"}, 0},
		{"fanout_config_hash", nil, 1.5e6},
		{"weird", map[string]string{"path": "a\"b\\c\nd", "x": "}"}, 2},
	} {
		if got := m.Sum(c.name, c.labels); got != c.want {
			t.Errorf("Sum(%s, %v) = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
	for _, bad := range []string{"no_value", `x{a="1"`, `x{a=1} 2`, "x one"} {
		if _, err := ParseMetrics(bad); err == nil {
			t.Errorf("ParseMetrics(%q): no error", bad)
		}
	}
}

func TestConfigHash(t *testing.T) {
	// The first 6 bytes of SHA-256("") are e3b0c44298fc.
	if got, want := ConfigHash(""), float64(0xe3b0c44298fc); got != want {
		t.Errorf("ConfigHash(\"\") = %g, want %g", got, want)
	}
}

func TestReceiver(t *testing.T) {
	rc := NewReceiver(t, Statuses(503, 200))
	for i, want := range []int{503, 200, 200} {
		if a := PostCallback(rc.URL()[len("http://"):], CallbackQuery(App, "C2C.CallbackAfterSendMsg"), C2CMessage("k")); a.Status != want {
			t.Errorf("request %d answered %d, want %d", i+1, a.Status, want)
		}
	}
	reqs := rc.Requests()
	if len(reqs) != 3 || reqs[0].N != 1 || reqs[2].N != 3 || reqs[0].Path != "/callback" || reqs[0].Method != http.MethodPost ||
		MsgKey(reqs[0].Body) != "k" || reqs[0].Status != 503 {
		t.Fatalf("requests %+v", reqs)
	}
	if got := rc.Delivered(); got["k"] != 2 || len(got) != 1 {
		t.Errorf("Delivered = %v, want k twice (the 200s)", got)
	}
	if got := len(rc.ByKey("k")); got != 3 {
		t.Errorf("ByKey = %d requests, want 3", got)
	}

	// Answers that hold the request: in flight together, and the client leaving ends the wait.
	release := make(chan struct{})
	rc.SetAnswer(func(r Request) Answer {
		if r.Header.Get("X-Hold") != "" {
			<-release
		}
		return Answer{Status: http.StatusAccepted, Body: "held"}
	})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, rc.URL()+"/hold", nil)
			req.Header.Set("X-Hold", "1")
			if resp, err := Client.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
				t.Errorf("held request: %v, %v", resp, err)
			} else {
				resp.Body.Close()
			}
		})
	}
	WaitFor(t, WaitTimeout, "three requests in flight", func() bool { return rc.MaxInFlight() == 3 })
	close(release)
	wg.Wait()

	rc.SetAnswer(Reply(Answer{Delay: time.Hour}))
	quick := &http.Client{Timeout: 50 * time.Millisecond}
	if _, err := quick.Post(rc.URL(), "application/json", nil); err == nil {
		t.Error("a request answered after an hour came back within 50ms")
	}
	WaitFor(t, WaitTimeout, "the unanswered request", func() bool {
		r := rc.Requests()
		return len(r) == 7 && r[6].Status == 0 && rc.MaxInFlight() == 3
	})
}

// TestReceiverHold: a held request is answered once the test releases it, or left
// unanswered when its client gives up first; Keys and Missing count what came.
func TestReceiverHold(t *testing.T) {
	release := make(chan struct{})
	rc := NewReceiver(t, Reply(Answer{Status: http.StatusAccepted, Hold: release}))
	addr, query := rc.URL()[len("http://"):], CallbackQuery(App, "C2C.CallbackAfterSendMsg")

	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/callback?"+query, bytes.NewReader(C2CMessage("gone")))
		resp, err := Client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gaveUp <- err
	}()
	WaitFor(t, WaitTimeout, "the request its client gives up on", func() bool { return rc.InFlight() == 1 })
	cancel()
	if err := <-gaveUp; err == nil {
		t.Error("a held request was answered before its release")
	}
	WaitFor(t, WaitTimeout, "the receiver to see its client leave", func() bool { return rc.InFlight() == 0 })

	held := make(chan CallbackAnswer, 1)
	go func() { held <- PostCallback(addr, query, C2CMessage("held")) }()
	WaitFor(t, WaitTimeout, "the held request", func() bool { return rc.InFlight() == 1 })
	keys := []string{"gone", "held", "never"}
	if got := rc.Missing(keys); !slices.Equal(got, keys) {
		t.Errorf("Missing while held = %v, want %v", got, keys)
	}
	close(release)
	if a := <-held; a.Status != http.StatusAccepted {
		t.Errorf("released request answered %d, want 202", a.Status)
	}
	if got, want := rc.Missing(keys), []string{"gone", "never"}; !slices.Equal(got, want) {
		t.Errorf("Missing after the release = %v, want %v", got, want)
	}
	if got := rc.Keys(); len(got) != 2 || got["gone"] != 1 || got["held"] != 1 {
		t.Errorf("Keys = %v, want gone and held once each", got)
	}
	if r := rc.Requests(); r[0].Status != 0 || r[1].Status != http.StatusAccepted {
		t.Errorf("statuses %d and %d, want 0 (left unanswered) and 202", r[0].Status, r[1].Status)
	}
}

func TestMostWithin(t *testing.T) {
	start := time.Unix(1700000000, 0)
	var at []time.Time
	for _, ms := range []int{900, 0, 100, 950, 1000, 2500} { // unsorted on purpose
		at = append(at, start.Add(time.Duration(ms)*time.Millisecond))
	}
	if got := MostWithin(at, time.Second); got != 4 {
		t.Errorf("MostWithin(1s) = %d, want 4 (0, 100, 900 and 950 ms)", got)
	}
	if got := MostWithin(at, 50*time.Millisecond); got != 1 {
		t.Errorf("MostWithin(50ms) = %d, want 1", got)
	}
	if got := MostWithin(nil, time.Second); got != 0 {
		t.Errorf("MostWithin(nil) = %d, want 0", got)
	}
}
