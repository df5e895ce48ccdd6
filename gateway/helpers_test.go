package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Shared by the end-to-end tests of the gateway package: real HTTP receivers, real gateways
// on an embedded JetStream in t.TempDir(), and waits that poll a condition with a deadline.

// payloadsDir holds Tencent's sample callback bodies.
var payloadsDir = fanouttest.PayloadDir()

const (
	// testApp is the SdkAppid every test config accepts.
	testApp = "1400000000"

	// testVersion is the gateway's version in User-Agent: fanout/testVersion.
	testVersion = "e2e-test"

	// waitTimeout bounds a wait for a condition that should hold within a moment.
	waitTimeout = 30 * time.Second
)

// okAnswer is the answer Tencent expects for an accepted callback.
const okAnswer = `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`

// waitFor polls cond until it holds, and fails the test when timeout passes first.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitForNone polls missing until it returns nothing, and fails the test with what is
// still missing when timeout passes first.
func waitForNone(t testing.TB, timeout time.Duration, what string, missing func() []string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := missing()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; still missing: %v", timeout, what, left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers: the gateway's log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeConfig writes a config file in a fresh directory and returns its path.
func writeConfig(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fanout.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startGateway runs a Gateway on the config file at path; it is stopped at the end of the
// test, and its log is shown when the test failed.
func startGateway(t testing.TB, path string) *Gateway {
	t.Helper()
	return startTuned(t, path, nil)
}

// startTuned is startGateway with tune, when set, called between New and Start.
func startTuned(t testing.TB, path string, tune func(g *Gateway)) *Gateway {
	t.Helper()
	logs := &syncBuffer{}
	g, err := New(Options{
		ConfigPath: path,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Version:    testVersion,
	})
	if err != nil {
		t.Fatalf("New(%s): %v", path, err)
	}
	if tune != nil {
		tune(g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	t.Cleanup(func() {
		stopGateway(t, g)
		if t.Failed() {
			t.Logf("log of the gateway on %s:\n%s", g.CallbackAddr(), logs)
		}
	})
	return g
}

// stopGateway stops g within a bounded time. Stop is idempotent, so a test may stop a
// gateway early and the cleanup stops it again.
func stopGateway(t testing.TB, g *Gateway) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := g.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// tencentQuery is the query Tencent IM adds to a callback of app and command.
func tencentQuery(app, command string) string {
	return "SdkAppid=" + app + "&CallbackCommand=" + command + "&contenttype=json&ClientIP=203.0.113.9&OptPlatform=RESTAPI"
}

// answer is a gateway's reply to one request.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

var testClient = &http.Client{Timeout: waitTimeout}

// send makes one request to addr and returns the answer.
func send(t testing.TB, method, url string, body []byte, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// callback POSTs a callback to g's callback path with query.
func callback(t testing.TB, g *Gateway, query string, body []byte) answer {
	t.Helper()
	return send(t, http.MethodPost, "http://"+g.CallbackAddr()+"/callback?"+query, body, nil)
}

// accept POSTs a callback and fails the test unless it is answered 200 with the OK JSON.
func accept(t testing.TB, g *Gateway, query string, body []byte) {
	t.Helper()
	a := callback(t, g, query, body)
	if a.Status != http.StatusOK || string(a.Body) != okAnswer {
		t.Fatalf("callback %s answered %d %s, want 200 %s", query, a.Status, a.Body, okAnswer)
	}
}

// payload is one sample callback of the payloads folder.
type payload struct {
	Name    string // file name
	Command string // its CallbackCommand
	Body    []byte // the file's bytes, sent as they are
}

// loadPayloads reads every *.json of the payloads folder, in name order.
func loadPayloads(t testing.TB) []payload {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(payloadsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no payloads in %s: %v", payloadsDir, err)
	}
	var out []payload
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ CallbackCommand string }
		if err := json.Unmarshal(body, &head); err != nil || head.CallbackCommand == "" {
			t.Fatalf("%s: no CallbackCommand in the body (%v)", f, err)
		}
		out = append(out, payload{Name: filepath.Base(f), Command: head.CallbackCommand, Body: body})
	}
	return out
}

// c2cMessage is a C2C.CallbackAfterSendMsg body whose MsgKey is key.
func c2cMessage(key string) []byte {
	return fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh",`+
		`"MsgKey":%q,"SendMsgResult":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`, key)
}

// msgKey is the MsgKey of a callback body, "" when it has none.
func msgKey(body []byte) string {
	var m struct{ MsgKey string }
	_ = json.Unmarshal(body, &m)
	return m.MsgKey
}

// hit is one request a receiver got.
type hit struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	At       time.Time // when the receiver read it
	Status   int       // what the receiver answered (0 when it never did)
}

// answerFunc answers one request to a receiver and returns the status it wrote. n counts the
// receiver's requests from 1.
type answerFunc func(w http.ResponseWriter, r *http.Request, n int) int

// receiver is a downstream webhook: an httptest.Server on 127.0.0.1 that records every request.
type receiver struct {
	srv    *httptest.Server
	answer answerFunc

	mu   sync.Mutex
	hits []hit
}

// newReceiver starts a receiver that answers with answer (nil: 200 "ok").
func newReceiver(t testing.TB, answer answerFunc) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveReceiver(t, ln, answer)
}

