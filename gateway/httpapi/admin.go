package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"

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
	// Lanes returns the blocked lanes of destination ("" for all) and the lane partitions
	// this replica consumes.
	Lanes(ctx context.Context, destination string) (Lanes, error)
	// ReleaseLane asks for action ("retry" or "skip") on the blocked lane key of
	// destination; ErrNotFound when that lane is not blocked.
	ReleaseLane(ctx context.Context, destination, key, action string) (LaneRelease, error)
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
		got, ok := bearerToken(c.GetHeader("Authorization"))
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
	auth.GET("/debug/pprof/*profile", gin.WrapF(profiles))
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
	api.GET("/dlq/:id", func(c *gin.Context) { showDeadLetter(c, a) })
	api.POST("/dlq/replay", func(c *gin.Context) { replayDeadLetters(c, a) })
	api.DELETE("/dlq/:id", func(c *gin.Context) { purgeDeadLetter(c, a) })
	api.DELETE("/dlq", func(c *gin.Context) { purgeDeadLetters(c, a) })
	mountConsole(e, api, a)
	api.GET("/lanes", func(c *gin.Context) { listLanes(c, a) })
	api.POST("/lanes/:destination/*key_action", func(c *gin.Context) { releaseLane(c, a) })
	if ev, ok := a.(Events); ok {
		mountEvents(api, ev)
	}
	return newServer(e, log)
}

// profiles serves /debug/pprof/, for finding what a busy gateway spends its time on.
func profiles(w http.ResponseWriter, r *http.Request) {
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

// bearerToken reads the token of an Authorization header with the Bearer scheme, whose name
// is case-insensitive (RFC 9110, 11.1): "bearer x" is as good as "Bearer x".
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}
