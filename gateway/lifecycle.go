package gateway

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/intake"
	"github.com/fanout-gw/fanout/gateway/queue"
)

// The queue's lifecycle. The servers listen first; the queue is then opened, and opened
// again, by a supervisor, for as long as the gateway runs:
//
//   - at start, replicas started together, a cluster still electing its leaders or briefly
//     unreachable make opening the queue fail for a while: it is tried again with a backoff,
//     logged, until it works. Meanwhile /readyz answers 503 and so does every callback.
//     Only an error that no retry can fix (credentials refused, options that contradict each
//     other) ends the gateway, through Fatal;
//   - the embedded store can break (a write failed on a full file system): the queue is
//     closed, the workers stop, and it is opened again once its directory can be written,
//     callbacks being answered 503 at once meanwhile.
const (
	openBackoffInitial = 500 * time.Millisecond
	openBackoffMax     = 30 * time.Second
	// openAttemptTimeout bounds one attempt to open the queue (recovering a large embedded
	// store takes a while).
	openAttemptTimeout = time.Minute
	// withdrawTimeout bounds the removal of this replica's registry entry on Stop.
	withdrawTimeout = 2 * time.Second
)

// errNotOpen is what a callback gets while the queue is not open: a 503.
var errNotOpen = errors.New("queue: not open yet (starting, or reopening after its store failed)")

// Start starts the admin and callback servers, then opens the queue and starts a worker per
// destination. It returns once the servers listen and the first attempt to open the queue
// is over: when it failed with an error worth retrying, the gateway keeps trying in the
// background (not ready until then); when no retry can fix it, Start fails.
func (g *Gateway) Start(ctx context.Context) error {
	cfg := g.live.Load().cfg
	g.intake = intake.New(intake.Options{
		Live:        func() *intake.Config { return g.live.Load().intake },
		Store:       liveQueue{g},
		DedupWindow: cfg.Queue.DedupWindow,
		Metrics:     g.metrics.intake(),
		Logger:      g.log,
		Events:      g.eventRecorder(cfg.Log),
	})
	g.workCtx, g.stopWork = context.WithCancel(context.Background())
	g.startConsole()

	// Until the supervisor runs, Stop must not wait for it.
	failed := func(err error) error {
		close(g.supervised)
		g.Stop(ctx)
		return err
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return failed(fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err))
	}
	callbackLn, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		adminLn.Close()
		return failed(fmt.Errorf("server.listen %s: %w", cfg.Server.Listen, err))
	}
	g.adminSrv = httpapi.NewAdmin(adminAPI{g}, g.log)
	g.adminSrv.Serve(adminLn, "", "")
	g.callbackSrv = httpapi.NewReceiver(g.intake, g.log)
	if err := g.callbackSrv.Serve(callbackLn, cfg.Server.TLS.Cert, cfg.Server.TLS.Key); err != nil {
		callbackLn.Close()
		return failed(fmt.Errorf("server.tls: %w", err))
	}
	g.log.Info("fanout started", "listen", callbackLn.Addr().String(), "path", cfg.Server.Path,
		"admin", adminLn.Addr().String(), "queue", queueKind(cfg.Queue), "destinations", len(cfg.Destinations), "routes", len(cfg.Routes),
		"hash", cfg.HashID())

	err = g.bringUp(ctx)
	if err != nil && queue.IsPermanent(err) {
		return failed(err)
	}
	if err != nil {
		g.log.Warn("the queue is not ready yet: trying again in the background; callbacks are answered 503 meanwhile", "err", err)
	}
	go g.supervise(err == nil)
	return nil
}

// Fatal delivers the error that ended the gateway on its own: the queue cannot be opened
// and no retry can fix it. The caller then stops the gateway.
func (g *Gateway) Fatal() <-chan error { return g.fatal }

// supervise keeps the queue open until Stop: it opens it again and again with a backoff
// while that fails, and closes and reopens it when its store breaks.
func (g *Gateway) supervise(up bool) {
	defer close(g.supervised)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-g.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := openBackoffInitial
	for {
		if !up {
			select {
			case <-g.stopping:
				return
			case <-time.After(jittered(backoff)):
			}
			err := g.bringUp(ctx)
			switch {
			case err != nil && ctx.Err() != nil:
				return
			case err != nil && queue.IsPermanent(err):
				g.log.Error("the queue cannot be opened, and trying again cannot fix it", "err", err)
				g.fatal <- err
				return
			case err != nil:
				g.log.Warn("the queue is not ready yet: trying again", "err", err, "retry_in", backoff.String())
				backoff = min(2*backoff, openBackoffMax)
				continue
			}
			up, backoff = true, openBackoffInitial
		}
		q := g.queue.Load()
		if q == nil { // Stop took it meanwhile
			return
		}
		select {
		case <-g.stopping:
			return
		case <-q.Broken():
			g.log.Error("the queue's store failed: closing it, to open it again once it can write; callbacks are answered 503 meanwhile",
				"err", q.Health())
			g.takeDown(ctx)
			up = false
		}
	}
}

