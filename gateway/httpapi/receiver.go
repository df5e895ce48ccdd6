package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"

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
)

// NewReceiver returns the callback server: every path and method lands in one handler,
// which checks them against the live config (the path can change on reload).
func NewReceiver(r Receiver, log *slog.Logger) *Server {
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
		cb := &Callback{RawQuery: c.Request.URL.RawQuery, RequestID: newRequestID()}
		var peer netip.Addr
		if ap, err := netip.ParseAddrPort(c.Request.RemoteAddr); err == nil {
			peer = ap.Addr()
		}
		cb.ClientIP = ClientIP(peer, c.GetHeader("X-Forwarded-For"), limits.TrustedProxies)
		body, err := readBody(c.Request, limits.MaxBodyBytes)
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			cb.TooLarge = true
			c.Header("Connection", "close") // the rest of the body is not read
		case err != nil:
			writeJSON(c, http.StatusBadRequest, []byte(`{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"cannot read the body"}`))
			return
		}
		cb.Body = body
		a := r.Receive(c.Request.Context(), cb)
		c.Header("X-Request-Id", cb.RequestID)
		writeJSON(c, a.Status, a.Body)
	})
	return newServer(e, log)
}

// readBody reads at most limit bytes; more is an *http.MaxBytesError.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	size := 512
	if r.ContentLength > 0 && r.ContentLength <= limit {
		size = int(r.ContentLength)
	}
	var buf bytes.Buffer
	buf.Grow(size + bytes.MinRead)
	_, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(c *gin.Context, status int, body []byte) {
	c.Data(status, "application/json; charset=utf-8", body)
}
