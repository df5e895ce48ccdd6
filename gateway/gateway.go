// Package gateway wires Fanout together and owns its lifecycle: New, Start, Stop(ctx) and
// Reload. It builds the runtime a config compiles to (runtime.go: destinations, respond
// rules, the intake's view of the config) and swaps it atomically on reload; keeps one
// queue consumer per destination in step with the live config (workers.go); registers the
// metrics; wires the event log to the intake and the workers (events.go); and connects the
// callback port to the intake and the admin port to the live config, the queue and the
// event log (admin.go, admin_dlq.go, admin_events.go).
//
// It holds no domain logic of its own: callbacks are the intake's, the file is config's,
// expressions are rules', HTTP is httpapi's, the queue is queue's and deliveries are
// delivery's.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/console"
	"github.com/fanout-gw/fanout/gateway/delivery"
	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/intake"
	"github.com/fanout-gw/fanout/gateway/queue"
)

// Options configure a Gateway.
type Options struct {
	ConfigPath string
	Logger     *slog.Logger // nil = slog.Default()
	Version    string
}

// Gateway is one running Fanout.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	live    atomic.Pointer[runtime]
	metrics *metrics
	sender  *delivery.Sender
	queue   *queue.Queue
	ready   atomic.Bool
	intake  *intake.Intake

	events     *eventlog.Log   // nil when log.enabled is false
	eventStore *queue.EventLog // its stream

	mu      sync.Mutex // serialises reloads and worker changes
	workers map[string]*worker
	lanes   laneSets // the ordered destinations' lanes (lanes.go)

	statesMu sync.Mutex
	states   map[string]*destState // by destination name, kept across reloads
	workCtx  context.Context
	stopWork context.CancelFunc

	callbackSrv *httpapi.Server
	adminSrv    *httpapi.Server
	console     *console.Sampler // the console's Overview history
	stopOnce    sync.Once
	stopErr     error
}

// New loads the config and builds the first runtime. Nothing runs until Start.
func New(opts Options) (*Gateway, error) {
	g := &Gateway{opts: opts, log: opts.Logger, workers: map[string]*worker{}, states: map[string]*destState{}}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.metrics = newMetrics(g)
	g.sender = delivery.NewSender(delivery.SenderOptions{
		Version: opts.Version,
		Observe: func(a delivery.Attempt) {
			g.metrics.attempts.WithLabelValues(a.Destination, a.Result).Inc()
			g.metrics.attemptDuration.WithLabelValues(a.Destination).Observe(a.Took.Seconds())
			g.logAttempt(a)
		},
	})
	cfg, probs := config.Load(opts.ConfigPath)
	for _, p := range probs.Warnings() {
		g.log.Warn("config", "problem", p.String())
	}
	if cfg == nil {
		g.metrics.reloadOK.Set(0)
		return nil, probs.Errors()
	}
	rt, err := g.build(cfg)
	if err != nil {
		return nil, err
	}
	g.live.Store(rt)
	g.metrics.track(nil, cfg)
	g.loaded(cfg)
	return g, nil
}

// loaded records a successful load in the metrics.
func (g *Gateway) loaded(cfg *config.Config) {
	g.metrics.configHash.Set(cfg.HashValue())
	g.metrics.reloadOK.Set(1)
	g.metrics.reloadTime.SetToCurrentTime()
}

// Start opens the queue, starts a worker per destination, then the admin and callback
// servers. It returns once all are listening; serving errors later are logged.
func (g *Gateway) Start(ctx context.Context) error {
	cfg := g.live.Load().cfg
	qo := queueOptions(cfg.Queue, g.log)
	qo.BacklogFull = func(destination string) { g.metrics.backlogFull.WithLabelValues(destination).Inc() }
	q, err := queue.Open(ctx, qo)
	if err != nil {
		return err // says "queue: ..." already
	}
	g.queue = q
	g.openEventLog(ctx, cfg.Log)
	g.warnBodyLimit(cfg)
	g.intake = intake.New(intake.Options{
		Live:        func() *intake.Config { return g.live.Load().intake },
		Store:       q,
		DedupWindow: cfg.Queue.DedupWindow,
		Metrics:     g.metrics.intake(),
		Logger:      g.log,
		Events:      g.eventRecorder(),
	})
	g.workCtx, g.stopWork = context.WithCancel(context.Background())
	g.startConsole()
	g.mu.Lock()
	err = g.syncWorkers(ctx, g.live.Load())
	g.mu.Unlock()
	if err != nil {
		g.Stop(ctx)
		return err
	}
	if err := g.dropUnknownDestinations(ctx); err != nil {
		g.log.Error("cannot move the deliveries of removed destinations to the dead-letter queue", "err", err)
	}

	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		g.Stop(ctx)
		return fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
	}
	callbackLn, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		adminLn.Close()
		g.Stop(ctx)
		return fmt.Errorf("server.listen %s: %w", cfg.Server.Listen, err)
	}
	g.adminSrv = httpapi.NewAdmin(adminAPI{g}, g.log)
	g.adminSrv.Serve(adminLn, "", "")
	g.callbackSrv = httpapi.NewReceiver(g.intake, g.log)
	if err := g.callbackSrv.Serve(callbackLn, cfg.Server.TLS.Cert, cfg.Server.TLS.Key); err != nil {
		callbackLn.Close()
		g.Stop(ctx)
		return fmt.Errorf("server.tls: %w", err)
	}
	g.ready.Store(true)
	g.log.Info("fanout started", "listen", callbackLn.Addr().String(), "path", cfg.Server.Path,
		"admin", adminLn.Addr().String(), "queue", queueKind(cfg.Queue), "destinations", len(cfg.Destinations), "routes", len(cfg.Routes),
		"hash", cfg.HashID())
	return nil
}

