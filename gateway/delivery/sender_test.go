package delivery

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

const (
	secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB = "whsec_c2Vjb25kIHNpZ25pbmcga2V5IGZvciByb3RhdGlvbg=="
	secretC = "whsec_dW5yZWxhdGVkIGtleQ=="
)

// verifiesWith reports whether a webhook-signature in h matches secret, computed the way the
// Standard Webhooks specification says a receiver does, independently of signature().
func verifiesWith(t *testing.T, secret string, h http.Header, body []byte) bool {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if version, value, _ := strings.Cut(sig, ","); version == "v1" && value == want {
			return true
		}
	}
	return false
}

func TestSendHeaders(t *testing.T) {
	rc := fanouttest.NewReceiver(t, status(200, "ok"))
	d := testDestination(t, rc.URL()+"/hook", func(d *Destination) {
		d.Headers = map[string]string{"Authorization": "Bearer abc", "X-Tenant": "t1"}
		d.SigningSecrets = []string{secretA, secretB}
	})
	job := testJob()
	before := time.Now().Unix()
	res := NewSender(SenderOptions{Version: "1.2.3"}).Send(testContext(t), d, job, Round{})
	after := time.Now().Unix()
	if res.Outcome != Delivered || res.Attempts != 1 || res.Status != 200 || res.Err != nil || res.BodyExcerpt != "" {
		t.Fatalf("Send = %+v, want delivered at the first attempt", res)
	}

	reqs := rc.Requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	want := map[string]string{
		"Accept-Encoding": "gzip", // added by net/http, which then decompresses the answer
		"Authorization":   "Bearer abc",
		"Content-Length":  strconv.Itoa(len(job.Body)),
		"Content-Type":    "application/json",
		"Fanout-Attempt":  "1",
		"Fanout-Route":    "vip,all-to-app",
		"User-Agent":      "fanout/1.2.3",
		"Webhook-Id":      "msg_ev1_audit",
		"X-Tenant":        "t1",
		// checked below
		"Webhook-Signature": got.Header.Get("Webhook-Signature"),
		"Webhook-Timestamp": got.Header.Get("Webhook-Timestamp"),
	}
	for _, k := range slices.Sorted(maps.Keys(got.Header)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected header %s: %q", k, got.Header.Values(k))
		}
	}
	for k, v := range want {
		if vs := got.Header.Values(k); len(vs) != 1 || vs[0] != v {
			t.Errorf("header %s = %q, want [%q]", k, vs, v)
		}
	}
	ts, err := strconv.ParseInt(got.Header.Get("Webhook-Timestamp"), 10, 64)
	if err != nil || ts < before || ts > after {
		t.Errorf("webhook-timestamp %q, want unix seconds in [%d, %d]", got.Header.Get("Webhook-Timestamp"), before, after)
	}
	if sigs := strings.Fields(got.Header.Get("Webhook-Signature")); len(sigs) != 2 {
		t.Errorf("webhook-signature %q: want two signatures, one per secret", sigs)
	}
	for _, secret := range []string{secretA, secretB} {
		if !verifiesWith(t, secret, got.Header, got.Body) {
			t.Errorf("webhook-signature %q does not verify with %s", got.Header.Get("Webhook-Signature"), secret)
		}
	}
	if verifiesWith(t, secretC, got.Header, got.Body) {
		t.Error("webhook-signature verifies with an unrelated secret")
	}
	if !bytes.Equal(got.Body, job.Body) {
		t.Errorf("body = %q, want the original bytes %q", got.Body, job.Body)
	}
	if got.RawQuery != "" {
		t.Errorf("query = %q, want none without forward_query", got.RawQuery)
	}
}

func TestSendWithoutSecretsHasNoSignature(t *testing.T) {
	rc := fanouttest.NewReceiver(t, status(200, ""))
	d := testDestination(t, rc.URL(), nil)
	job := testJob()
	job.Routes = nil
	NewSender(SenderOptions{}).Send(testContext(t), d, job, Round{})
	h := rc.Requests()[0].Header
	for _, k := range []string{"Webhook-Signature", "Fanout-Route"} {
		if v, ok := h[k]; ok {
			t.Errorf("header %s = %q, want none", k, v)
		}
	}
	if h.Get("Webhook-Id") == "" || h.Get("Webhook-Timestamp") == "" || h.Get("User-Agent") != "fanout/dev" {
		t.Errorf("headers %v: want webhook-id, webhook-timestamp and User-Agent fanout/dev", h)
	}
}

