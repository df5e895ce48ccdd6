package httpapi

import (
	"context"
	"crypto/subtle"
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
}

// NewAdmin returns the admin server: /healthz and /readyz open, everything else behind
// the bearer token when one is set.
func NewAdmin(a Admin, log *slog.Logger) *Server {
	e := gin.New()
	e.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c *gin.Context) {
		if err := a.Ready(); err != nil {
			c.String(http.StatusServiceUnavailable, "not ready: %v\n", err)
			return
		}
		c.String(http.StatusOK, "ready\n")
	})
	auth := e.Group("/", func(c *gin.Context) {
		token := a.Token()
		if token == "" {
			return
		}
		got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			c.Header("WWW-Authenticate", `Bearer realm="fanout"`)
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "missing or wrong bearer token"})
		}
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
			c.JSON(http.StatusBadRequest, gin.H{"status": "error", "error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	})
	return newServer(e, log)
}
