package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Admin is what the admin port serves.
type Admin interface {
	// Ready returns why the gateway cannot serve (queue down, no config), or nil.
	Ready() error
	// Reload loads the config again; the error lists every problem.
	Reload(ctx context.Context) error
	// Metrics is the Prometheus handler.
	Metrics() http.Handler
	// Token is the live admin token ("" = no auth).
	Token() string

	// Routes returns the live routes and respond rules.
	Routes(ctx context.Context) (Routes, error)
	// Destinations returns the live destinations with their queue and health.
	Destinations(ctx context.Context) (Destinations, error)
	// DeadLetters returns up to limit dead letters with an id above after that pass f,
	// oldest first, and the cursor of the next page (0 when there is none).
	DeadLetters(ctx context.Context, f DeadLetterFilter, after uint64, limit int) ([]DeadLetter, uint64, error)
	// DeadLetter returns one dead letter with its body, or ErrNotFound.
	DeadLetter(ctx context.Context, id uint64) (DeadLetterDetail, error)
	// ReplayDeadLetters queues the selected dead letters again (or only says what it
	// would do, with dryRun).
	ReplayDeadLetters(ctx context.Context, s Selection, dryRun bool) (ReplayResult, error)
	// PurgeDeadLetters deletes the selected dead letters (or only counts them, with dryRun).
	PurgeDeadLetters(ctx context.Context, s Selection, dryRun bool) (PurgeResult, error)

	ConsoleAdmin
}

// ErrNotFound is what Admin returns for a dead letter that does not exist: 404.
var ErrNotFound = errors.New("not found")

// ParamError is a request parameter that cannot be used: 400, naming it.
type ParamError struct {
	Param   string // the query parameter or JSON field, e.g. "since" or "filter.since"
	Message string
}

func (e *ParamError) Error() string { return "parameter " + e.Param + ": " + e.Message }

// apiError is the body of every error the API answers.
type apiError struct {
	Error string `json:"error"`
	Param string `json:"param,omitempty"`
}

// Routes is the live routing of GET /api/v1/routes.
type Routes struct {
	ConfigHash string        `json:"config_hash"`
	Routes     []RouteInfo   `json:"routes"`
	Respond    []RespondInfo `json:"respond"`
}

// RouteInfo is one route and how many callbacks it matched since the process started
// (counted across reloads, by route name).
type RouteInfo struct {
	Name     string   `json:"name"`
	Commands []string `json:"commands"`
	Apps     []string `json:"apps"`
	When     string   `json:"when"`
	To       []string `json:"to"`
	Stop     bool     `json:"stop"`
	Matches  uint64   `json:"matches"`
}

// RespondInfo is one respond rule.
type RespondInfo struct {
	Commands  []string `json:"commands"`
	Apps      []string `json:"apps"`
	When      string   `json:"when"`
	From      string   `json:"from"`
	Timeout   string   `json:"timeout"`
	OnFailure string   `json:"on_failure"`
}

// Destinations is the answer of GET /api/v1/destinations.
type Destinations struct {
	Destinations []DestinationInfo `json:"destinations"`
}