func TestSendForwardQuery(t *testing.T) {
	original, err := url.ParseQuery(testQuery)
	if err != nil {
		t.Fatal(err)
	}
	others := url.Values{} // the callback's query without Sign and RequestTime
	for k, v := range original {
		if k != "Sign" && k != "RequestTime" {
			others[k] = v
		}
	}
	tests := []struct {
		name    string
		path    string // appended to the receiver's URL
		forward bool
		token   string
		want    url.Values // without Sign and RequestTime
		signed  bool       // Sign and RequestTime present and made for token
	}{
		{name: "off", path: "/hook?k=v", want: url.Values{"k": {"v"}}},
		{name: "without token", path: "/hook", forward: true, want: others},
		{name: "with token", path: "/hook", forward: true, token: "xxxxyyyy", want: others, signed: true},
		{name: "merged with the URL's query", path: "/hook?k=v&SdkAppid=1", forward: true, token: "xxxxyyyy",
			want: merge(url.Values{"k": {"v"}, "SdkAppid": {"1"}}, others), signed: true},
		{name: "token only", path: "/hook", token: "xxxxyyyy", want: url.Values{}, signed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := fanouttest.NewReceiver(t, status(200, ""))
			d := testDestination(t, rc.URL()+tt.path, func(d *Destination) {
				d.ForwardQuery = tt.forward
				d.TIMToken = tt.token
			})
			before := time.Now().Unix()
			res := NewSender(SenderOptions{}).Send(testContext(t), d, testJob(), Round{})
			after := time.Now().Unix()
			if res.Outcome != Delivered {
				t.Fatalf("Send: %+v", res)
			}
			raw := rc.Requests()[0].RawQuery
			got, err := url.ParseQuery(raw)
			if err != nil {
				t.Fatalf("query %q: %v", raw, err)
			}
			sign, requestTime := got.Get("Sign"), got.Get("RequestTime")
			delete(got, "Sign")
			delete(got, "RequestTime")
			if !equalValues(got, tt.want) {
				t.Errorf("query %q:\n got %v\nwant %v", raw, got, tt.want)
			}
			if !tt.signed {
				if sign != "" || requestTime != "" {
					t.Errorf("query %q: want no Sign nor RequestTime", raw)
				}
				return
			}
			rt, err := strconv.ParseInt(requestTime, 10, 64)
			if err != nil || rt < before || rt > after {
				t.Errorf("RequestTime %q, want now in [%d, %d]", requestTime, before, after)
			}
			if want := tencentim.Sign(tt.token, requestTime); sign != want {
				t.Errorf("Sign = %q, want sha256(token+RequestTime) = %q", sign, want)
			}
		})
	}
}

func merge(a, b url.Values) url.Values {
	out := url.Values{}
	for _, v := range []url.Values{a, b} {
		for k, vs := range v {
			out[k] = append(out[k], vs...)
		}
	}
	return out
}

