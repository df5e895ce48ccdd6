// Package httpapi is the only package that imports Gin: the callback receiver and the
// admin port. It turns HTTP requests into calls on a Receiver and an Admin and writes
// their answers. Of a callback it knows what the request says: the body (within the
// limit), the query, the caller's address seen through trusted proxies (ClientIP), and
// the request id it gives each one. What a callback means belongs to the intake, what the
// admin endpoints do to the gateway. It imports no NATS and evaluates no rules.
package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

func init() { gin.SetMode(gin.ReleaseMode) }

// Server is one listening HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

func newServer(h http.Handler, log *slog.Logger) *Server {
	return &Server{log: log, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
}

// Serve serves on ln in the background, with TLS when cert and key are set.
func (s *Server) Serve(ln net.Listener, cert, key string) error {
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12})
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return nil
}

// Addr is the listening address.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting connections and waits for the requests in flight, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s == nil || s.ln == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// Handler is the server's handler, for serving requests in the process (tests, fuzzing).
func (s *Server) Handler() http.Handler { return s.srv.Handler }
