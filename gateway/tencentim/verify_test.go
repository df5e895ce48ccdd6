package tencentim

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const (
	signedApp   = "1400000000"
	signedToken = "xxxxyyyy"
	openApp     = "1400000001" // no token: callback authentication off
	vectorTime  = 1669872112   // RequestTime of Tencent's published vector
)

func mustVerifier(t testing.TB, o Options) *Verifier {
	t.Helper()
	v, err := NewVerifier(o)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// signedQuery is a query for signedApp at requestTime, signed with token.
func signedQuery(token string, requestTime int64) Query {
	rt := fmt.Sprint(requestTime)
	return Query{SdkAppID: signedApp, CallbackCommand: "C2C.CallbackAfterSendMsg", Sign: Sign(token, rt), RequestTime: rt}
}

func TestVerify(t *testing.T) {
	now := time.Unix(vectorTime, 0)
	v := mustVerifier(t, Options{
		Apps:         []App{{SdkAppID: signedApp, Token: signedToken}, {SdkAppID: openApp}},
		MaxClockSkew: time.Minute,
		Now:          func() time.Time { return now },
	})
	remote := netip.MustParseAddr("203.0.113.9")
	vector := signedQuery(signedToken, vectorTime)

	tests := []struct {
		name       string
		q          Query
		wantStatus int // 0: accepted
		wantReason string
		wantInfo   string // substring of Info
	}{
		{name: "published vector", q: vector},
		{name: "upper-case hex Sign", q: with(vector, func(q *Query) { q.Sign = strings.ToUpper(q.Sign) })},
		{name: "oldest accepted", q: signedQuery(signedToken, vectorTime-60)},
		{name: "newest accepted", q: signedQuery(signedToken, vectorTime+60)},
		{name: "app without token needs no Sign", q: Query{SdkAppID: openApp}},
		{name: "app without token ignores a bad Sign", q: Query{SdkAppID: openApp, Sign: "nope", RequestTime: "0"}},

		{name: "SdkAppid missing", q: with(vector, func(q *Query) { q.SdkAppID = "" }),
			wantStatus: 403, wantReason: "missing_app", wantInfo: "SdkAppid is missing"},
		{name: "SdkAppid not configured", q: with(vector, func(q *Query) { q.SdkAppID = "1499999999" }),
			wantStatus: 403, wantReason: "unknown_app", wantInfo: `SdkAppid "1499999999" is not configured`},
		{name: "long SdkAppid is clipped in Info", q: Query{SdkAppID: strings.Repeat("9", 1000)},
			wantStatus: 403, wantReason: "unknown_app", wantInfo: strings.Repeat("9", 64) + `..." is not configured`},
		{name: "Sign missing", q: with(vector, func(q *Query) { q.Sign = "" }),
			wantStatus: 401, wantReason: "missing_sign", wantInfo: "Sign is missing"},
		{name: "RequestTime missing", q: with(vector, func(q *Query) { q.RequestTime = "" }),
			wantStatus: 401, wantReason: "missing_sign", wantInfo: "RequestTime is missing"},
		{name: "both missing", q: Query{SdkAppID: signedApp},
			wantStatus: 401, wantReason: "missing_sign", wantInfo: "Sign is missing"},
		{name: "RequestTime not a number", q: Query{SdkAppID: signedApp, Sign: Sign(signedToken, "soon"), RequestTime: "soon"},
			wantStatus: 401, wantReason: "bad_request_time", wantInfo: `RequestTime "soon" is not Unix seconds`},
		{name: "RequestTime in milliseconds overflows", q: Query{SdkAppID: signedApp, Sign: Sign(signedToken, "99999999999999999999"), RequestTime: "99999999999999999999"},
			wantStatus: 401, wantReason: "bad_request_time", wantInfo: "is not Unix seconds"},
		{name: "Sign too short", q: with(vector, func(q *Query) { q.Sign = q.Sign[:63] }),
			wantStatus: 401, wantReason: "bad_sign", wantInfo: "Sign is not 64 hex digits (got 63 characters)"},
		{name: "Sign not hex", q: with(vector, func(q *Query) { q.Sign = "z" + q.Sign[1:] }),
			wantStatus: 401, wantReason: "bad_sign", wantInfo: "Sign is not 64 hex digits"},
		{name: "Sign from another token", q: signedQuery("other-token", vectorTime),
			wantStatus: 401, wantReason: "bad_sign", wantInfo: "Sign does not match the token configured for SdkAppid 1400000000"},
		{name: "Sign for another RequestTime", q: with(vector, func(q *Query) { q.RequestTime = fmt.Sprint(vectorTime + 1) }),
			wantStatus: 401, wantReason: "bad_sign", wantInfo: "Sign does not match"},
		{name: "wrong Sign and stale reports the Sign", q: signedQuery("other-token", vectorTime-3600),
			wantStatus: 401, wantReason: "bad_sign", wantInfo: "Sign does not match"},
		{name: "stale: one second too old", q: signedQuery(signedToken, vectorTime-61),
			wantStatus: 401, wantReason: "stale_request", wantInfo: "RequestTime 1669872051 is 1m1s older than the server clock (max_clock_skew 1m0s)"},
		{name: "stale: one second too far ahead", q: signedQuery(signedToken, vectorTime+61),
			wantStatus: 401, wantReason: "stale_request", wantInfo: "RequestTime 1669872173 is 1m1s ahead of the server clock (max_clock_skew 1m0s)"},
		{name: "stale: replay from a day ago", q: signedQuery(signedToken, vectorTime-86400),
			wantStatus: 401, wantReason: "stale_request", wantInfo: "older than the server clock"},
		{name: "stale: far future is clamped", q: signedQuery(signedToken, 1<<62),
			wantStatus: 401, wantReason: "stale_request", wantInfo: "RequestTime 4611686018427387904 is more than 100 years ahead of the server clock (max_clock_skew 1m0s)"},
		{name: "stale: negative time is clamped", q: signedQuery(signedToken, -1<<62),
			wantStatus: 401, wantReason: "stale_request", wantInfo: "RequestTime -4611686018427387904 is more than 100 years older than the server clock (max_clock_skew 1m0s)"},
		{name: "stale: a year ahead", q: signedQuery(signedToken, vectorTime+365*86400),
			wantStatus: 401, wantReason: "stale_request", wantInfo: "RequestTime 1701408112 is 8760h0m0s ahead of the server clock (max_clock_skew 1m0s)"},
		{name: "RequestTime in milliseconds, signed", q: signedQuery(signedToken, vectorTime*1000+123),
			wantStatus: 401, wantReason: "bad_request_time", wantInfo: "RequestTime 1669872112123 looks like milliseconds: Tencent IM sends Unix seconds (1669872112)"},
		{name: "RequestTime in milliseconds, a minute off", q: signedQuery(signedToken, (vectorTime-60)*1000),
			wantStatus: 401, wantReason: "bad_request_time", wantInfo: "RequestTime 1669872052000 looks like milliseconds: Tencent IM sends Unix seconds (1669872052)"},
		{name: "RequestTime in milliseconds, wrong Sign reports the Sign", q: with(signedQuery(signedToken, vectorTime*1000), func(q *Query) { q.Sign = Sign("other-token", q.RequestTime) }),
			wantStatus: 401, wantReason: "bad_sign", wantInfo: "Sign does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRejection(t, v.Verify(tt.q, remote), tt.wantStatus, tt.wantReason, tt.wantInfo)
		})
	}
}

