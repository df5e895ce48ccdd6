package httpapi

import (
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	peer, proxy := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name         string
		remote       netip.Addr
		forwardedFor string
		trusted      []netip.Prefix
		want         string
	}{
		{"no proxy", peer, "", proxies, "198.51.100.1"},
		{"an untrusted peer's X-Forwarded-For is ignored", peer, "203.0.113.9", proxies, "198.51.100.1"},
		{"no proxies configured", proxy, "203.0.113.9", nil, "127.0.0.1"},
		{"trusted proxy without X-Forwarded-For", proxy, "", proxies, "127.0.0.1"},
		{"trusted proxy", proxy, "203.0.113.9", proxies, "203.0.113.9"},
		{"the right-most untrusted entry wins over a spoofed one on the left", proxy, "203.0.113.9, 198.51.100.7", proxies, "198.51.100.7"},
		{"a chain of trusted proxies", proxy, "198.51.100.7, 203.0.113.9, 10.1.2.3", proxies, "203.0.113.9"},
		{"every hop trusted: the left-most", proxy, "10.0.0.2, 10.0.0.3", proxies, "10.0.0.2"},
		{"garbage ends the walk at the last address believed", proxy, "203.0.113.9, not-an-ip, 10.0.0.3", proxies, "10.0.0.3"},
		{"IPv4 in IPv6 peer", netip.MustParseAddr("::ffff:127.0.0.1"), "203.0.113.9", proxies, "203.0.113.9"},
		{"IPv6 client", proxy, "2001:db8::1", proxies, "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClientIP(tt.remote, tt.forwardedFor, tt.trusted); got.String() != tt.want {
				t.Errorf("ClientIP(%v, %q) = %v, want %s", tt.remote, tt.forwardedFor, got, tt.want)
			}
		})
	}
}

func TestRequestIDsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if seen[id] {
			t.Fatalf("request id %s given twice", id)
		}
		seen[id] = true
	}
}
