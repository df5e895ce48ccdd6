// Package gateway wires Fanout together and owns its lifecycle: New, Start, Stop(ctx) and
// Reload. It opens the queue after the ports listen and keeps it open, trying again while
// it cannot and reopening it when its store fails (lifecycle.go); builds the runtime a
// config compiles to (runtime.go: destinations, respond rules, the intake's view of the
// config) and swaps it atomically on reload; keeps one queue consumer per destination in
// step with the live config, this replica's entry in the replicas registry, and moves the
// backlog of destinations no replica names to the dead letters (workers.go); registers the
// metrics; opens the event log with the queue and wires it to the intake and the workers
// (events.go); and connects the callback port to the intake and the admin port to the live
// config, the queue and the event log (admin.go, admin_dlq.go, admin_events.go).
//
// It holds no domain logic of its own: callbacks are the intake's, the file is config's,
// expressions are rules', HTTP is httpapi's, the queue is queue's and deliveries are
// delivery's.
package gateway

import (
	"context"
	"log/slog"
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
	intake  *intake.Intake
	// queue is the open queue, nil while it is being opened (or reopened after its store
	// failed): see lifecycle.go.
	queue atomic.Pointer[queue.Queue]
	ready atomic.Bool // the queue is open and every destination has its worker
	// replicaID names this process in the replicas registry.
	replicaID string
	// loadedFile is the Hash of the config file as the last load read it, successful or
	// not: the watcher reloads only a content no load has read yet.
	loadedFile atomic.Value

	// events is the open event log, nil when log.enabled is false or while the queue is
	// not open (it opens and closes with the queue: events.go); eventStore is its stream.
	events     atomic.Pointer[eventlog.Log]
	eventStore atomic.Pointer[queue.EventLog]

	mu      sync.Mutex // serialises reloads, worker changes and the queue's opening and closing
	workers map[string]*worker
	staged  atomic.Pointer[runtime] // a reload's runtime while its new workers start
	stopped bool                    // Stop began: no reload, no reopening
	// sweepEvery is how often the registry entry is renewed and removed destinations are
	// looked for; sweepNow asks for a sweep at once (a reload).
	sweepEvery   time.Duration
	sweepNow     chan struct{}
	stopRegistry context.CancelFunc       // ends keepRegistry
	removeHook   func(destination string) // tests: runs before a removed destination's backlog moves
	// removing is held while the sweep removes a destination's backlog and consumers; a
	// reload that configures a destination again takes it before creating its consumer, so
	// that the end of a removal never deletes the consumer just made (removeBacklog).
	removing sync.Mutex
	lanes    laneSets // the ordered destinations' lanes (lanes.go)

	statesMu sync.Mutex
	states   map[string]*destState // by destination name, kept across reloads
	workCtx  context.Context
	stopWork context.CancelFunc

	callbackSrv *httpapi.Server
	adminSrv    *httpapi.Server
	console     *console.Sampler // the console's Overview history

	stopping   chan struct{} // closed when Stop begins
	supervised chan struct{} // closed when the queue's supervisor has returned
	fatal      chan error    // a permanent queue error, for Fatal
	stopOnce   sync.Once
	stopErr    error
}

// New loads the config and builds the first runtime. Nothing runs until Start.
func New(opts Options) (*Gateway, error) {
	g := &Gateway{opts: opts, log: opts.Logger, workers: map[string]*worker{}, states: map[string]*destState{},
		replicaID: newReplicaID(), sweepEvery: queue.ReplicaTTL / 3, sweepNow: make(chan struct{}, 1),
		stopping: make(chan struct{}), supervised: make(chan struct{}), fatal: make(chan error, 1)}
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
	g.loadedFile.Store(cfg.Hash)
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

// warnBodyLimit says, at start and on every reload, when server.max_body_bytes is more
// than the queue stores in one message. check refuses that for the embedded queue; an
// external JetStream's max_payload is known only once connected. Such bodies are answered
// 413, as bodies over max_body_bytes are.
func (g *Gateway) warnBodyLimit(cfg *config.Config) {
	q := g.queue.Load()
	if q == nil {
		return
	}
	if most := q.MaxBody(); cfg.Server.MaxBodyBytes > most {
		g.log.Warn("server.max_body_bytes is more than the queue stores in one message: larger bodies are answered 413",
			"max_body_bytes", cfg.Server.MaxBodyBytes, "queue_max_body_bytes", most, "jetstream_max_payload", q.MaxPayload())
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