// DestinationInfo is one live destination. Secrets show only as whether they are set;
// headers only by name; the URL with its userinfo and query values redacted.
type DestinationInfo struct {
	Name             string    `json:"name"`
	URL              string    `json:"url"`
	Timeout          string    `json:"timeout"`
	Concurrency      int       `json:"concurrency"`
	RateLimit        string    `json:"rate_limit"` // "200/s"; "" when unlimited
	Retry            RetryInfo `json:"retry"`
	ForwardQuery     bool      `json:"forward_query"`
	HasBodyTransform bool      `json:"has_body_transform"`
	HasSigningSecret bool      `json:"has_signing_secret"`
	HasTIMToken      bool      `json:"has_tim_token"`
	Headers          []string  `json:"headers"` // names only

	Pending          int       `json:"pending"`
	OldestPendingAt  time.Time `json:"oldest_pending_at,omitzero"`
	OldestPendingAge float64   `json:"oldest_pending_age_seconds"`
	DeadLetters      int       `json:"dead_letters"`
	QueueError       string    `json:"queue_error,omitempty"` // why the three above are unknown

	Paused      bool      `json:"paused"`
	PausedBy    string    `json:"paused_by,omitempty"` // "operator" (until resumed) or "failures"
	PausedUntil time.Time `json:"paused_until,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// RetryInfo is a destination's retry policy.
type RetryInfo struct {
	MaxAttempts int         `json:"max_attempts"`
	Backoff     BackoffInfo `json:"backoff"`
	MaxAge      string      `json:"max_age"`
}

// BackoffInfo is the wait between attempts.
type BackoffInfo struct {
	Initial    string  `json:"initial"`
	Max        string  `json:"max"`
	Multiplier float64 `json:"multiplier"`
	Jitter     float64 `json:"jitter"`
}

// DeadLetterFilter selects dead letters; zero fields match everything.
type DeadLetterFilter struct {
	Destination string
	Reason      string    // substring of the reason
	Since       time.Time // dead at or after
	Until       time.Time // dead before
}

// IsZero reports a filter that selects everything.
func (f DeadLetterFilter) IsZero() bool {
	return f.Destination == "" && f.Reason == "" && f.Since.IsZero() && f.Until.IsZero()
}

// Selection is what a replay or purge acts on: the dead letters IDs when IDs is not nil,
// else those Filter selects.
type Selection struct {
	IDs    []uint64
	Filter DeadLetterFilter
}

// DeadLetter is one dead letter as listed.
type DeadLetter struct {
	ID           uint64    `json:"id"`
	EventID      string    `json:"event_id"`
	Destination  string    `json:"destination"`
	Routes       []string  `json:"routes"`
	Reason       string    `json:"reason"`
	LastStatus   int       `json:"last_status"`
	BodyExcerpt  string    `json:"body_excerpt"` // the start of the destination's last answer
	Attempts     int       `json:"attempts"`
	FirstAttempt time.Time `json:"first_attempt,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	DeadAt       time.Time `json:"dead_at"`
	ReceivedAt   time.Time `json:"received_at,omitzero"`
	RequestID    string    `json:"request_id"`
	Command      string    `json:"command"`
	SdkAppID     string    `json:"sdkappid"`
	BodySize     int       `json:"body_size"`
}

// DeadLetterDetail is one dead letter with the callback it carries.
type DeadLetterDetail struct {
	DeadLetter
	// Query is the callback's query string without Sign and RequestTime.
	Query string `json:"query"`
	// Body is the callback's body: the JSON itself when it is JSON ("json"), else a
	// base64 string ("base64"), as BodyEncoding says.
	Body         json.RawMessage `json:"body"`
	BodyEncoding string          `json:"body_encoding"`
}

// DeadLetterPage is the answer of GET /api/v1/dlq.
type DeadLetterPage struct {
	Items []DeadLetter `json:"items"`
	Next  uint64       `json:"next"` // pass as after for the next page; 0 at the end
}

// IDError is why one dead letter could not be replayed or deleted.
type IDError struct {
	ID    uint64 `json:"id"`
	Error string `json:"error"`
}

// ReplayResult is the answer of POST /api/v1/dlq/replay. Replayed lists what was queued
// again; in a dry run nothing is, and WouldReplay lists what would be.
type ReplayResult struct {
	DryRun      bool      `json:"dry_run"`
	Matched     int       `json:"matched"`
	Replayed    []uint64  `json:"replayed"`
	WouldReplay []uint64  `json:"would_replay,omitempty"`
	Errors      []IDError `json:"errors"`
}

