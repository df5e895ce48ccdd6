package httpapi

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeReceiver answers every callback OK, after hold (when set) returns, and keeps what it
// was given.
type fakeReceiver struct {
	hold func()

	mu  sync.Mutex
	got []*Callback
}

func (f *fakeReceiver) Limits() Limits {
	return Limits{Path: "/callback", MaxBodyBytes: 1 << 20, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
}

func (f *fakeReceiver) Receive(_ context.Context, cb *Callback) Answer {
	if f.hold != nil {
		f.hold()
	}
	f.mu.Lock()
	f.got = append(f.got, cb)
	f.mu.Unlock()
	return Answer{Status: http.StatusOK, Body: []byte(`{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`)}
}

func (f *fakeReceiver) last() *Callback {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[len(f.got)-1]
}

// serveReceiver serves NewReceiver(r) on 127.0.0.1 for the test and returns its address.
func serveReceiver(t *testing.T, r Receiver, maxInFlight int) string {
	t.Helper()
	s := newReceiver(r, slog.New(slog.DiscardHandler), maxInFlight)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln, "", ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// TestReadBodyGrowsAsBytesArrive reproduces the receiver allocating whatever Content-Length
// announced before reading a byte: 600 connections sending only headers took hundreds of
// megabytes. The buffer now follows what arrives.
func TestReadBodyGrowsAsBytesArrive(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/callback", strings.NewReader(`{"a":1}`))
	r.ContentLength = 1 << 20 // announced, never sent
	body, err := readBody(r, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if cap(body) > 64<<10 {
		t.Errorf("a 7-byte body announced as 1 MiB took a %d-byte buffer", cap(body))
	}
}

// TestSlowBodyIsCutOff reproduces a client that sends its headers and then its body a
// byte at a time, or not at all, holding a connection and a buffer for 30 s. The read of a
// callback now ends after callbackReadTimeout: the connection is closed long before.
func TestSlowBodyIsCutOff(t *testing.T) {
	addr := serveReceiver(t, &fakeReceiver{}, DefaultMaxInFlight)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /callback HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":")
	deadline := 5 * callbackReadTimeout // far below the 30 s of old, far above the limit
	conn.SetReadDeadline(time.Now().Add(deadline))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("a callback whose body never came was answered %d", resp.StatusCode)
		}
		return
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was still open after %s", deadline)
	}
}

// TestTooManyCallbacksInFlight: past the cap, a callback is answered 503 with the FAIL JSON
// at once, before its body is read; below it again, callbacks are served.
func TestTooManyCallbacksInFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	f := &fakeReceiver{hold: func() {
		entered <- struct{}{}
		<-release
	}}
	addr := serveReceiver(t, f, 2)
	post := func() (int, string) {
		resp, err := http.Post("http://"+addr+"/callback?SdkAppid=1", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { post() })
	}
	<-entered
	<-entered
	status, body := post()
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"ActionStatus":"FAIL"`) {
		t.Errorf("a third callback with two in flight and a cap of 2: %d %s, want 503 FAIL", status, body)
	}
	close(release)
	wg.Wait()
	if status, _ := post(); status != http.StatusOK {
		t.Errorf("a callback below the cap again: %d", status)
	}
}

// TestForwardedForOverSeveralLines reproduces an allow_ips bypass: behind a proxy that adds
// its own X-Forwarded-For line, only the first line (the client's own say) was read. Every
// line is now read, in order.
func TestForwardedForOverSeveralLines(t *testing.T) {
	f := &fakeReceiver{}
	addr := serveReceiver(t, f, DefaultMaxInFlight)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/callback?SdkAppid=1", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Add("X-Forwarded-For", "203.0.113.7")  // the client's claim
	req.Header.Add("X-Forwarded-For", "198.51.100.9") // the trusted proxy's own line
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := f.last().ClientIP; got != netip.MustParseAddr("198.51.100.9") {
		t.Errorf("ClientIP = %s, want the address the proxy saw, 198.51.100.9", got)
	}
}
