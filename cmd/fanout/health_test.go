package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(healthTimeout + time.Second)
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()

	for _, c := range []struct {
		name   string
		args   []string
		env    string
		status int
		want   int
		stderr string
	}{
		{"ok", []string{"--url", srv.URL + "/healthz"}, "", 200, exitOK, ""},
		{"env", nil, srv.URL + "/healthz", 200, exitOK, ""},
		{"flag over env", []string{"--url", srv.URL + "/healthz"}, "http://127.0.0.1:1/healthz", 200, exitOK, ""},
		{"503", []string{"--url", srv.URL + "/healthz"}, "", 503, exitFailed, "503 Service Unavailable"},
		{"timeout", []string{"--url", srv.URL + "/slow"}, "", 200, exitFailed, "no answer within 2s"},
		{"refused", []string{"--url", "http://127.0.0.1:1/healthz"}, "", 200, exitFailed, "connection refused"},
		{"bad url", []string{"--url", "127.0.0.1:9090/healthz"}, "", 200, exitUsage, "want an http:// or https:// URL"},
		{"argument", []string{"extra"}, "", 200, exitUsage, "unexpected argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("FANOUT_HEALTH_URL", c.env)
			status.Store(int32(c.status))
			var stdout, stderr bytes.Buffer
			got := run(append([]string{"health"}, c.args...), nil, &stdout, &stderr)
			if got != c.want {
				t.Fatalf("exit %d, want %d; stderr: %s", got, c.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), c.stderr)
			}
		})
	}
}