// PurgeResult is the answer of a delete: in a dry run Deleted is 0 and Matched says how
// many would go.
type PurgeResult struct {
	DryRun  bool      `json:"dry_run"`
	Matched int       `json:"matched"`
	Deleted int       `json:"deleted"`
	Errors  []IDError `json:"errors"`
}

// Dead-letter listing bounds.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	maxRequestBytes  = 1 << 20
)

// NewAdmin returns the admin server: /healthz and /readyz open, everything else behind
// the bearer token when one is set. Answers are JSON written without HTML escaping, so that
// a redacted value reads <secret> to whoever curls it, not \u003csecret\u003e.
func NewAdmin(a Admin, log *slog.Logger) *Server {
	e := gin.New()
	e.Use(browserGuard(a))
	e.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c *gin.Context) {
		if err := a.Ready(); err != nil {
			c.String(http.StatusServiceUnavailable, "not ready: %v\n", err)
			return
		}
		c.String(http.StatusOK, "ready\n")
	})
	requireToken := func(c *gin.Context) {
		token := a.Token()
		if token == "" {
			return
		}
		got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			c.Header("WWW-Authenticate", `Bearer realm="fanout"`)
			c.AbortWithStatusJSON(http.StatusUnauthorized, apiError{Error: "missing or wrong bearer token"})
		}
	}
	auth := e.Group("/", requireToken)
	// Unknown paths too: without the token, the port says nothing about what it serves.
	e.NoRoute(requireToken, func(c *gin.Context) {
		c.PureJSON(http.StatusNotFound, apiError{Error: "no such endpoint: " + c.Request.Method + " " + c.Request.URL.Path})
	})
	auth.GET("/metrics", gin.WrapH(a.Metrics()))
	// Profiles, for finding what a busy gateway spends its time on.
	auth.GET("/debug/pprof/*profile", gin.WrapF(func(w http.ResponseWriter, r *http.Request) {
		switch name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/"); name {
		case "profile":
			pprof.Profile(w, r)
		case "trace":
			pprof.Trace(w, r)
		case "symbol":
			pprof.Symbol(w, r)
		case "cmdline":
			pprof.Cmdline(w, r)
		case "":
			pprof.Index(w, r)
		default:
			pprof.Handler(name).ServeHTTP(w, r)
		}
	}))
	auth.POST("/-/reload", func(c *gin.Context) {
		if err := a.Reload(c.Request.Context()); err != nil {
			c.PureJSON(http.StatusBadRequest, gin.H{"status": "error", "error": err.Error()})
			return
		}
		c.PureJSON(http.StatusOK, gin.H{"status": "ok"})
	})

	api := auth.Group("/api/v1")
	api.GET("/routes", func(c *gin.Context) {
		r, err := a.Routes(c.Request.Context())
		answer(c, r, err)
	})
	api.GET("/destinations", func(c *gin.Context) {
		d, err := a.Destinations(c.Request.Context())
		answer(c, d, err)
	})
	api.GET("/dlq", func(c *gin.Context) { listDeadLetters(c, a) })
	api.GET("/dlq/:id", func(c *gin.Context) {
		id, err := pathID(c)
		if err != nil {
			fail(c, err)
			return
		}
		d, err := a.DeadLetter(c.Request.Context(), id)
		answer(c, d, err)
	})
	api.POST("/dlq/replay", func(c *gin.Context) { replayDeadLetters(c, a) })
	api.DELETE("/dlq/:id", func(c *gin.Context) {
		id, err := pathID(c)
		if err != nil {
			fail(c, err)
			return
		}
		q := c.Request.URL.Query()
		err = knownParams(q, "dry_run")
		dryRun := false
		if err == nil {
			dryRun, err = boolParam(q, "dry_run")
		}
		if err != nil {
			fail(c, err)
			return
		}
		r, err := a.PurgeDeadLetters(c.Request.Context(), Selection{IDs: []uint64{id}}, dryRun)
		if err == nil && r.Matched == 0 {
			err = fmt.Errorf("dead letter %d: %w", id, ErrNotFound)
		}
		answer(c, r, err)
	})
	api.DELETE("/dlq", func(c *gin.Context) { purgeDeadLetters(c, a) })
	mountConsole(e, api, a)
	return newServer(e, log)
}