// warnBodyLimit says, at start and on every reload, when server.max_body_bytes is more
// than the queue stores in one message. check refuses that for the embedded queue; an
// external JetStream's max_payload is known only once connected. Such bodies are answered
// 413, as bodies over max_body_bytes are.
func (g *Gateway) warnBodyLimit(cfg *config.Config) {
	if g.queue == nil {
		return
	}
	if most := g.queue.MaxBody(); cfg.Server.MaxBodyBytes > most {
		g.log.Warn("server.max_body_bytes is more than the queue stores in one message: larger bodies are answered 413",
			"max_body_bytes", cfg.Server.MaxBodyBytes, "queue_max_body_bytes", most, "jetstream_max_payload", g.queue.MaxPayload())
	}
}

func queueKind(q config.Queue) string {
	if q.Embedded() {
		return "embedded:" + q.Dir
	}
	return "external"
}

// queueDedupWindow bounds the queue's own de-duplication, when it is on: a retry of
// Tencent's that reaches another replica comes within seconds, and a longer window would
// only cost the JetStream servers memory (about 100 bytes per job).
const queueDedupWindow = 10 * time.Second

// queueOptions maps the config's queue section onto queue.Options. The intake
// de-duplicates callbacks in memory; the queue's own de-duplication covers what one
// process cannot see, which needs several: replicas on an external JetStream.
func queueOptions(q config.Queue, log *slog.Logger) queue.Options {
	window := min(q.DedupWindow, queueDedupWindow)
	dir := q.Dir
	if q.Embedded() {
		window = 0
	} else {
		dir = "" // the config keeps its default ./data beside a url (ignored, says check): not both
	}
	return queue.Options{
		Dir: dir, URL: q.URL.Value(), Credentials: q.Credentials,
		TLS:      queue.TLS{CA: q.TLS.CA, Cert: q.TLS.Cert, Key: q.TLS.Key},
		Replicas: q.Replicas, SyncAlways: q.SyncAlways, SyncInterval: q.SyncInterval,
		DedupWindow: window, DeadLetterMaxAge: q.DeadLetterMaxAge, MaxBytes: q.MaxBytes, Logger: log,
	}
}

// CallbackAddr and AdminAddr are the addresses the servers listen on (after Start).
func (g *Gateway) CallbackAddr() string { return g.callbackSrv.Addr() }

// AdminAddr is the admin server's address (after Start).
func (g *Gateway) AdminAddr() string { return g.adminSrv.Addr() }

// Stop stops taking callbacks and waits for those in flight, stops the workers (a delivery
// cut short is redelivered later: nothing is acknowledged that was not delivered), closes
// the queue, then the admin server. It is idempotent and returns when ctx ends at the latest.
func (g *Gateway) Stop(ctx context.Context) error {
	g.stopOnce.Do(func() {
		g.ready.Store(false)
		var errs []error
		if g.callbackSrv != nil {
			errs = append(errs, g.callbackSrv.Shutdown(ctx))
		}
		g.mu.Lock()
		if g.stopWork != nil {
			g.stopWork()
		}
		stopped := make(chan struct{})
		workers := g.workers
		go func() {
			for _, w := range workers {
				w.consumption.Stop()
			}
			g.stopAllLanes()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("workers: %w", ctx.Err()))
		}
		g.workers = map[string]*worker{}
		g.mu.Unlock()
		g.closeEventLog(ctx)
		if g.queue != nil {
			errs = append(errs, g.queue.Close())
		}
		g.sender.CloseIdleConnections()
		if g.adminSrv != nil {
			errs = append(errs, g.adminSrv.Shutdown(ctx))
		}
		g.stopErr = errors.Join(errs...)
		g.log.Info("fanout stopped")
	})
	return g.stopErr
}