func equalValues(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestSendTransform(t *testing.T) {
	t.Run("applied", func(t *testing.T) {
		rc := fanouttest.NewReceiver(t, status(200, ""))
		d := testDestination(t, rc.URL(), func(d *Destination) {
			d.SigningSecrets = []string{secretA}
			d.Transform = func(_ string, b []byte) ([]byte, error) {
				return []byte(`{"msgtype":"text","len":` + strconv.Itoa(len(b)) + `}`), nil
			}
		})
		job := testJob()
		original := bytes.Clone(job.Body)
		res := NewSender(SenderOptions{}).Send(testContext(t), d, job, Round{})
		if res.Outcome != Delivered {
			t.Fatalf("Send: %+v", res)
		}
		got := rc.Requests()[0]
		if want := `{"msgtype":"text","len":` + strconv.Itoa(len(original)) + `}`; string(got.Body) != want {
			t.Errorf("body = %q, want %q", got.Body, want)
		}
		if !verifiesWith(t, secretA, got.Header, got.Body) {
			t.Error("the signature does not cover the transformed body")
		}
		if !bytes.Equal(job.Body, original) {
			t.Errorf("the job's body changed to %q", job.Body)
		}
	})
	t.Run("error", func(t *testing.T) {
		rc := fanouttest.NewReceiver(t, status(200, ""))
		d := testDestination(t, rc.URL(), func(d *Destination) {
			d.Transform = func(string, []byte) ([]byte, error) { return nil, errors.New("From_Account: not a string") }
		})
		var seen attempts
		res := NewSender(SenderOptions{Observe: seen.observe}).Send(testContext(t), d, testJob(), Round{})
		if res.Outcome != Dead || res.Reason != ReasonTransform || res.Attempts != 0 || !res.LastAttempt.IsZero() {
			t.Errorf("Send = %+v, want dead by transform without an attempt", res)
		}
		if want := `destination "audit": transform: From_Account: not a string`; res.Err == nil || res.Err.Error() != want {
			t.Errorf("Err = %v, want %s", res.Err, want)
		}
		if n := len(rc.Requests()); n != 0 || seen.get() != "" {
			t.Errorf("%d requests, observed %q; want none", n, seen.get())
		}
	})
}

func TestSendQuickRetries(t *testing.T) {
	tests := []struct {
		name         string
		first        int
		wantAttempts []string
	}{
		{"first delivery", 1, []string{"1", "2", "3"}},
		{"a later round", 4, []string{"4", "5", "6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := fanouttest.NewReceiver(t, fanouttest.Statuses(503, 503, 200))
			d := testDestination(t, rc.URL(), func(d *Destination) { d.Policy.MaxAttempts = 10 })
			var seen attempts
			before := time.Now()
			job := testJob()
			job.Attempt = tt.first
			res := NewSender(SenderOptions{Observe: seen.observe}).Send(testContext(t), d, job, Round{})
			if res.Outcome != Delivered || res.Attempts != 3 || res.Status != 200 || res.Err != nil || res.Reason != "2xx" {
				t.Fatalf("Send = %+v, want delivered after 3 attempts", res)
			}
			reqs := rc.Requests()
			var got []string
			for _, r := range reqs {
				got = append(got, r.Header.Get("Fanout-Attempt"))
				if id := r.Header.Get("Webhook-Id"); id != "msg_ev1_audit" {
					t.Errorf("webhook-id %q changed between attempts", id)
				}
			}
			if !slices.Equal(got, tt.wantAttempts) {
				t.Errorf("Fanout-Attempt = %v, want %v", got, tt.wantAttempts)
			}
			if want := "audit:5xx audit:5xx audit:2xx"; seen.get() != want {
				t.Errorf("observed %q, want %q", seen.get(), want)
			}
			if res.LastAttempt.Before(before) || res.LastAttempt.After(reqs[2].At) {
				t.Errorf("LastAttempt %s, want the start of the third attempt (before %s)", res.LastAttempt, reqs[2].At)
			}
		})
	}
}

func TestSendDeadAtOnce(t *testing.T) {
	// The 512-byte cut falls inside a two-byte character.
	body := "x" + strings.Repeat("é", 600)
	rc := fanouttest.NewReceiver(t, status(400, body))
	d := testDestination(t, rc.URL(), nil)
	res := NewSender(SenderOptions{}).Send(testContext(t), d, testJob(), Round{})
	if res.Outcome != Dead || res.Reason != "4xx" || res.Status != 400 || res.Attempts != 1 {
		t.Fatalf("Send = {%s %q %d attempts %d}, want dead 4xx 400 after 1 attempt", res.Outcome, res.Reason, res.Status, res.Attempts)
	}
	if want := "x" + strings.Repeat("é", 255) + "\uFFFD"; res.BodyExcerpt != want {
		t.Errorf("excerpt = %q (%d bytes), want %q", res.BodyExcerpt, len(res.BodyExcerpt), want)
	}
	if !utf8.ValidString(res.BodyExcerpt) {
		t.Error("excerpt is not valid UTF-8")
	}
	if n := len(rc.Requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

// TestSendRetryAfterQuick checks that a short Retry-After lengthens an in-process wait: the
// round plans its second attempt 2 s after the first, not after the policy's 1 ms, and makes
// it in-process. The plan is read from a round cancelled while it waits (its Result carries
// the planned wait), not measured with a clock.
func TestSendRetryAfterQuick(t *testing.T) {
	// The first attempt of each round is asked to wait 2 s.
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if r.Header.Get("Fanout-Attempt") == "1" {
			return fanouttest.Answer{Status: 429, Header: http.Header{"Retry-After": {"2"}}}
		}
		return fanouttest.Answer{Status: 200}
	})
	d := testDestination(t, rc.URL(), func(d *Destination) {
		d.Policy = Policy{MaxAttempts: 5, Initial: time.Millisecond, Max: 10 * time.Second, Multiplier: 2}
	})
	// Cancelled once the first attempt is classified, the round stops in its wait.
	ctx, cancel := context.WithCancel(testContext(t))
	waiting := NewSender(SenderOptions{Observe: func(Attempt) { cancel() }})
	res := waiting.Send(ctx, d, testJob(), Round{})
	if res.Outcome != Retry || res.Reason != Reason429 || res.Attempts != 1 || res.Delay != 2*time.Second {
		t.Fatalf("Send cancelled in its wait = %+v, want retry %q after 1 attempt with the 2s of Retry-After planned", res, Reason429)
	}

	res = NewSender(SenderOptions{}).Send(testContext(t), d, testJob(), Round{})
	if res.Outcome != Delivered || res.Attempts != 2 {
		t.Fatalf("Send = %+v, want delivered after 2 attempts", res)
	}
	if got := rc.Count(); got != 3 {
		t.Errorf("receiver got %d requests, want 3 (1 from the cancelled round, 2 from the other)", got)
	}
}

// TestSendEndsRoundOnLongWait: a wait longer than QuickRetryMax hands the job back to the
// queue at once, with the wait as the delay.
func TestSendEndsRoundOnLongWait(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter func() string
		policy     Policy
		min, max   time.Duration
	}{
		{"backoff", nil, Policy{MaxAttempts: 5, Initial: 10 * time.Second, Max: time.Hour, Multiplier: 2}, 10 * time.Second, 10 * time.Second},
		{"backoff with jitter", nil, Policy{MaxAttempts: 5, Initial: 10 * time.Second, Max: time.Hour, Multiplier: 2, Jitter: 0.2}, 8 * time.Second, 12 * time.Second},
		{"retry-after seconds", func() string { return "120" }, quickPolicyMax(time.Hour), 120 * time.Second, 120 * time.Second},
		{"retry-after capped at max", func() string { return "120" }, quickPolicyMax(time.Minute), time.Minute, time.Minute},
		{"retry-after date", func() string { return time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat) }, quickPolicyMax(time.Hour), 25 * time.Second, 30 * time.Second},
		{"retry-after shorter than backoff", func() string { return "1" }, Policy{MaxAttempts: 5, Initial: 10 * time.Second, Max: time.Hour, Multiplier: 2}, 10 * time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := fanouttest.NewReceiver(t, func(fanouttest.Request) fanouttest.Answer {
				a := fanouttest.Answer{Status: 503, Header: http.Header{}, Body: "busy"}
				if tt.retryAfter != nil {
					a.Header.Set("Retry-After", tt.retryAfter())
				}
				return a
			})
			d := testDestination(t, rc.URL(), func(d *Destination) { d.Policy = tt.policy })
			res := NewSender(SenderOptions{}).Send(testContext(t), d, testJob(), Round{})
			if res.Outcome != Retry || res.Reason != "5xx" || res.Attempts != 1 || res.Status != 503 || res.BodyExcerpt != "busy" {
				t.Fatalf("Send = %+v, want retry after 1 attempt", res)
			}
			if res.Delay < tt.min || res.Delay > tt.max {
				t.Errorf("Delay = %s, want in [%s, %s]", res.Delay, tt.min, tt.max)
			}
			if n := len(rc.Requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func quickPolicyMax(max time.Duration) Policy {
	return Policy{MaxAttempts: 5, Initial: time.Millisecond, Max: max, Multiplier: 2}
}

func TestSendExhausted(t *testing.T) {
	closedURL := "http://" + fanouttest.FreeAddr(t) // nothing listens there

	tests := []struct {
		name       string
		answer     fanouttest.AnswerFunc // nil: nobody listens
		edit       func(d *Destination, job *queue.Job)
		first      int
		reason     string
		attempts   int
		status     int
		excerpt    string
		lastHeader string // Fanout-Attempt of the last request
	}{
		{
			name: "max attempts", answer: status(503, "down"), first: 1,
			edit:   func(d *Destination, _ *queue.Job) { d.Policy.MaxAttempts = 3 },
			reason: ReasonMaxAttempts, attempts: 3, status: 503, excerpt: "down", lastHeader: "3",
		},
		{
			name: "max attempts on a later round", answer: status(500, "down"), first: 3,
			edit:   func(d *Destination, _ *queue.Job) { d.Policy.MaxAttempts = 3 },
			reason: ReasonMaxAttempts, attempts: 1, status: 500, excerpt: "down", lastHeader: "3",
		},
		{
			name: "max attempts, nobody listening", answer: nil, first: 1,
			edit:   func(d *Destination, _ *queue.Job) { d.Policy.MaxAttempts = 2 },
			reason: ReasonMaxAttempts, attempts: 2,
		},
		{
			name: "max age", answer: status(503, "down"), first: 1,
			edit: func(d *Destination, job *queue.Job) {
				d.Policy.MaxAge = time.Hour
				job.ReceivedAt = time.Now().Add(-time.Hour)
			},
			reason: ReasonMaxAge, attempts: 1, status: 503, excerpt: "down", lastHeader: "1",
		},
		{
			name:   "max age reached by a retry-after",
			answer: fanouttest.Reply(fanouttest.Answer{Status: 429, Header: http.Header{"Retry-After": {"120"}}}),
			first:  1,
			edit: func(d *Destination, _ *queue.Job) {
				d.Policy.Max = time.Hour
				d.Policy.MaxAge = time.Minute
			},
			reason: ReasonMaxAge, attempts: 1, status: 429, lastHeader: "1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := closedURL
			var rc *fanouttest.Receiver
			if tt.answer != nil {
				rc = fanouttest.NewReceiver(t, tt.answer)
				url = rc.URL()
			}
			job := testJob()
			d := testDestination(t, url, func(d *Destination) { tt.edit(d, &job) })
			job.Attempt = tt.first
			res := NewSender(SenderOptions{}).Send(testContext(t), d, job, Round{})
			if res.Outcome != Dead || res.Reason != tt.reason || res.Attempts != tt.attempts || res.Status != tt.status || res.BodyExcerpt != tt.excerpt {
				t.Errorf("Send = {%s %q attempts %d status %d excerpt %q}, want {dead %q attempts %d status %d excerpt %q}",
					res.Outcome, res.Reason, res.Attempts, res.Status, res.BodyExcerpt, tt.reason, tt.attempts, tt.status, tt.excerpt)
			}
			if res.Err == nil {
				t.Error("Err = nil, want the last attempt's error")
			}
			if rc != nil {
				reqs := rc.Requests()
				if len(reqs) != tt.attempts || reqs[len(reqs)-1].Header.Get("Fanout-Attempt") != tt.lastHeader {
					t.Errorf("%d requests, want %d ending with Fanout-Attempt %s", len(reqs), tt.attempts, tt.lastHeader)
				}
			}
		})
	}
}

// TestSendReusesConnections: answers are drained so that keep-alive connections are reused,
// and a destination that cannot be reached does not close the pooled connections of others.
func TestSendReusesConnections(t *testing.T) {
	big := strings.Repeat("e", 10<<10)
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		return fanouttest.Answer{Status: []int{400, 200, 410}[r.N%3], Body: big}
	})
	closed := fanouttest.FreeAddr(t) // nothing listens there

	s := NewSender(SenderOptions{})
	ctx := testContext(t)
	good := testDestination(t, rc.URL(), nil)
	down := testDestination(t, "http://"+closed, func(d *Destination) { d.Policy.MaxAttempts = 1 })
	for i := range 9 {
		if res := s.Send(ctx, good, testJob(), Round{}); res.Attempts != 1 {
			t.Fatalf("Send %d: %+v", i, res)
		}
		if res := s.Send(ctx, down, testJob(), Round{}); res.Reason != ReasonMaxAttempts {
			t.Fatalf("Send %d to a closed port: %+v", i, res)
		}
	}
	if n := rc.Connections(); n != 1 {
		t.Errorf("receiver saw %d connections for 9 sequential requests, want 1", n)
	}
}