// answer writes v as JSON, or err with the status it calls for.
func answer(c *gin.Context, v any, err error) {
	if err != nil {
		fail(c, err)
		return
	}
	c.PureJSON(http.StatusOK, v)
}

func fail(c *gin.Context, err error) {
	var pe *ParamError
	switch {
	case errors.As(err, &pe):
		c.PureJSON(http.StatusBadRequest, apiError{Error: pe.Error(), Param: pe.Param})
	case errors.Is(err, ErrNotFound):
		c.PureJSON(http.StatusNotFound, apiError{Error: err.Error()})
	default:
		c.PureJSON(http.StatusInternalServerError, apiError{Error: err.Error()})
	}
}

func listDeadLetters(c *gin.Context, a Admin) {
	q := c.Request.URL.Query()
	if err := knownParams(q, "destination", "reason", "since", "until", "after", "limit"); err != nil {
		fail(c, err)
		return
	}
	f, err := filterParams(q)
	if err != nil {
		fail(c, err)
		return
	}
	after, err := uintParam(q, "after", 0)
	if err != nil {
		fail(c, err)
		return
	}
	limit, err := uintParam(q, "limit", DefaultListLimit)
	if err == nil && (limit < 1 || limit > MaxListLimit) {
		err = &ParamError{"limit", fmt.Sprintf("%d: want 1 to %d", limit, MaxListLimit)}
	}
	if err != nil {
		fail(c, err)
		return
	}
	items, next, err := a.DeadLetters(c.Request.Context(), f, after, int(limit))
	if items == nil {
		items = []DeadLetter{}
	}
	answer(c, DeadLetterPage{Items: items, Next: next}, err)
}

// replayRequest is the body of POST /api/v1/dlq/replay: ids, or a filter (all: true for
// an empty one, so that a forgotten filter does not replay everything).
type replayRequest struct {
	IDs    []uint64 `json:"ids"`
	Filter *struct {
		Destination string `json:"destination"`
		Reason      string `json:"reason"`
		Since       string `json:"since"`
		Until       string `json:"until"`
	} `json:"filter"`
	All    bool `json:"all"`
	DryRun bool `json:"dry_run"`
}

func replayDeadLetters(c *gin.Context, a Admin) {
	var req replayRequest
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(c, bodyError(err))
		return
	}
	if dec.More() {
		fail(c, &ParamError{"body", "more than one JSON value"})
		return
	}
	var s Selection
	switch {
	case req.IDs != nil && (req.Filter != nil || req.All):
		fail(c, &ParamError{"ids", "give ids or a filter (or all), not both"})
		return
	case req.IDs != nil:
		if len(req.IDs) == 0 {
			fail(c, &ParamError{"ids", "empty"})
			return
		}
		if slices.Contains(req.IDs, 0) {
			fail(c, &ParamError{"ids", "0 is not a dead-letter id"})
			return
		}
		s.IDs = req.IDs
	default:
		if req.Filter != nil {
			var err error
			s.Filter, err = parseFilter("filter.", func(name string) string {
				return map[string]string{"destination": req.Filter.Destination, "reason": req.Filter.Reason,
					"since": req.Filter.Since, "until": req.Filter.Until}[name]
			})
			if err != nil {
				fail(c, err)
				return
			}
		}
		if s.Filter.IsZero() && !req.All {
			fail(c, &ParamError{"filter", `give ids, a non-empty filter, or "all": true to replay every dead letter`})
			return
		}
	}
	r, err := a.ReplayDeadLetters(c.Request.Context(), s, req.DryRun)
	if pe := (*ParamError)(nil); errors.As(err, &pe) && s.IDs == nil && !strings.HasPrefix(pe.Param, "filter.") {
		pe.Param = "filter." + pe.Param // the filter's fields are named so in this body
	}
	answer(c, r, err)
}