func TestVerifyAllowIPs(t *testing.T) {
	v := mustVerifier(t, Options{
		Apps: []App{{SdkAppID: openApp}, {SdkAppID: signedApp, Token: signedToken}},
		AllowIPs: []netip.Prefix{
			netip.MustParsePrefix("183.192.202.0/25"),
			netip.MustParsePrefix("127.0.0.2/32"),
			netip.MustParsePrefix("2001:db8:1::/48"),
			netip.MustParsePrefix("::ffff:192.0.2.0/120"), // an IPv4 range written as IPv4-mapped IPv6
		},
		Now: func() time.Time { return time.Unix(vectorTime, 0) },
	})
	tests := []struct {
		name    string
		remote  netip.Addr
		allowed bool
	}{
		{"IPv4 inside CIDR", netip.MustParseAddr("183.192.202.127"), true},
		{"IPv4 just outside CIDR", netip.MustParseAddr("183.192.202.128"), false},
		{"IPv4 single address", netip.MustParseAddr("127.0.0.2"), true},
		{"IPv4 next to single address", netip.MustParseAddr("127.0.0.3"), false},
		{"IPv4-mapped IPv6 from a dual-stack listener", netip.MustParseAddr("::ffff:183.192.202.1"), true},
		{"IPv4 inside a mapped prefix", netip.MustParseAddr("192.0.2.77"), true},
		{"IPv6 inside CIDR", netip.MustParseAddr("2001:db8:1:ffff::1"), true},
		{"IPv6 with zone inside CIDR", netip.MustParseAddr("2001:db8:1::1%eth0"), true},
		{"IPv6 outside CIDR", netip.MustParseAddr("2001:db8:2::1"), false},
		{"unknown address", netip.Addr{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := v.Verify(Query{SdkAppID: openApp}, tt.remote)
			if tt.allowed {
				checkRejection(t, r, 0, "", "")
				return
			}
			checkRejection(t, r, 403, "ip_not_allowed", fmt.Sprintf("source address %v is not in allow_ips", tt.remote))
		})
	}

	// The documented order: the SdkAppid before the address, the address before the Sign.
	outside := netip.MustParseAddr("198.51.100.1")
	t.Run("unknown app from outside reports the app", func(t *testing.T) {
		checkRejection(t, v.Verify(Query{SdkAppID: "1"}, outside), 403, "unknown_app", "")
	})
	t.Run("bad Sign from outside reports the address", func(t *testing.T) {
		checkRejection(t, v.Verify(Query{SdkAppID: signedApp, Sign: "bad"}, outside), 403, "ip_not_allowed", "")
	})

	t.Run("no allowlist accepts any address", func(t *testing.T) {
		open := mustVerifier(t, Options{Apps: []App{{SdkAppID: openApp}}})
		for _, remote := range []netip.Addr{outside, netip.MustParseAddr("::1"), {}} {
			checkRejection(t, open.Verify(Query{SdkAppID: openApp}, remote), 0, "", "")
		}
	})
}

