package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// Shared by the end-to-end tests of the gateway package: real gateways on an embedded
// JetStream in t.TempDir(), driven with the test kit (fanouttest: receivers, waits, Tencent's
// side, metrics).

// startGateway runs a Gateway on the config file at path; it is stopped at the end of the
// test, and its log is shown when the test failed.
func startGateway(t testing.TB, path string) *Gateway {
	t.Helper()
	g, _ := startGatewayWithLog(t, path)
	return g
}

// startGatewayWithLog is startGateway that also returns the gateway's log (text, from level
// info), for a test that reads it.
func startGatewayWithLog(t testing.TB, path string) (*Gateway, *fanouttest.SyncBuffer) {
	t.Helper()
	return startTuned(t, path, nil)
}

// startTuned is startGatewayWithLog with tune, when set, called between New and Start.
func startTuned(t testing.TB, path string, tune func(g *Gateway)) (*Gateway, *fanouttest.SyncBuffer) {
	t.Helper()
	logs := &fanouttest.SyncBuffer{}
	g, err := New(Options{
		ConfigPath: path,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Version:    fanouttest.Version,
	})
	if err != nil {
		t.Fatalf("New(%s): %v", path, err)
	}
	if tune != nil {
		tune(g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
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
	return g, logs
}

// stopGateway stops g within a bounded time. Stop is idempotent, so a test may stop a
// gateway early and the cleanup stops it again.
func stopGateway(t testing.TB, g *Gateway) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
	defer cancel()
	if err := g.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// writeQueueConfig writes a config file in a fresh folder and returns its path; QUEUE_DIR
// in text stands for a queue folder beside it (see withQueueDir).
func writeQueueConfig(t testing.TB, text string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "fanout.yaml")
	fanouttest.ReplaceFile(t, path, withQueueDir(dir, text))
	return path
}

// withQueueDir replaces QUEUE_DIR in a config's text with the queue folder of the config
// file in dir, quoted: the same folder whenever the file is written again.
func withQueueDir(dir, text string) string {
	return strings.ReplaceAll(text, "QUEUE_DIR", strconv.Quote(filepath.Join(dir, "queue")))
}

// answer is a gateway's reply to one request.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// send makes one request to addr, with header, and returns the answer: for the requests
// that are not a plain callback (another method or path, a forwarded-for header) and whose
// answer's headers matter.
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
	resp, err := fanouttest.Client.Do(req)
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

// callback POSTs a callback to g's callback path with query, as Tencent IM does, and fails
// the test when no answer came.
func callback(t testing.TB, g *Gateway, query string, body []byte) fanouttest.CallbackAnswer {
	t.Helper()
	a := fanouttest.PostCallback(g.CallbackAddr(), query, body)
	if a.Status == 0 {
		t.Fatalf("callback %s: no answer: %s", query, a.Body)
	}
	return a
}

// accept POSTs a callback and fails the test unless it is answered 200 with the OK JSON.
func accept(t testing.TB, g *Gateway, query string, body []byte) {
	t.Helper()
	if a := callback(t, g, query, body); !a.OK() {
		t.Fatalf("callback %s answered %d %s, want 200 %s", query, a.Status, a.Body, fanouttest.OKAnswer)
	}
}

// c2cQuery is the query of a C2C.CallbackAfterSendMsg callback of the tests' app.
var c2cQuery = fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg")

// acceptMessage sends the C2C message whose MsgKey is key (fanouttest.C2CMessage) and fails
// the test unless it is accepted.
func acceptMessage(t testing.TB, g *Gateway, key string) {
	t.Helper()
	accept(t, g, c2cQuery, fanouttest.C2CMessage(key))
}

// scrapeMetrics reads g's admin /metrics (without a token).
func scrapeMetrics(t testing.TB, g *Gateway) fanouttest.Metrics {
	t.Helper()
	return fanouttest.ScrapeMetrics(t, "http://"+g.AdminAddr()+"/metrics", "")
}

// waitMetric waits until the sum of the series of name with labels equals want.
func waitMetric(t testing.TB, g *Gateway, name string, labels map[string]string, want float64) {
	t.Helper()
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, fmt.Sprintf("%s%v = %g", name, labels, want), func() bool {
		return scrapeMetrics(t, g).Sum(name, labels) == want
	})
}