// bodyError names the JSON field a decoding error is about.
func bodyError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &te):
		return &ParamError{te.Field, fmt.Sprintf("want %s, got a JSON %s", te.Type, te.Value)}
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return &ParamError{"body", "not JSON: " + err.Error()}
	case errors.Is(err, io.EOF):
		return &ParamError{"body", `empty: want {"ids": [...]} or {"filter": {...}}`}
	case errors.As(err, &tooLarge):
		return &ParamError{"body", fmt.Sprintf("larger than %d bytes", tooLarge.Limit)}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		return &ParamError{name, "unknown field"}
	}
	return &ParamError{"body", err.Error()}
}

// purgeDeadLetters serves DELETE /api/v1/dlq: by id (repeatable) or by filter; all=true
// deletes everything, which nothing else does.
func purgeDeadLetters(c *gin.Context, a Admin) {
	q := c.Request.URL.Query()
	if err := knownParams(q, "id", "destination", "reason", "since", "until", "all", "dry_run"); err != nil {
		fail(c, err)
		return
	}
	dryRun, err := boolParam(q, "dry_run")
	if err != nil {
		fail(c, err)
		return
	}
	all, err := boolParam(q, "all")
	if err != nil {
		fail(c, err)
		return
	}
	f, err := filterParams(q)
	if err != nil {
		fail(c, err)
		return
	}
	var s Selection
	if ids := q["id"]; ids != nil {
		if !f.IsZero() || all {
			fail(c, &ParamError{"id", "give ids or a filter (or all), not both"})
			return
		}
		for _, v := range ids {
			id, err := strconv.ParseUint(v, 10, 64)
			if err != nil || id == 0 {
				fail(c, &ParamError{"id", fmt.Sprintf("%q: want a dead-letter id (a positive integer)", v)})
				return
			}
			s.IDs = append(s.IDs, id)
		}
	} else {
		s.Filter = f
		if f.IsZero() && !all {
			fail(c, &ParamError{"all", "no filter: give id, destination, reason, since or until, or all=true to delete every dead letter"})
			return
		}
	}
	r, err := a.PurgeDeadLetters(c.Request.Context(), s, dryRun)
	answer(c, r, err)
}

// knownParams refuses parameters the endpoint does not take: a misspelled filter must not
// widen a purge to everything.
func knownParams(q url.Values, known ...string) error {
	var unknown []string
	for k := range q {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return &ParamError{unknown[0], "unknown parameter (known: " + strings.Join(known, ", ") + ")"}
}

func filterParams(q url.Values) (DeadLetterFilter, error) {
	return parseFilter("", q.Get)
}

// parseFilter reads destination, reason, since and until through get; prefix goes before
// the names in errors.
func parseFilter(prefix string, get func(string) string) (DeadLetterFilter, error) {
	f := DeadLetterFilter{Destination: get("destination"), Reason: get("reason")}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := get(t.name)
		if v == "" {
			continue
		}
		tm, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, &ParamError{prefix + t.name, fmt.Sprintf("%q: want an RFC 3339 time such as 2025-01-02T15:04:05Z", v)}
		}
		*t.dst = tm
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, &ParamError{prefix + "until", "must be after since"}
	}
	return f, nil
}

func uintParam(q url.Values, name string, def uint64) (uint64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, &ParamError{name, fmt.Sprintf("%q: want a non-negative integer", v)}
	}
	return n, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, &ParamError{name, fmt.Sprintf("%q: want true or false", v)}
	}
	return b, nil
}

func pathID(c *gin.Context) (uint64, error) {
	v := c.Param("id")
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil || id == 0 {
		return 0, &ParamError{"id", fmt.Sprintf("%q: want a dead-letter id (a positive integer)", v)}
	}
	return id, nil
}
