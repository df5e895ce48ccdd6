package tencentim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// DefaultMaxClockSkew is the RequestTime window used when Options.MaxClockSkew is zero.
// Tencent documents no window for IM; one minute is what it documents for the same Sign
// scheme on its LiveKit webhooks.
const DefaultMaxClockSkew = time.Minute

// The HTTP statuses of rejections, as numbers: this package imports no net/http, so that
// rules, which reads the command table, stays clear of HTTP.
const (
	statusUnauthorized = 401
	statusForbidden    = 403
)

// Rejection reasons, short and fixed so they can label a metric.
const (
	ReasonBadQuery       = "bad_query"        // ParseQuery failed; the receiver answers 400
	ReasonMissingApp     = "missing_app"      // no SdkAppid in the query
	ReasonUnknownApp     = "unknown_app"      // SdkAppid is not configured
	ReasonIPNotAllowed   = "ip_not_allowed"   // source address outside allow_ips
	ReasonMissingSign    = "missing_sign"     // the app has a token; Sign or RequestTime is absent
	ReasonBadRequestTime = "bad_request_time" // RequestTime is not decimal Unix seconds (or is milliseconds)
	ReasonBadSign        = "bad_sign"         // Sign is not 64 hex digits or does not match the token
	ReasonStaleRequest   = "stale_request"    // RequestTime is further than MaxClockSkew from now
)

// App is one SdkAppid that Fanout accepts callbacks for. A non-empty Token means callback
// authentication is on in the Tencent console, so every callback must carry a valid Sign.
type App struct {
	SdkAppID string
	Token    string
}

// String hides the token, so an App that reaches a log or an error does not leak it.
func (a App) String() string {
	token := ""
	if a.Token != "" {
		token = "<secret>"
	}
	return fmt.Sprintf("{SdkAppID:%s Token:%s}", a.SdkAppID, token)
}

// GoString hides the token from %#v as String does from %v.
func (a App) GoString() string {
	token := `""`
	if a.Token != "" {
		token = `"<secret>"`
	}
	return fmt.Sprintf("tencentim.App{SdkAppID:%q, Token:%s}", a.SdkAppID, token)
}

// Options configures a Verifier; it mirrors the tencent section of the config file.
type Options struct {
	Apps []App
	// MaxClockSkew bounds |now - RequestTime| in both directions, which limits replays of a
	// captured signed URL. Zero means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// AllowIPs, when not empty, are the only source prefixes accepted (Tencent's callback
	// egress list from GetIPList nettype 5/6).
	AllowIPs []netip.Prefix
	// Now is the clock for the skew check; nil means time.Now. Tests inject a fixed time.
	Now func() time.Time
}

// Verifier decides whether a callback comes from a configured Tencent IM app. It is
// immutable after NewVerifier and safe for concurrent use; a config reload builds a new one.
type Verifier struct {
	apps     map[string]App
	skew     time.Duration
	allowIPs []netip.Prefix
	now      func() time.Time
}

// Rejection is why a callback was refused: the HTTP status to answer with, a reason that
// labels the rejection metric, and a human ErrorInfo for the FAIL answer (Fail(r.Info)).
// Info names what was wrong and never contains a token or the expected Sign.
type Rejection struct {
	Status int
	Reason string
	Info   string
}

// NewVerifier checks the options and indexes the apps. It refuses an empty or repeated
// SdkAppid, because two tokens for one app would make the accepted token depend on order.
func NewVerifier(o Options) (*Verifier, error) {
	if o.MaxClockSkew < 0 {
		return nil, fmt.Errorf("max_clock_skew %v is negative", o.MaxClockSkew)
	}
	v := &Verifier{
		apps:     make(map[string]App, len(o.Apps)),
		skew:     o.MaxClockSkew,
		allowIPs: make([]netip.Prefix, 0, len(o.AllowIPs)),
		now:      o.Now,
	}
	if v.skew == 0 {
		v.skew = DefaultMaxClockSkew
	}
	if v.now == nil {
		v.now = time.Now
	}
	var errs []error
	for i, app := range o.Apps {
		switch _, dup := v.apps[app.SdkAppID]; {
		case app.SdkAppID == "":
			errs = append(errs, fmt.Errorf("app %d: sdkappid is empty", i))
		case dup:
			errs = append(errs, fmt.Errorf("app %d: sdkappid %s is listed twice", i, app.SdkAppID))
		default:
			v.apps[app.SdkAppID] = app
		}
	}
	for _, p := range o.AllowIPs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("allow_ips: invalid prefix %v", p))
			continue
		}
		// Contains never matches an IPv4 address against an IPv4-mapped IPv6 prefix, and
		// Verify unmaps the source address, so unmap the prefix too.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		v.allowIPs = append(v.allowIPs, p.Masked())
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return v, nil
}

// App returns the configured app for sdkAppID.
func (v *Verifier) App(sdkAppID string) (App, bool) {
	app, ok := v.apps[sdkAppID]
	return app, ok
}

