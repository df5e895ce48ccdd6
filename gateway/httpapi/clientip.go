package httpapi

import (
	"net/netip"
	"strings"
)

// ClientIP is the caller's address: the direct peer, or, when the peer is a trusted proxy,
// the right-most X-Forwarded-For entry that is not one. Entries left of it are the
// client's own say and are not believed; an entry that is not an address ends the walk at
// the last address believed.
func ClientIP(remote netip.Addr, forwardedFor string, trusted []netip.Prefix) netip.Addr {
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	if forwardedFor == "" || !isTrusted(remote) {
		return remote
	}
	hops := strings.Split(forwardedFor, ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return remote
		}
		if !isTrusted(a) {
			return a
		}
		remote = a
	}
	return remote
}
