package tencentim

import (
	"maps"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// tencentQuery is a signed callback query as Tencent sends it.
const tencentQuery = "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json" +
	"&ClientIP=203.0.113.9&OptPlatform=iOS" +
	"&Sign=17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061&RequestTime=1669872112"

func TestParseQuery(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    Query // Raw is checked separately: it is always the input
		wantErr string
	}{
		{
			name: "signed callback",
			raw:  tencentQuery,
			want: Query{
				SdkAppID: "1400000000", CallbackCommand: "C2C.CallbackAfterSendMsg", ContentType: "json",
				ClientIP: "203.0.113.9", OptPlatform: "iOS",
				Sign:        "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061",
				RequestTime: "1669872112",
			},
		},
		{
			name: "push callback without optional keys",
			raw:  "SdkAppid=1400000000&CallbackCommand=Push.OfflinePush",
			want: Query{SdkAppID: "1400000000", CallbackCommand: "Push.OfflinePush"},
		},
		{
			name: "percent-encoded values",
			raw:  "SdkAppid=1400000000&ClientIP=2001%3Adb8%3A%3A1&OptPlatform=Web+App&CallbackCommand=Group%2ECallbackAfterNewMemberJoin",
			want: Query{SdkAppID: "1400000000", ClientIP: "2001:db8::1", OptPlatform: "Web App", CallbackCommand: "Group.CallbackAfterNewMemberJoin"},
		},
		{
			name: "percent-encoded key",
			raw:  "Sdk%41ppid=1400000000&Request%54ime=1",
			want: Query{SdkAppID: "1400000000", RequestTime: "1"},
		},
		{
			name: "value holding '='",
			raw:  "SdkAppid=1&OptPlatform=a=b",
			want: Query{SdkAppID: "1", OptPlatform: "a=b"},
		},
		{
			name:    "a repeated key",
			raw:     "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&SdkAppid=1400000001",
			wantErr: "query parameter SdkAppid: given more than once",
		},
		{
			name:    "a repeated key, once empty",
			raw:     "SdkAppid=&SdkAppid=1",
			wantErr: "query parameter SdkAppid: given more than once",
		},
		{
			name:    "a repeated key spelled with an escape",
			raw:     "Sign=a&RequestTime=1&Si%67n=b",
			wantErr: "query parameter Sign: given more than once",
		},
		{
			name: "keys are case-sensitive",
			raw:  "sdkappid=1&SDKAppID=2&ContentType=json",
			want: Query{},
		},
		{
			name: "empty query",
			raw:  "",
			want: Query{},
		},
		{
			name: "empty pairs and key without value",
			raw:  "&&SdkAppid&CallbackCommand=X&",
			want: Query{CallbackCommand: "X"},
		},
		{
			name: "malformed escapes outside our keys are ignored",
			raw:  "extra=%zz&%zz=1&SdkAppid=1",
			want: Query{SdkAppID: "1"},
		},
		{
			name:    "malformed escape in SdkAppid",
			raw:     "SdkAppid=14%zz",
			wantErr: `query parameter SdkAppid: invalid URL escape "%zz"`,
		},
		{
			name:    "truncated escape in Sign",
			raw:     "SdkAppid=1&Sign=abc%4",
			wantErr: `query parameter Sign: invalid URL escape "%4"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseQuery(tt.raw)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseQuery(%q) error = %v, want %q", tt.raw, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseQuery(%q): %v", tt.raw, err)
			}
			if got.Raw != tt.raw {
				t.Errorf("Raw = %q, want the input %q", got.Raw, tt.raw)
			}
			tt.want.Raw = tt.raw
			if got != tt.want {
				t.Errorf("ParseQuery(%q)\n got %+v\nwant %+v", tt.raw, got, tt.want)
			}
		})
	}
}

// TestParseQueryMatchesNetURL checks the scanner against url.ParseQuery on well-formed
// queries where every key appears once, so the two must agree.
func TestParseQueryMatchesNetURL(t *testing.T) {
	for _, raw := range []string{
		tencentQuery,
		"CallbackCommand=State.StateChange&SdkAppid=1400000001&OptPlatform=IOS",
		"SdkAppid=%31%34&ClientIP=%3A%3Affff%3A10.0.0.1&OptPlatform=%E5%AE%89%E5%8D%93+x&contenttype=%6Ason",
		"a=1&b=%20&Sign=%41%42&RequestTime=+1",
	} {
		t.Run(raw, func(t *testing.T) {
			want, err := url.ParseQuery(raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseQuery(raw)
			if err != nil {
				t.Fatal(err)
			}
			for key, value := range map[string]string{
				"SdkAppid": got.SdkAppID, "CallbackCommand": got.CallbackCommand, "contenttype": got.ContentType,
				"ClientIP": got.ClientIP, "OptPlatform": got.OptPlatform, "Sign": got.Sign, "RequestTime": got.RequestTime,
			} {
				if value != want.Get(key) {
					t.Errorf("%s = %q, url.ParseQuery gives %q", key, value, want.Get(key))
				}
			}
		})
	}
}

func TestResign(t *testing.T) {
	now := time.Unix(1700000000, 0)
	newSign := Sign("new-token", "1700000000")
	tests := []struct {
		name, raw, token, want string
	}{
		{
			name:  "replaces Tencent's Sign and RequestTime",
			raw:   tencentQuery,
			token: "new-token",
			want: "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json" +
				"&ClientIP=203.0.113.9&OptPlatform=iOS&Sign=" + newSign + "&RequestTime=1700000000",
		},
		{
			name:  "moves a Sign from the middle to the end, other keys keep their order and bytes",
			raw:   "b=2&Sign=old&a=%41+&RequestTime=1&c",
			token: "new-token",
			want:  "b=2&a=%41+&c&Sign=" + newSign + "&RequestTime=1700000000",
		},
		{
			name:  "adds them to an unsigned query",
			raw:   "SdkAppid=1&CallbackCommand=X",
			token: "new-token",
			want:  "SdkAppid=1&CallbackCommand=X&Sign=" + newSign + "&RequestTime=1700000000",
		},
		{
			name:  "empty query",
			raw:   "",
			token: "new-token",
			want:  "Sign=" + newSign + "&RequestTime=1700000000",
		},
		{
			name:  "no token removes both",
			raw:   tencentQuery,
			token: "",
			want:  "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json&ClientIP=203.0.113.9&OptPlatform=iOS",
		},
		{
			name:  "no token, only Sign and RequestTime",
			raw:   "Sign=x&RequestTime=1",
			token: "",
			want:  "",
		},
		{
			name:  "removes encoded and repeated keys, keeps undecodable ones",
			raw:   "Si%67n=x&Sign=y&%zz=1&RequestTime=1&RequestTime=2",
			token: "",
			want:  "%zz=1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Resign(tt.raw, tt.token, now); got != tt.want {
				t.Errorf("Resign(%q, %q)\n got %q\nwant %q", tt.raw, tt.token, got, tt.want)
			}
		})
	}
}

// TestResignRoundTrip forwards a callback signed with Tencent's token to a downstream with
// another token: the downstream's verifier accepts it and the other keys survive.
func TestResignRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 0)
	downstream := mustVerifier(t, Options{
		Apps: []App{{SdkAppID: "1400000000", Token: "downstream-token"}},
		Now:  func() time.Time { return now },
	})
	original, err := ParseQuery(tencentQuery)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name       string
		token      string
		wantReason string // "" means accepted
	}{
		{"downstream token", "downstream-token", ""},
		{"another token", "other", ReasonBadSign},
		{"no token", "", ReasonMissingSign},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resigned, err := ParseQuery(Resign(tencentQuery, tc.token, now))
			if err != nil {
				t.Fatal(err)
			}
			r := downstream.Verify(resigned, netip.MustParseAddr("198.51.100.1"))
			switch {
			case tc.wantReason == "" && r != nil:
				t.Fatalf("downstream rejected the resigned query: %+v", r)
			case tc.wantReason != "" && (r == nil || r.Reason != tc.wantReason):
				t.Fatalf("Verify = %+v, want reason %s", r, tc.wantReason)
			}
			kept := resigned
			kept.Raw, kept.Sign, kept.RequestTime = original.Raw, original.Sign, original.RequestTime
			if kept != original {
				t.Errorf("other keys changed:\n got %+v\nwant %+v", kept, original)
			}
		})
	}
}

func BenchmarkParseQuery(b *testing.B) {
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseQuery(tencentQuery); err != nil {
				b.Fatal(err)
			}
		}
	})
	// For comparison: what Gin's c.Query does on every call.
	b.Run("url.ParseQuery", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := url.ParseQuery(tencentQuery); err != nil {
				b.Fatal(err)
			}
		}
	})
	escaped := strings.Replace(tencentQuery, "ClientIP=203.0.113.9", "ClientIP=2001%3Adb8%3A%3A1", 1)
	b.Run("scan escaped", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseQuery(escaped); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkResign(b *testing.B) {
	now := time.Unix(1700000000, 0)
	b.ReportAllocs()
	for b.Loop() {
		Resign(tencentQuery, "downstream-token", now)
	}
}

func TestQueryValues(t *testing.T) {
	q, err := ParseQuery("SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json&ClientIP=&OptPlatform=iOS&Other=x")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"SdkAppid": "1400000000", "CallbackCommand": "C2C.CallbackAfterSendMsg", "contenttype": "json", "OptPlatform": "iOS"}
	if got := q.Values(); !maps.Equal(got, want) {
		t.Errorf("Values = %v, want %v", got, want)
	}
}
