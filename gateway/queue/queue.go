package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout-gw/fanout/gateway/webhook"
)

// Stream and subject names. A destination name is one subject token, so the
// jobs of destination "audit" live on "fanout.jobs.audit" and its dead
// letters on "fanout.dlq.audit": per-destination counts and filters are then
// subject filters that JetStream answers from its index.
const (
	jobsStream        = "FANOUT_JOBS"
	jobsSubjectPrefix = "fanout.jobs."
	// retrySubjectPrefix holds the retries waiting for their time: one JetStream message
	// schedule each, on fanout.retry.<destination>.<event>-<attempt>, which the server
	// moves to fanout.jobs.<destination> when it is due.
	retrySubjectPrefix = "fanout.retry."
	dlqStream          = "FANOUT_DLQ"
	dlqSubjectPrefix   = "fanout.dlq."
)

const (
	// publishAckTimeout bounds how long an asynchronous publish waits for its
	// ack inside the NATS client. Enqueue gives up at its ctx deadline much
	// earlier; this only frees the client's bookkeeping for acks that never
	// come (a cluster without quorum), so memory stays bounded in an outage.
	publishAckTimeout = 30 * time.Second

	// publishMaxPending caps asynchronous publishes awaiting their ack. At
	// ~20k writes/s and millisecond acks a few hundred are in flight; the cap
	// only matters when the store stalls, and then Enqueue should fail (503)
	// rather than queue up unbounded memory.
	publishMaxPending = 16384

	// reconnectWait is the pause between reconnect attempts to an external
	// JetStream; Fanout retries forever.
	reconnectWait = time.Second

	// closeFlushTimeout bounds the final flush of acks on Close.
	closeFlushTimeout = 5 * time.Second

	// setupRequestTimeout bounds each request that creates or updates a stream. On a
	// cluster where another replica has just created a stream whose leader is still being
	// elected, such a request can go unanswered: better to fail it and try again.
	setupRequestTimeout = 3 * time.Second
)

// Queue is an open JetStream store: the jobs stream that Enqueue writes and
// Consume reads, and the dead-letter stream. It is safe for concurrent use.
type Queue struct {
	opts Options // as opened, for the event log's connection
	log  *slog.Logger
	srv  *server.Server // embedded mode only
	nc   *nats.Conn
	js   jetstream.JetStream
	jobs jetstream.Stream
	dlq  jetstream.Stream

	registry jetstream.KeyValue // the replicas registry (replicas.go)

	closing chan struct{} // closed when Close begins: waits give up
	dedup   bool          // jobs carry a message id (Options.DedupWindow > 0)

	backlogFull func(destination string)        // Options.BacklogFull
	limitsMu    sync.Mutex                      // guards limits
	limits      map[string]BacklogLimit         // SetBacklogLimits
	recount     chan struct{}                   // asks census to count now
	full        atomic.Pointer[map[string]bool] // by destination, as of the last count

	lanes     jetstream.KeyValue // the lanes' records (lanerecords.go)
	leases    jetstream.KeyValue // the lanes' leases, external mode only (leases.go)
	owner     string             // this process among the replicas: a random id
	ownerName string             // the same, with the host name, for people

	mu           sync.Mutex
	closed       bool
	consumptions map[*consumption]struct{}

	// The embedded store's health (health.go).
	dir        string      // queue.dir
	dirInfo    os.FileInfo // queue.dir as opened, to notice it deleted or replaced
	broken     chan struct{}
	brokenOnce sync.Once
	brokenErr  error
	probeErr   atomic.Pointer[error]
	probeNow   chan struct{}
	laneSets   map[*laneSet]struct{}
}

// Open connects to (or embeds) JetStream and creates or updates the streams. An error that
// trying again cannot fix is marked so (IsPermanent); any other is worth another try, as
// when a cluster is still electing its leaders or several replicas start at once.
func Open(ctx context.Context, o Options) (*Queue, error) {
	q, err := open(ctx, o)
	return q, classifyOpenError(err)
}