// bringUp opens the queue when it is not open, announces this replica, and starts a worker
// for every live destination. The gateway is ready once it returns nil. On an error the
// queue stays open (if it opened) and the next call goes on from there.
func (g *Gateway) bringUp(ctx context.Context) error {
	q := g.queue.Load()
	if q == nil {
		cfg := g.live.Load().cfg
		qo := queueOptions(cfg.Queue, g.log)
		qo.BacklogFull = func(destination string) { g.metrics.backlogFull.WithLabelValues(destination).Inc() }
		actx, cancel := context.WithTimeout(ctx, openAttemptTimeout)
		var err error
		q, err = queue.Open(actx, qo)
		cancel()
		if err != nil {
			return err // says "queue: ..." already
		}
		g.queue.Store(q)
		cfg = g.live.Load().cfg
		g.openEventLog(ctx, q, cfg.Log)
		g.warnBodyLimit(cfg)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped { // Stop did not wait for this attempt: close what it opened
		g.closeEventLog(context.WithoutCancel(ctx)) // the log this attempt opened, if any
		if g.queue.CompareAndSwap(q, nil) {
			q.Close()
		}
		return errors.New("stopping")
	}
	rt := g.live.Load()
	// Announced before any worker starts and before this replica looks for removed
	// destinations: the others must see what it serves first.
	if err := q.Announce(ctx, g.replica(rt)); err != nil {
		return err
	}
	if err := g.syncWorkers(ctx, rt); err != nil {
		return err
	}
	if !g.ready.Load() {
		kctx, cancel := context.WithCancel(g.workCtx)
		g.stopRegistry = cancel
		go g.keepRegistry(kctx, q)
		g.ready.Store(true)
		g.log.Info("queue ready: delivering", "queue", queueKind(rt.cfg.Queue), "replica", g.replicaID)
	}
	return nil
}

// takeDown stops the workers and closes the queue, for it to be opened again.
func (g *Gateway) takeDown(ctx context.Context) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ready.Store(false)
	g.stopWorkers()
	q := g.queue.Swap(nil)
	g.closeEventLog(ctx)
	if q != nil {
		wctx, cancel := context.WithTimeout(ctx, withdrawTimeout)
		_ = q.Withdraw(wctx, g.replicaID) // best effort: the entry expires anyway
		cancel()
		if err := q.Close(); err != nil {
			g.log.Warn("closing the failed queue", "err", err)
		}
	}
}

// stopWorkers stops every worker, all at once, and the registry's upkeep. Callers hold g.mu.
func (g *Gateway) stopWorkers() {
	if g.stopRegistry != nil {
		g.stopRegistry()
		g.stopRegistry = nil
	}
	var wg sync.WaitGroup
	for name, w := range g.workers {
		w.cancel() // rounds in flight end now, their deliveries stored back
		wg.Go(w.consumption.Stop)
		delete(g.workers, name)
	}
	wg.Go(g.stopAllLanes)
	wg.Wait()
}

// readiness says why the gateway cannot take callbacks now, or nil.
func (g *Gateway) readiness() error {
	q := g.queue.Load()
	switch {
	case q == nil:
		return errors.New("queue not open")
	case !g.ready.Load():
		return errors.New("starting or stopping")
	}
	if err := q.Health(); err != nil {
		return err
	}
	return nil
}

// liveQueue is the intake's store: the queue open now. While it is not open, or cannot
// write, a callback fails at once (503) instead of waiting for a write that cannot succeed.
type liveQueue struct{ g *Gateway }

func (s liveQueue) Enqueue(ctx context.Context, jobs []queue.Job) error {
	q := s.g.queue.Load()
	if q == nil {
		return errNotOpen
	}
	if err := q.Health(); err != nil {
		return err
	}
	return q.Enqueue(ctx, jobs)
}

// Stop stops taking callbacks and waits for those in flight, stops the workers (a delivery
// cut short is stored back for an attempt at once, or redelivered after the ack wait),
// withdraws this replica from the registry, closes the queue, then the admin server. It is
// idempotent and returns when ctx ends at the latest, whatever is left to do then going on
// in the background until the process exits.
func (g *Gateway) Stop(ctx context.Context) error {
	g.stopOnce.Do(func() {
		done := make(chan error, 1)
		go func() { done <- g.stop(ctx) }()
		select {
		case err := <-done:
			g.stopErr = err
		case <-ctx.Done():
			g.stopErr = fmt.Errorf("stop: %w (what was in flight is redelivered later)", ctx.Err())
		}
		g.log.Info("fanout stopped")
	})
	return g.stopErr
}

func (g *Gateway) stop(ctx context.Context) error {
	g.ready.Store(false)
	var errs []error
	if g.callbackSrv != nil {
		errs = append(errs, g.callbackSrv.Shutdown(ctx))
	}
	close(g.stopping)
	if g.stopWork != nil { // Start ran
		select {
		case <-g.supervised:
		case <-ctx.Done():
		}
	}
	g.mu.Lock()
	g.stopped = true
	if g.stopWork != nil {
		g.stopWork()
	}
	g.stopWorkers()
	q := g.queue.Swap(nil)
	g.mu.Unlock()
	g.closeEventLog(ctx)
	if q != nil {
		wctx, cancel := context.WithTimeout(ctx, withdrawTimeout)
		if err := q.Withdraw(wctx, g.replicaID); err != nil {
			g.log.Debug("cannot withdraw from the replicas registry; the entry expires by itself", "err", err)
		}
		cancel()
		errs = append(errs, q.Close())
	}
	g.sender.CloseIdleConnections()
	if g.adminSrv != nil {
		errs = append(errs, g.adminSrv.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// jittered is d give or take half: replicas started together that failed together (both
// creating the same stream) try again apart.
func jittered(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}

// newReplicaID names this process in the replicas registry: the host name, for people,
// and a random part, since two processes may share a host name.
func newReplicaID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, host)
	b := make([]byte, 4)
	crand.Read(b)
	if host == "" {
		host = "fanout"
	}
	return host + "-" + hex.EncodeToString(b)
}