func TestVerifyDefaultClockSkew(t *testing.T) {
	v := mustVerifier(t, Options{
		Apps: []App{{SdkAppID: signedApp, Token: signedToken}},
		Now:  func() time.Time { return time.Unix(vectorTime, 0) },
	})
	tests := []struct {
		name   string
		offset int64
		reason string
	}{
		{"at the default edge", int64(DefaultMaxClockSkew / time.Second), ""},
		{"past the default edge", int64(DefaultMaxClockSkew/time.Second) + 1, "stale_request"},
		{"past the default edge backwards", -int64(DefaultMaxClockSkew/time.Second) - 1, "stale_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := v.Verify(signedQuery(signedToken, vectorTime+tt.offset), netip.Addr{})
			status := 0
			if tt.reason != "" {
				status = 401
			}
			checkRejection(t, r, status, tt.reason, "")
		})
	}
}

func TestVerifierUsesTheInjectedClock(t *testing.T) {
	now := time.Unix(vectorTime, 0)
	v := mustVerifier(t, Options{
		Apps: []App{{SdkAppID: signedApp, Token: signedToken}},
		Now:  func() time.Time { return now },
	})
	q := signedQuery(signedToken, vectorTime)
	checkRejection(t, v.Verify(q, netip.Addr{}), 0, "", "")
	now = now.Add(2 * time.Minute)
	checkRejection(t, v.Verify(q, netip.Addr{}), 401, "stale_request", "2m0s older")
}

func TestNewVerifierErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"empty sdkappid", Options{Apps: []App{{SdkAppID: "1"}, {Token: "t"}}}, "app 1: sdkappid is empty"},
		{"repeated sdkappid", Options{Apps: []App{{SdkAppID: "1", Token: "a"}, {SdkAppID: "1", Token: "b"}}}, "app 1: sdkappid 1 is listed twice"},
		{"negative skew", Options{MaxClockSkew: -time.Second}, "max_clock_skew -1s is negative"},
		{"invalid prefix", Options{AllowIPs: []netip.Prefix{{}}}, "allow_ips: invalid prefix invalid Prefix"},
		{"every problem reported", Options{Apps: []App{{}, {}}, AllowIPs: []netip.Prefix{{}}},
			"app 0: sdkappid is empty\napp 1: sdkappid is empty\nallow_ips: invalid prefix invalid Prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.o)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("NewVerifier error = %v, want %q", err, tt.want)
			}
			if v != nil {
				t.Errorf("NewVerifier returned a verifier with an error")
			}
		})
	}
}

func TestVerifierApp(t *testing.T) {
	v := mustVerifier(t, Options{Apps: []App{{SdkAppID: signedApp, Token: signedToken}, {SdkAppID: openApp}}})
	tests := []struct {
		id     string
		want   App
		wantOK bool
	}{
		{signedApp, App{SdkAppID: signedApp, Token: signedToken}, true},
		{openApp, App{SdkAppID: openApp}, true},
		{"1", App{}, false},
		{"", App{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, ok := v.App(tt.id)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("App(%q) = %v, %v; want %v, %v", tt.id, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestNoTokenLeak checks that neither printing an App nor any rejection reveals the token
// or the Sign it would produce.
func TestNoTokenLeak(t *testing.T) {
	const token = "s3cr3t-t0ken"
	app := App{SdkAppID: signedApp, Token: token}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		t.Run(format, func(t *testing.T) {
			if got := fmt.Sprintf(format, app); strings.Contains(got, token) || !strings.Contains(got, "<secret>") {
				t.Errorf("Sprintf(%q, app) = %s", format, got)
			}
		})
	}
	t.Run("inside other values", func(t *testing.T) {
		if got := fmt.Sprintf("%+v", []App{app}); strings.Contains(got, token) {
			t.Errorf("slice prints %s", got)
		}
	})

	now := time.Unix(vectorTime, 0)
	v := mustVerifier(t, Options{Apps: []App{app}, Now: func() time.Time { return now }})
	want := Sign(token, fmt.Sprint(vectorTime))
	for _, q := range []Query{
		{SdkAppID: signedApp},
		{SdkAppID: signedApp, Sign: "x", RequestTime: fmt.Sprint(vectorTime)},
		{SdkAppID: signedApp, Sign: strings.Repeat("0", 64), RequestTime: fmt.Sprint(vectorTime)},
		signedQuery(token, vectorTime-3600),
	} {
		r := v.Verify(q, netip.Addr{})
		if r == nil {
			t.Fatalf("Verify(%+v) accepted", q)
		}
		if strings.Contains(r.Info, token) || strings.Contains(r.Info, want) {
			t.Errorf("Info %q reveals the token or the expected Sign", r.Info)
		}
	}
}

// checkRejection fails unless r matches: status 0 means r must be nil.
func checkRejection(t *testing.T, r *Rejection, status int, reason, info string) {
	t.Helper()
	if status == 0 {
		if r != nil {
			t.Fatalf("rejected: %+v", *r)
		}
		return
	}
	if r == nil {
		t.Fatalf("accepted, want %d %s", status, reason)
	}
	if r.Status != status || r.Reason != reason || !strings.Contains(r.Info, info) {
		t.Fatalf("got %d %s %q, want %d %s with Info containing %q", r.Status, r.Reason, r.Info, status, reason, info)
	}
}

// with returns a copy of q changed by f.
func with(q Query, f func(*Query)) Query {
	f(&q)
	return q
}

func BenchmarkVerify(b *testing.B) {
	v := mustVerifier(b, Options{
		Apps:     []App{{SdkAppID: signedApp, Token: signedToken}},
		AllowIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
		Now:      func() time.Time { return time.Unix(vectorTime, 0) },
	})
	q := signedQuery(signedToken, vectorTime)
	remote := netip.MustParseAddr("203.0.113.9")
	b.ReportAllocs()
	for b.Loop() {
		if r := v.Verify(q, remote); r != nil {
			b.Fatal(r.Info)
		}
	}
}
