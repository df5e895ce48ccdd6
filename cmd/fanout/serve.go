package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/fanout-gw/fanout/gateway"
)

// stopTimeout bounds a graceful stop: callbacks in flight finish, workers stop, the queue closes.
const stopTimeout = 20 * time.Second

// serveOptions are serve's flags.
type serveOptions struct {
	config    string
	logFormat string
	logLevel  string
}

func runServe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[--config FILE] [--log-format json|text] [--log-level LEVEL]",
		"Runs the gateway until SIGINT or SIGTERM. SIGHUP, POST /-/reload and changes to the file reload the config.")
	var o serveOptions
	fs.StringVar(&o.config, "config", "", "config file (default $FANOUT_CONFIG, then config.yaml)")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := noArguments(fs, args, stdout); err != nil {
		return err
	}
	if o.config == "" {
		o.config = os.Getenv("FANOUT_CONFIG")
	}
	if o.config == "" {
		o.config = "config.yaml"
	}
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	setMemoryLimit(log)
	v, _ := buildInfo()
	g, err := gateway.New(gateway.Options{ConfigPath: o.config, Logger: log, Version: v})
	if err != nil {
		return fmt.Errorf("config %s:\n%w", o.config, err)
	}
	// SIGHUP is taken before Start logs "fanout started": its default action ends the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := g.Start(ctx); err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go g.WatchConfig(watchCtx)
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading the config")
			_ = g.Reload(ctx) // logged by Reload
		case err := <-g.Fatal():
			stopWatch()
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			return errors.Join(err, g.Stop(sctx))
		case <-ctx.Done():
			stopWatch() // no reload once stopping
			log.Info("stopping: finishing callbacks in flight (a second SIGINT or SIGTERM ends the process at once)", "timeout", stopTimeout)
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			return g.Stop(sctx)
		}
	}
}

// newLogger builds the process logger.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("invalid --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: humanDuration}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, usagef("invalid --log-format %q: want json or text", format)
}

// humanDuration writes a duration as Go does (8.66s, 1m30s) in every log format: slog's
// JSON handler writes it in nanoseconds.
func humanDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// setMemoryLimit gives the Go runtime a soft memory limit, so that the heap the garbage
// collector lets grow follows the memory the process may use, not the size of a burst or a
// backlog: GOMEMLIMIT when set, otherwise 90% of the container's memory limit (its cgroup).
// Without either, there is no limit.
func setMemoryLimit(log *slog.Logger) {
	limit, err := memlimit.Set(memlimit.WithProvider(memlimit.FromCgroup), memlimit.WithLogger(log))
	switch {
	case err != nil:
		log.Warn("cannot read the container's memory limit; no memory limit set", "error", err)
	case limit < math.MaxInt64:
		log.Info("memory limit", "gomemlimit_bytes", limit)
	}
}