// serveReceiver starts a receiver on ln; it is closed at the end of the test.
func serveReceiver(t testing.TB, ln net.Listener, answer answerFunc) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	rc.srv = srv
	t.Cleanup(srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.hits = append(rc.hits, hit{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: body, At: time.Now()})
	n := len(rc.hits)
	rc.mu.Unlock()
	status := http.StatusOK
	if rc.answer != nil {
		status = rc.answer(w, r, n)
	} else {
		io.WriteString(w, "ok")
	}
	rc.mu.Lock()
	rc.hits[n-1].Status = status
	rc.mu.Unlock()
}

// URL is the receiver's base URL.
func (rc *receiver) URL() string { return rc.srv.URL }

// all returns a copy of the requests so far.
func (rc *receiver) all() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.hits)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.hits)
}

// keys counts the requests by the MsgKey of their body.
func (rc *receiver) keys() map[string]int {
	m := map[string]int{}
	for _, h := range rc.all() {
		m[msgKey(h.Body)]++
	}
	return m
}

// delivered counts the requests by MsgKey that the receiver answered 2xx: the deliveries.
func (rc *receiver) delivered() map[string]int {
	m := map[string]int{}
	for _, h := range rc.all() {
		if h.Status >= 200 && h.Status <= 299 {
			m[msgKey(h.Body)]++
		}
	}
	return m
}

// withBody returns the requests whose body is exactly body.
func (rc *receiver) withBody(body []byte) []hit {
	var out []hit
	for _, h := range rc.all() {
		if bytes.Equal(h.Body, body) {
			out = append(out, h)
		}
	}
	return out
}

// metricSum scrapes g's admin /metrics and sums the samples of name whose labels include
// every pair of labels.
func metricSum(t testing.TB, g *Gateway, name string, labels map[string]string) float64 {
	t.Helper()
	a := send(t, http.MethodGet, "http://"+g.AdminAddr()+"/metrics", nil, nil)
	if a.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", a.Status, a.Body)
	}
	sum := 0.0
	sc := bufio.NewScanner(bytes.NewReader(a.Body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		got := map[string]string{}
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndex(rest, "}")
			got = parseLabels(t, rest[1:end])
			rest = rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric whose name starts with name
		}
		match := true
		for k, v := range labels {
			if got[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// parseLabels reads `a="x",b="y"` of the Prometheus text format.
func parseLabels(t testing.TB, s string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for s != "" {
		name, rest, ok := strings.Cut(s, `="`)
		if !ok {
			t.Fatalf("bad labels %q", s)
		}
		var val strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				switch rest[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(rest[i])
				}
				continue
			}
			val.WriteByte(rest[i])
		}
		m[strings.TrimPrefix(name, ",")] = val.String()
		s = strings.TrimPrefix(rest[min(i+1, len(rest)):], ",")
	}
	return m
}

// waitMetric waits until a metricSum equals want.
func waitMetric(t testing.TB, g *Gateway, name string, labels map[string]string, want float64) {
	t.Helper()
	var got float64
	waitFor(t, waitTimeout, fmt.Sprintf("%s%v = %g", name, labels, want), func() bool {
		got = metricSum(t, g, name, labels)
		return got == want
	})
}

// signStandardWebhook is the Standard Webhooks signature of body with secret (whsec_...),
// computed here from the specification rather than with the delivery package.
func signStandardWebhook(t testing.TB, secret, id, timestamp string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, timestamp)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// tencentSign is Tencent's Sign: hex SHA-256 of token + RequestTime.
func tencentSign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}
