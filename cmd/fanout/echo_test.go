package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// mtEcho is one in-process run of `fanout echo`: its output, and how to stop it.
type mtEcho struct {
	addr   string
	stdout *fanouttest.SyncBuffer
	stderr *fanouttest.SyncBuffer
	stop   func() error // cancels the context and returns runEcho's error
}

// mtStartEcho runs runEcho with args on a free loopback port, and returns once it listens.
// runEcho is called directly (not run, whose context ends only on a signal to the process).
func mtStartEcho(t *testing.T, args ...string) *mtEcho {
	t.Helper()
	e := &mtEcho{addr: fanouttest.FreeAddr(t), stdout: &fanouttest.SyncBuffer{}, stderr: &fanouttest.SyncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runEcho(ctx, append([]string{"--listen", e.addr}, args...), strings.NewReader(""), e.stdout, e.stderr)
	}()
	var once bool
	var result error
	e.stop = func() error {
		if !once {
			once = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(fanouttest.WaitTimeout):
				t.Fatalf("fanout echo did not stop within %s", fanouttest.WaitTimeout)
			}
		}
		return result
	}
	t.Cleanup(func() { _ = e.stop() })
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "fanout echo to listen", func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("fanout echo ended early: %v\nstderr: %s", err, e.stderr)
		default:
		}
		return strings.Contains(e.stderr.String(), "listening on http://"+e.addr)
	})
	return e
}

// mtPost sends a callback as Fanout would forward it, and returns the status and body.
func mtPost(t *testing.T, addr, pathQuery, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+pathQuery, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "fanout/test")
	req.Header.Set("Fanout-Route", "c2c,all")
	req.Header.Set("Fanout-Attempt", "1")
	req.Header.Set("webhook-id", "msg_mt123")
	resp, err := fanouttest.Client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", pathQuery, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestEchoPrintsForwardedCallback checks that `fanout echo` prints the request line, the
// headers and the pretty-printed JSON body of what it receives, answers Tencent's OK, and
// with --fail-ratio 1 answers --status instead.
func TestEchoPrintsForwardedCallback(t *testing.T) {
	const pathQuery = "/hook/c2c?SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg"
	const body = `{"CallbackCommand":"C2C.CallbackAfterSendMsg","MsgKey":"mt-1","MsgBody":[{"MsgType":"TIMTextElem"}]}`

	e := mtStartEcho(t)
	status, answer := mtPost(t, e.addr, pathQuery, body)
	if status != http.StatusOK || answer != fanouttest.OKAnswer {
		t.Errorf("echo answered %d %s, want 200 %s", status, answer, fanouttest.OKAnswer)
	}
	if err := e.stop(); err != nil {
		t.Errorf("runEcho returned %v after its context was cancelled, want nil", err)
	}
	out := e.stdout.String()
	for _, want := range []string{
		"--- #1 ",
		"  POST " + pathQuery + "  -> 200\n",
		"\nContent-Type: application/json\n",
		"\nFanout-Attempt: 1\n",
		"\nFanout-Route: c2c,all\n",
		"\nUser-Agent: fanout/test\n",
		"\nWebhook-Id: msg_mt123\n",
		// the body, indented by two spaces
		"\n{\n  \"CallbackCommand\": \"C2C.CallbackAfterSendMsg\",\n  \"MsgKey\": \"mt-1\",\n" +
			"  \"MsgBody\": [\n    {\n      \"MsgType\": \"TIMTextElem\"\n    }\n  ]\n}\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("echo output lacks %q:\n%s", want, out)
		}
	}
	// Headers are printed in name order.
	if i, j := strings.Index(out, "Content-Type:"), strings.Index(out, "Webhook-Id:"); i < 0 || j < 0 || i > j {
		t.Errorf("headers not in name order:\n%s", out)
	}

	t.Run("fail", func(t *testing.T) {
		e := mtStartEcho(t, "--fail-ratio", "1", "--status", "503")
		status, answer := mtPost(t, e.addr, pathQuery, body)
		if status != http.StatusServiceUnavailable || !strings.Contains(answer, "503") {
			t.Errorf("echo --fail-ratio 1 --status 503 answered %d %s, want 503", status, answer)
		}
		if err := e.stop(); err != nil {
			t.Errorf("runEcho returned %v, want nil", err)
		}
		if out := e.stdout.String(); !strings.Contains(out, "  POST "+pathQuery+"  -> 503\n") {
			t.Errorf("echo output lacks the 503 request line:\n%s", out)
		}
	})
}