func open(ctx context.Context, o Options) (*Queue, error) {
	q := &Queue{log: o.Logger, closing: make(chan struct{}), consumptions: make(map[*consumption]struct{}),
		laneSets: make(map[*laneSet]struct{}), dedup: o.DedupWindow > 0, backlogFull: o.BacklogFull,
		recount: make(chan struct{}, 1), dir: o.Dir, broken: make(chan struct{}), probeNow: make(chan struct{}, 1)}
	q.owner, q.ownerName = newOwner()
	q.opts = o
	if q.log == nil {
		q.log = slog.Default()
	}
	q.log = q.log.With("component", "queue")

	replicas := max(o.Replicas, 1)
	var err error
	switch {
	case o.URL != "" && o.Dir != "":
		return nil, permanentError{errors.New("queue: set either dir (embedded) or url (external), not both")}
	case o.URL != "":
		q.nc, err = connectExternal(o, q.log)
	case o.Dir != "":
		if replicas > 1 {
			return nil, permanentError{fmt.Errorf("queue: replicas %d needs an external JetStream cluster (url); the embedded store has one replica", replicas)}
		}
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("queue: queue.dir: %w", err)
		}
		if err := Writable(o.Dir); err != nil {
			return nil, err
		}
		if q.dirInfo, err = os.Stat(o.Dir); err != nil {
			return nil, fmt.Errorf("queue: queue.dir: %w", err)
		}
		q.srv, q.nc, err = startEmbedded(ctx, o, q.log, q.breakStore)
	default:
		return nil, permanentError{errors.New("queue: neither dir (embedded) nor url (external) is set")}
	}
	if err != nil {
		return nil, err
	}

	q.js, err = jetstream.New(q.nc,
		jetstream.WithPublishAsyncTimeout(publishAckTimeout),
		jetstream.WithPublishAsyncMaxPending(publishMaxPending),
	)
	if err != nil {
		q.shutdown()
		return nil, fmt.Errorf("queue: jetstream: %w", err)
	}
	if err := q.createStreams(ctx, o, replicas); err != nil {
		q.shutdown()
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 2*setupRequestTimeout) // two buckets
	err = q.createLaneBuckets(lctx, replicas, o.URL != "")
	cancel()
	if err != nil {
		q.shutdown()
		return nil, err
	}
	if err := q.createRegistry(ctx, replicas); err != nil {
		q.shutdown()
		return nil, err
	}
	go q.census()
	if q.srv != nil {
		go q.watchStore()
	}
	return q, nil
}

// createStreams creates the streams or updates them to the configured
// settings, so a changed dedup window or dead-letter age applies on restart.
// dedupWindow is the stream's Duplicates: JetStream reads 0 as its 2-minute default and
// refuses less than 100ms, so "no de-duplication" is that shortest window (jobs then carry
// no message id anyway).
func dedupWindow(d time.Duration) time.Duration {
	return max(d, 100*time.Millisecond)
}

func (q *Queue) createStreams(parent context.Context, o Options, replicas int) error {
	var err error
	ctx, cancel := context.WithTimeout(parent, setupRequestTimeout)
	defer cancel()
	q.jobs, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        jobsStream,
		Description: "Fanout deliveries waiting for their destination",
		Subjects:    []string{jobsSubjectPrefix + "*", retrySubjectPrefix + "*.*", lanesSubjectPrefix + "*.*"},
		// WorkQueue: a job is stored until its destination's consumer (or its lane
		// partition's) acknowledges it, and each subject has exactly one consumer.
		Retention: jetstream.WorkQueuePolicy,
		// A retry waits as a message schedule (see Message.Later): stored, holding no
		// place in the consumer's window, moved back to the jobs subject when due.
		AllowMsgSchedules: true,
		Storage:           jetstream.FileStorage,
		Duplicates:        dedupWindow(o.DedupWindow),
		Replicas:          replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: create or update stream %s: %w", jobsStream, err)
	}
	ctx, cancel = context.WithTimeout(parent, setupRequestTimeout)
	defer cancel()
	q.dlq, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        dlqStream,
		Description: "Fanout deliveries that gave up, kept for inspection and replay",
		Subjects:    []string{dlqSubjectPrefix + "*"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      o.DeadLetterMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: create or update stream %s: %w", dlqStream, err)
	}
	return nil
}

