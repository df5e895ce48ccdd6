package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Callback is one request to the callback path, as read off the wire.
type Callback struct {
	RawQuery  string
	Body      []byte
	TooLarge  bool       // the body went past the limit (Body is then incomplete)
	ClientIP  netip.Addr // the caller, seen through trusted proxies (see ClientIP)
	RequestID string     // this request's id, answered in X-Request-Id
}

// Answer is what to write back.
type Answer struct {
	Status int
	Body   []byte
}

// Limits are what the receiver reads of the live config before it reads a callback.
type Limits struct {
	Path           string
	MaxBodyBytes   int64
	TrustedProxies []netip.Prefix // the proxies whose X-Forwarded-For is believed
}

// Receiver handles callbacks.
type Receiver interface {
	// Limits returns the live callback path, body limit and trusted proxies.
	Limits() Limits
	Receive(ctx context.Context, cb *Callback) Answer
}

var (
	notFound   = []byte(`{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"not found: callbacks are POSTed to the configured server.path"}`)
	notAllowed = []byte(`{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"method not allowed: callbacks are POSTed"}`)
	tooMany    = []byte(`{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"too many callbacks in progress: try again"}`)
	unreadable = []byte(`{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"cannot read the body"}`)
)

// The callback port's limits on slow and many clients. Tencent IM sends a callback at once
// and gives up on the answer after 2 s: a request still arriving after callbackReadTimeout
// can no longer be answered in time, and only holds memory and a connection.
const (
	// callbackReadTimeout bounds reading a request, headers and body.
	callbackReadTimeout = 3 * time.Second
	// callbackWriteTimeout bounds the whole exchange after the headers (a respond rule's
	// answer and the queue's write take at most about 2 s).
	callbackWriteTimeout = 10 * time.Second
	// DefaultMaxInFlight is how many callbacks are handled at once by default; more are
	// answered 503 at once. Each holds at most server.max_body_bytes.
	DefaultMaxInFlight = 1024
)

// NewReceiver returns the callback server: every path and method lands in one handler,
// which checks them against the live config (the path can change on reload). At most
// DefaultMaxInFlight callbacks are read and handled at once: past that, a callback is
// answered 503 at once, before its body is read.
func NewReceiver(r Receiver, log *slog.Logger) *Server {
	return newReceiver(r, log, DefaultMaxInFlight)
}

func newReceiver(r Receiver, log *slog.Logger, maxInFlight int) *Server {
	slots := make(chan struct{}, maxInFlight)
	e := gin.New()
	e.Any("/*path", func(c *gin.Context) {
		limits := r.Limits()
		if c.Request.URL.Path != limits.Path {
			writeJSON(c, http.StatusNotFound, notFound)
			return
		}
		if c.Request.Method != http.MethodPost {
			c.Header("Allow", http.MethodPost)
			writeJSON(c, http.StatusMethodNotAllowed, notAllowed)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			c.Header("Connection", "close")
			writeJSON(c, http.StatusServiceUnavailable, tooMany)
			return
		}
		cb := &Callback{RawQuery: c.Request.URL.RawQuery, RequestID: newRequestID()}
		var peer netip.Addr
		if ap, err := netip.ParseAddrPort(c.Request.RemoteAddr); err == nil {
			peer = ap.Addr()
		}
		// Every X-Forwarded-For line, in order: a proxy may add its own line rather than
		// append to the client's.
		cb.ClientIP = ClientIP(peer, strings.Join(c.Request.Header.Values("X-Forwarded-For"), ","), limits.TrustedProxies)
		body, err := readBody(c.Request, limits.MaxBodyBytes)
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			cb.TooLarge = true
			c.Header("Connection", "close") // the rest of the body is not read
		case err != nil:
			c.Header("Connection", "close")
			writeJSON(c, http.StatusBadRequest, unreadable)
			return
		}
		cb.Body = body
		a := r.Receive(c.Request.Context(), cb)
		c.Header("X-Request-Id", cb.RequestID)
		writeJSON(c, a.Status, a.Body)
	})
	s := newServer(e, log)
	s.srv.ReadHeaderTimeout = callbackReadTimeout
	s.srv.ReadTimeout = callbackReadTimeout
	s.srv.WriteTimeout = callbackWriteTimeout
	return s
}

// readBody reads at most limit bytes; more is an *http.MaxBytesError. The buffer grows as
// bytes arrive, never from Content-Length: a client can announce any length and send
// nothing.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(c *gin.Context, status int, body []byte) {
	c.Data(status, "application/json; charset=utf-8", body)
}