// TestSendErrorsHideSecrets: the URL's userinfo and query never reach Result.Err.
func TestSendErrorsHideSecrets(t *testing.T) {
	closed := fanouttest.FreeAddr(t)                                                         // nothing listens there
	hang := fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Delay: time.Hour})) // answers after the client gave up
	for _, base := range []string{"http://" + closed, hang.URL()} {
		u := strings.Replace(base, "http://", "http://robot:pa55word@", 1) + "/hook?access_token=t0ken"
		d := testDestination(t, u, func(d *Destination) {
			d.Timeout = 50 * time.Millisecond
			d.Policy.MaxAttempts = 1
		})
		res := NewSender(SenderOptions{}).Send(testContext(t), d, testJob(), Round{})
		if res.Err == nil {
			t.Fatalf("Send to %s: no error", base)
		}
		for _, secret := range []string{"pa55word", "t0ken"} {
			if strings.Contains(res.Err.Error(), secret) {
				t.Errorf("Err %q shows %q", res.Err, secret)
			}
		}
	}
}

// TestSuccessWhen: a receiver that answers 200 with an error code in the body (a chat bot's
// rate limit) is retried when success_when says so, with the reason and an excerpt, and
// delivered once the code is 0; a 500 that success_when accepts is delivered.
func TestSuccessWhen(t *testing.T) {
	bot := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if r.N < 3 {
			return fanouttest.Answer{Body: `{"errcode":130101,"errmsg":"send too fast"}`}
		}
		return fanouttest.Answer{Body: `{"errcode":0,"errmsg":"ok"}`}
	})
	success := func(status int, _ http.Header, body []byte) (bool, error) {
		var b struct{ Errcode *int }
		if err := json.Unmarshal(body, &b); err != nil || b.Errcode == nil {
			return false, errors.New("no errcode")
		}
		return status == 200 && *b.Errcode == 0, nil
	}
	d := testDestination(t, bot.URL(), func(d *Destination) {
		d.Success = success
		d.Policy = Policy{MaxAttempts: 5, Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1}
	})
	var seen attempts
	res := NewSender(SenderOptions{Observe: seen.observe}).Send(testContext(t), d, testJob(), Round{})
	if res.Outcome != Delivered || res.Attempts != 3 {
		t.Fatalf("Send = %+v, want delivered at the third attempt", res)
	}
	if got, want := seen.get(), "audit:success_when audit:success_when audit:2xx"; got != want {
		t.Errorf("attempts observed: %q, want %q", got, want)
	}

	// Every answer says no: dead after max_attempts, with the reason and the body.
	d = testDestination(t, fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Body: `{"errcode":310000,"errmsg":"keywords not in content"}`})).URL(), func(d *Destination) {
		d.Success = success
		d.Policy = Policy{MaxAttempts: 2, Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1}
	})
	res = NewSender(SenderOptions{}).Send(testContext(t), d, testJob(), Round{})
	if res.Outcome != Dead || res.Reason != ReasonMaxAttempts || res.Status != 200 ||
		!strings.Contains(res.BodyExcerpt, "keywords not in content") || !strings.Contains(res.Err.Error(), "success_when is false") {
		t.Errorf("Send = %+v, %v; want dead after 2 attempts, status 200, the errmsg in the excerpt", res, res.Err)
	}

	// success_when decides alone: a 500 it accepts is delivered.
	d = testDestination(t, fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Status: 500, Body: `{"errcode":0}`})).URL(), func(d *Destination) {
		d.Success = func(int, http.Header, []byte) (bool, error) { return true, nil }
	})
	if res := NewSender(SenderOptions{}).Send(testContext(t), d, testJob(), Round{}); res.Outcome != Delivered {
		t.Errorf("Send = %+v, want delivered", res)
	}
}