// startEmbedded runs a JetStream server inside the process, reachable only
// through an in-process connection, the way nats-server's own tests embed it.
func startEmbedded(ctx context.Context, o Options, log *slog.Logger, writeFailed func(string)) (*server.Server, *nats.Conn, error) {
	s, err := server.NewServer(&server.Options{
		ServerName:             "fanout-embedded",
		JetStream:              true,
		StoreDir:               o.Dir,
		JetStreamMaxStore:      o.MaxBytes,
		MaxPayload:             EmbeddedMaxPayload,
		SyncAlways:             o.SyncAlways,
		SyncInterval:           o.SyncInterval,
		DontListen:             true,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("queue: embedded JetStream in %s: %w", o.Dir, err)
	}
	fatal := make(chan string, 1)
	s.SetLoggerV2(serverLogger{log: log, fatal: fatal, writeFailed: writeFailed}, false, false, false)
	go s.Start()

	// Recovering a large store can take a while; honour the caller's deadline, and give up
	// at once on a fatal error (queue.dir not writable, say) or when ctx ends (SIGTERM).
	wait := time.Minute
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	fail := func(err error) (*server.Server, *nats.Conn, error) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, nil, fmt.Errorf("queue: embedded JetStream in %s: %w", o.Dir, err)
	}
	for deadline := time.Now().Add(wait); !s.ReadyForConnections(100 * time.Millisecond); {
		select {
		case msg := <-fatal:
			return fail(errors.New(msg))
		case <-ctx.Done():
			return fail(ctx.Err())
		default:
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("not ready after %s", wait.Round(time.Millisecond)))
		}
	}
	nc, err := nats.Connect("", nats.InProcessServer(s), nats.Name("fanout"))
	if err != nil {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, nil, fmt.Errorf("queue: connect to embedded JetStream: %w", err)
	}
	return s, nc, nil
}

// connectExternal connects to an external JetStream (usually a cluster) and
// keeps reconnecting forever: while it is down Enqueue fails (503) and
// Connected reports false, and Fanout recovers on its own when it is back.
func connectExternal(o Options, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("fanout"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		// No reconnect buffer: a write attempted while disconnected fails at
		// once instead of being sent later, after Fanout already answered 503.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("disconnected from JetStream", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to JetStream", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			log.Debug("JetStream connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("JetStream connection error", "subject", subject, "error", err)
		}),
	}
	if o.Credentials != "" {
		opts = append(opts, nats.UserCredentials(o.Credentials))
	}
	if o.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(o.TLS.CA))
	}
	if o.TLS.Cert != "" || o.TLS.Key != "" {
		opts = append(opts, nats.ClientCert(o.TLS.Cert, o.TLS.Key))
	}
	servers := strings.Split(o.URL, ",")
	for i := range servers {
		servers[i] = strings.TrimSpace(servers[i])
	}
	nc, err := nats.Connect(strings.Join(servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("queue: connect to %s: %w", redactURLs(servers), err)
	}
	log.Info("connected to JetStream", "url", nc.ConnectedUrlRedacted())
	return nc, nil
}

// redactURLs names the servers with their credentials redacted, for errors and logs.
func redactURLs(servers []string) string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = webhook.RedactURL(s)
	}
	return strings.Join(out, ",")
}

// Close stops consumers, closes the connection and shuts the embedded server
// down. It waits for handlers in flight. It is idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.closing)
	running := make([]*consumption, 0, len(q.consumptions))
	for c := range q.consumptions {
		running = append(running, c)
	}
	lanes := make([]*laneSet, 0, len(q.laneSets))
	for s := range q.laneSets {
		lanes = append(lanes, s)
	}
	q.mu.Unlock()

	for _, c := range running {
		c.Stop()
	}
	for _, s := range lanes {
		s.Stop()
	}
	var err error
	if q.nc.IsConnected() {
		// Make sure the server has the acks the handlers sent.
		if ferr := q.nc.FlushTimeout(closeFlushTimeout); ferr != nil {
			err = fmt.Errorf("queue: flush on close: %w", ferr)
		}
	}
	q.shutdown()
	return err
}

// shutdown closes the connection, then the embedded server: reverse order of
// Open.
func (q *Queue) shutdown() {
	if q.nc != nil {
		q.nc.Close()
	}
	if q.srv != nil {
		q.srv.Shutdown()
		q.srv.WaitForShutdown()
	}
}

// Connected reports whether the queue is open and connected to JetStream (see Health for
// whether it can take writes).
func (q *Queue) Connected() bool {
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	return !closed && q.nc.IsConnected()
}

// errClosed is returned by every operation after Close.
var errClosed = errors.New("queue: closed")

// checkDestination rejects names that are not one subject token: a dot or a
// wildcard would store the job where its consumer cannot see it.
func checkDestination(d string) error {
	if err := webhook.CheckDestinationName(d); err != nil {
		return fmt.Errorf("destination %q: %w", d, err)
	}
	return nil
}

// serverLogger sends the embedded server's logs to slog. Its notices (startup
// details) go to debug so a normal start stays quiet.
type serverLogger struct {
	log         *slog.Logger
	fatal       chan string  // the first fatal error (the server cannot start), if any
	writeFailed func(string) // told of a write error the store does not recover from
}

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l serverLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	if storeWriteFailure(msg) {
		l.writeFailed(msg)
	}
}
func (l serverLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
