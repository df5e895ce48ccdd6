package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// routeConfig has a signed app, an allowlist, and routes that tell the query serve builds.
const routeConfig = `tencent:
  apps:
    - {sdkappid: 1400000000, token: s3cret}
    - {sdkappid: 1400000001}
  max_clock_skew: 60s
  allow_ips: [203.0.113.0/24]
destinations:
  audit: {url: "http://127.0.0.1:8001/events"}
routes:
  - name: all
    to: [audit]
  - name: ios
    when: query.OptPlatform == "iOS"
    to: [audit]
  - name: not-protocol
    when: query.foo == "bar"
    to: [audit]
`

// routeRun runs fanout route --format json on C2C.CallbackAfterSendMsg with args.
func routeRun(t *testing.T, args ...string) (int, []routeResult, string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(routeConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	payload := filepath.Join(fanouttest.PayloadDir(), "C2C.CallbackAfterSendMsg.json")
	var stdout, stderr bytes.Buffer
	code := run(append(append([]string{"route", "--config", cfg, "--format", "json"}, args...), payload),
		strings.NewReader(""), &stdout, &stderr)
	var results []routeResult
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, &stdout)
		}
	}
	return code, results, stderr.String()
}

// TestRouteAnswersAsServe: a callback serve would refuse is reported with serve's status
// and FAIL answer, and exit 1; the query the rules see is serve's.
func TestRouteAnswersAsServe(t *testing.T) {
	now := time.Now().Unix()
	signed := func(token string, requestTime int64) string {
		rt := strconv.FormatInt(requestTime, 10)
		return "RequestTime=" + rt + "&Sign=" + tencentim.Sign(token, rt)
	}
	tests := []struct {
		name      string
		args      []string
		status    int
		reason    string
		info      string // ErrorInfo of the FAIL answer, a regular expression
		routes    []string
		unchecked []string
	}{
		{name: "unsigned dry run", status: 200, routes: []string{"all"}, unchecked: []string{
			"Sign and RequestTime (the app has a token; give them in --query to check them)",
			"the source address (tencent.allow_ips; give --remote-addr to check it)"}},
		{name: "signed", args: []string{"--query", signed("s3cret", now), "--remote-addr", "203.0.113.9"},
			status: 200, routes: []string{"all"}},
		{name: "serve's query map", args: []string{"--query", "SdkAppid=1400000001&OptPlatform=iOS&foo=bar", "--remote-addr", "203.0.113.9"},
			status: 200, routes: []string{"all", "ios"}},
		{name: "unknown SdkAppid", args: []string{"--query", "SdkAppid=1400000009"},
			status: 403, reason: "unknown_app", info: `SdkAppid "1400000009" is not configured`,
			unchecked: []string{"the source address (tencent.allow_ips; give --remote-addr to check it)"}},
		{name: "source address outside allow_ips", args: []string{"--query", "SdkAppid=1400000001", "--remote-addr", "198.51.100.1"},
			status: 403, reason: "ip_not_allowed", info: `source address 198\.51\.100\.1 is not in allow_ips`},
		{name: "wrong Sign", args: []string{"--query", signed("other", now), "--remote-addr", "203.0.113.9"},
			status: 401, reason: "bad_sign", info: "Sign does not match the token configured for SdkAppid 1400000000"},
		{name: "RequestTime without Sign", args: []string{"--query", fmt.Sprintf("RequestTime=%d", now), "--remote-addr", "203.0.113.9"},
			status: 401, reason: "missing_sign", info: "Sign is missing: callback authentication is on for SdkAppid 1400000000"},
		{name: "stale RequestTime", args: []string{"--query", signed("s3cret", now-7200), "--remote-addr", "203.0.113.9"},
			status: 401, reason: "stale_request", info: fmt.Sprintf(`RequestTime %d is 2h0m\d+s older than the server clock \(max_clock_skew 1m0s\)`, now-7200)},
		{name: "RequestTime in milliseconds", args: []string{"--query", signed("s3cret", now*1000), "--remote-addr", "203.0.113.9"},
			status: 401, reason: "bad_request_time", info: fmt.Sprintf(`RequestTime %d looks like milliseconds: Tencent IM sends Unix seconds \(%d\)`, now*1000, now)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, results, stderr := routeRun(t, tt.args...)
			if len(results) != 1 {
				t.Fatalf("exit %d, %d results, stderr %s", code, len(results), stderr)
			}
			r := results[0]
			wantCode := exitOK
			if tt.status != 200 {
				wantCode = exitFailed
			}
			if code != wantCode || r.Status != tt.status || r.Reason != tt.reason {
				t.Errorf("exit %d, status %d %s; want exit %d, status %d %s", code, r.Status, r.Reason, wantCode, tt.status, tt.reason)
			}
			var answer struct{ ActionStatus, ErrorInfo string }
			if tt.info != "" {
				if err := json.Unmarshal(r.Answer, &answer); err != nil {
					t.Fatalf("answer %s: %v", r.Answer, err)
				}
				if re := regexp.MustCompile("^" + tt.info + "$"); answer.ActionStatus != "FAIL" || !re.MatchString(answer.ErrorInfo) {
					t.Errorf("answer %s, want FAIL with ErrorInfo matching %s", r.Answer, re)
				}
			}
			if tt.status != 200 && (len(r.Routes) != 0 || len(r.Deliveries) != 0) {
				t.Errorf("a refused callback lists routes %v and deliveries %v", r.Routes, r.Deliveries)
			}
			if fmt.Sprint(r.Routes) != fmt.Sprint(orEmpty(tt.routes)) || fmt.Sprint(r.Unchecked) != fmt.Sprint(tt.unchecked) {
				t.Errorf("routes %v, unchecked %q; want %v, %q", r.Routes, r.Unchecked, tt.routes, tt.unchecked)
			}
		})
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// TestRouteRefusedText: the text output names serve's answer.
func TestRouteRefusedText(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(routeConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"route", "--config", cfg, "--query", "SdkAppid=1400000009", "--remote-addr", "203.0.113.9", "-"},
		strings.NewReader(`{"CallbackCommand": "C2C.CallbackAfterSendMsg"}`), &stdout, &stderr)
	want := "-  (C2C.CallbackAfterSendMsg, SdkAppid 1400000009)\n" +
		`  refused: serve answers 403 {"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"SdkAppid \"1400000009\" is not configured"}` + "\n\n"
	if code != exitFailed || stdout.String() != want {
		t.Errorf("exit %d, output:\n%s\nwant:\n%s", code, &stdout, want)
	}
}

// TestRouteExpectUnknownRoute: --expect naming a route the config lacks says so.
func TestRouteExpectUnknownRoute(t *testing.T) {
	code, results, stderr := routeRun(t, "--expect", "all,al")
	want := `fanout route: --expect names route "al", which `
	if code != exitFailed || len(results) != 0 || !strings.HasPrefix(stderr, want) ||
		!strings.HasSuffix(stderr, " does not have (its routes: all, ios, not-protocol)\n") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
