package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/fanout-gw/fanout/gateway/console"
)

// ConsoleAdmin is what the console needs of the gateway beyond the admin API it reads.
type ConsoleAdmin interface {
	// Overview returns the last hour of traffic, as the console's sampler kept it.
	Overview(ctx context.Context) (console.History, error)
	// TryRoute runs a payload through the live routing, or through an edited config's,
	// sending nothing: the dry run of `fanout route`.
	TryRoute(ctx context.Context, t RouteTry) (RouteTrial, error)
	// CheckConfig loads a config text as `fanout check` loads a file, applying nothing.
	CheckConfig(ctx context.Context, text string) (ConfigCheck, error)
	// PauseDestination holds a destination's deliveries until ResumeDestination;
	// ErrNotFound for a name that is not configured.
	PauseDestination(ctx context.Context, name string) (DestinationInfo, error)
	// ResumeDestination ends a pause, an operator's or the failing destination's.
	ResumeDestination(ctx context.Context, name string) (DestinationInfo, error)
}

// CSRFHeader must be on every state-changing request a browser makes to the admin port.
// A page of another site cannot set it without a CORS preflight, which the admin port
// never grants.
const CSRFHeader = "X-Fanout-CSRF"

// RouteTry is a payload to route: its raw body, the query it came with, and the config
// text to route it with (nil: the live config).
type RouteTry struct {
	Payload []byte
	Query   url.Values
	Config  *string
}

// RouteTrial is the answer of POST /api/v1/route.
type RouteTrial struct {
	Config     string          `json:"config"` // "live" or "edited"
	ConfigHash string          `json:"config_hash"`
	Problems   []ConfigProblem `json:"problems"` // of an edited config; without a result it did not load
	// Result is what `fanout route --format json` prints for the payload (one element).
	Result json.RawMessage `json:"result,omitempty"`
	// Bodies are the exact bytes each destination would receive, as text, by destination.
	Bodies map[string]string `json:"bodies,omitempty"`
}

// ConfigProblem is one problem `fanout check` reports.
type ConfigProblem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path"`
	Message string `json:"message"`
	Warning bool   `json:"warning,omitempty"`
}

// ConfigCheck is the answer of POST /api/v1/check.
type ConfigCheck struct {
	Valid    bool            `json:"valid"`
	Problems []ConfigProblem `json:"problems"`
	// RestartRequired names the keys that differ from the live config and would make a
	// reload refuse the file.
	RestartRequired []string `json:"restart_required"`
}

// browserGuard refuses what a browser sends on behalf of another site. A request with
// neither Origin nor Sec-Fetch-Site is not from a browser (curl, fanout dlq, Prometheus)
// and passes: it is the bearer token's to judge. From a browser, the Origin must be this
// admin port; a state-changing request must be same-origin, carry CSRFHeader and, with a
// body, be JSON; and without admin.token the port must be addressed by IP or as
// localhost, since a page whose DNS name is rebound to this port would be "same-origin".
func browserGuard(a Admin) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("X-Content-Type-Options", "nosniff")
		r := c.Request
		site, origin := r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Origin")
		if site == "" && origin == "" {
			return
		}
		if err := checkBrowserRequest(r, site, origin, a.Token() == ""); err != nil {
			status := http.StatusForbidden
			if errors.Is(err, errNotJSON) {
				status = http.StatusUnsupportedMediaType
			}
			c.AbortWithStatusJSON(status, apiError{Error: err.Error()})
		}
	}
}

var errNotJSON = errors.New("a request body must be JSON (Content-Type: application/json)")

func checkBrowserRequest(r *http.Request, site, origin string, tokenless bool) error {
	if origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return fmt.Errorf("cross-origin request refused: Origin %q is not this admin port", origin)
		}
	}
	if tokenless && !literalHost(r.Host) {
		return errors.New("refused: without admin.token the admin port answers browsers only at an IP address or localhost")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if site != "" && site != "same-origin" {
		return fmt.Errorf("cross-site request refused (Sec-Fetch-Site: %s)", site)
	}
	if r.Header.Get(CSRFHeader) == "" {
		return errors.New("refused: a state-changing request from a browser needs the " + CSRFHeader + " header")
	}
	if r.ContentLength != 0 {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return errNotJSON
		}
	}
	return nil
}

// literalHost reports whether host (with or without a port) is an IP address or localhost.
func literalHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

// mountConsole serves the console's pages under /ui/ (no token: they hold no data, and
// ask for the token themselves) and the endpoints only the console uses.
func mountConsole(e *gin.Engine, api *gin.RouterGroup, a Admin) {
	ui := gin.WrapH(console.Handler())
	e.GET(console.Prefix+"*file", ui)
	e.HEAD(console.Prefix+"*file", ui)

	api.GET("/overview", func(c *gin.Context) {
		h, err := a.Overview(c.Request.Context())
		answer(c, h, err)
	})
	api.POST("/route", func(c *gin.Context) {
		var req struct {
			Payload *string `json:"payload"`
			Query   string  `json:"query"`
			Config  *string `json:"config"`
		}
		if err := decodeBody(c, &req); err != nil {
			fail(c, err)
			return
		}
		if req.Payload == nil || strings.TrimSpace(*req.Payload) == "" {
			fail(c, &ParamError{"payload", "empty: want the callback's body (a JSON object, as text)"})
			return
		}
		q, err := url.ParseQuery(strings.TrimPrefix(req.Query, "?"))
		if err != nil {
			fail(c, &ParamError{"query", fmt.Sprintf("not a query string: %v", err)})
			return
		}
		t, err := a.TryRoute(c.Request.Context(), RouteTry{Payload: []byte(*req.Payload), Query: q, Config: req.Config})
		answer(c, t, err)
	})
	api.POST("/check", func(c *gin.Context) {
		var req struct {
			Config *string `json:"config"`
		}
		if err := decodeBody(c, &req); err != nil {
			fail(c, err)
			return
		}
		if req.Config == nil {
			fail(c, &ParamError{"config", "missing: want the config file's text"})
			return
		}
		r, err := a.CheckConfig(c.Request.Context(), *req.Config)
		answer(c, r, err)
	})
	for action, do := range map[string]func(context.Context, string) (DestinationInfo, error){
		"pause": a.PauseDestination, "resume": a.ResumeDestination,
	} {
		api.POST("/destinations/:name/"+action, func(c *gin.Context) {
			d, err := do(c.Request.Context(), c.Param("name"))
			answer(c, d, err)
		})
	}
}

// decodeBody reads one JSON object into v, refusing unknown fields.
func decodeBody(c *gin.Context, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if dec.More() {
		return &ParamError{"body", "more than one JSON value"}
	}
	return nil
}