// Verify runs the protocol's checks in the order their answers are documented (the body
// size is checked before, by the intake): the SdkAppid is configured (403), remote is
// inside AllowIPs when set (403), and when the app has a token, Sign and RequestTime are
// present, well formed, match the token and RequestTime is within MaxClockSkew (401). It
// returns nil when the callback passes. remote is the address the request came from, after the HTTP layer
// has applied trusted proxies; the query's ClientIP is the IM user's address and plays no part.
//
// The Sign is checked before the clock so that a wrong token is reported as bad_sign even
// when the clock is also off, and stale_request means a genuine but old (replayed) request.
func (v *Verifier) Verify(q Query, remote netip.Addr) *Rejection {
	if q.SdkAppID == "" {
		return reject(statusForbidden, ReasonMissingApp, "SdkAppid is missing from the query")
	}
	app, ok := v.apps[q.SdkAppID]
	if !ok {
		return reject(statusForbidden, ReasonUnknownApp, "SdkAppid %q is not configured", clip(q.SdkAppID))
	}
	if !v.ipAllowed(remote) {
		return reject(statusForbidden, ReasonIPNotAllowed, "source address %v is not in allow_ips", remote)
	}
	if app.Token == "" {
		return nil
	}
	if q.Sign == "" {
		return reject(statusUnauthorized, ReasonMissingSign, "Sign is missing: callback authentication is on for SdkAppid %s", app.SdkAppID)
	}
	if q.RequestTime == "" {
		return reject(statusUnauthorized, ReasonMissingSign, "RequestTime is missing: callback authentication is on for SdkAppid %s", app.SdkAppID)
	}
	sent, err := strconv.ParseInt(q.RequestTime, 10, 64)
	if err != nil {
		return reject(statusUnauthorized, ReasonBadRequestTime, "RequestTime %q is not Unix seconds", clip(q.RequestTime))
	}
	if r := checkSign(app, q); r != nil {
		return r
	}
	now := v.now()
	if millis := time.UnixMilli(sent); sent > 0 && now.Sub(millis).Abs() < millisecondsWindow {
		return reject(statusUnauthorized, ReasonBadRequestTime, "RequestTime %d looks like milliseconds: Tencent IM sends Unix seconds (%d)", sent, sent/1000)
	}
	// Sub saturates, so an absurd RequestTime cannot overflow into the window.
	switch drift := now.Sub(time.Unix(sent, 0)); {
	case drift > v.skew:
		return reject(statusUnauthorized, ReasonStaleRequest, "RequestTime %d is %s older than the server clock (max_clock_skew %v)", sent, driftText(drift), v.skew)
	case drift < -v.skew:
		return reject(statusUnauthorized, ReasonStaleRequest, "RequestTime %d is %s ahead of the server clock (max_clock_skew %v)", sent, driftText(drift), v.skew)
	}
	return nil
}

// millisecondsWindow is how close to the server clock a RequestTime read as Unix
// milliseconds must be for Verify to say it looks like milliseconds: a client (a test
// script, a proxy) that signs Date.now() rather than seconds. Read as seconds, such a value
// is tens of thousands of years ahead.
const millisecondsWindow = 365 * 24 * time.Hour

// driftLimit is the largest clock drift driftText writes out; Sub saturates near 292
// years, and a figure that large says nothing more than "far".
const driftLimit = 100 * 365 * 24 * time.Hour

// driftText writes the size of a drift, either way, for ErrorInfo: rounded to the second,
// and clamped (-d of a saturated Sub would overflow back to a negative duration).
func driftText(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	if d < 0 || d > driftLimit {
		return "more than 100 years"
	}
	return d.Round(time.Second).String()
}

// checkSign compares the digests rather than hex strings: decoding accepts either case and
// rejects anything that is not 64 hex digits, and subtle.ConstantTimeCompare keeps the
// time taken independent of how many bytes match.
func checkSign(app App, q Query) *Rejection {
	var got [sha256.Size]byte
	if len(q.Sign) != hex.EncodedLen(sha256.Size) {
		return reject(statusUnauthorized, ReasonBadSign, "Sign is not 64 hex digits (got %d characters)", len(q.Sign))
	}
	if _, err := hex.Decode(got[:], []byte(q.Sign)); err != nil {
		return reject(statusUnauthorized, ReasonBadSign, "Sign is not 64 hex digits")
	}
	want := sha256.Sum256([]byte(app.Token + q.RequestTime))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return reject(statusUnauthorized, ReasonBadSign, "Sign does not match the token configured for SdkAppid %s", app.SdkAppID)
	}
	return nil
}

// ipAllowed reports whether remote may call. The address is unmapped and its zone dropped
// because a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d, which an IPv4 prefix
// would otherwise never contain.
func (v *Verifier) ipAllowed(remote netip.Addr) bool {
	if len(v.allowIPs) == 0 {
		return true
	}
	remote = remote.Unmap().WithZone("")
	for _, p := range v.allowIPs {
		if p.Contains(remote) {
			return true
		}
	}
	return false
}

func reject(status int, reason, format string, args ...any) *Rejection {
	return &Rejection{Status: status, Reason: reason, Info: fmt.Sprintf(format, args...)}
}

// clip bounds a caller-supplied value echoed in ErrorInfo, so a huge query parameter is not
// sent back whole.
func clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
