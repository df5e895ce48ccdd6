package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// restartWait is the pause before a consumption whose iterator ended on its
// own (consumer deleted, stream recreated) creates its consumer again.
const restartWait = time.Second

// pullExpiry is how long a pull request waits at the server (see start).
const pullExpiry = time.Second

// Message is a job delivered to a Handler. Its retry state (the attempt number) is stored
// with the job, not in the process, so a restart or another replica continues where this
// one stopped.
type Message struct {
	Job Job

	q       *Queue
	msg     jetstream.Msg
	seq     uint64 // jobs stream sequence, part of the dead letter's dedup id
	attempt int
	lane    *laneJob // set for a job of a lane (ConsumeLanes)
}

// Ordered reports whether m is a job of a lane: its key's later jobs wait for it.
func (m *Message) Ordered() bool { return m.lane != nil }

// Attempt is the number of the next HTTP attempt for this job: the one stored with it, plus
// one for every earlier delivery of this very copy that ended without a word (a crash, an
// expired ack wait). Such a delivery may have made its attempt before it was cut off, so
// its number is not given again: numbers never repeat; a crash can skip one.
func (m *Message) Attempt() int { return m.attempt }

// Ack removes m from the queue: delivered. A lane's job is acknowledged with the server's
// confirmation (tried again until it is, or the consumption stops), and its lane moves on.
func (m *Message) Ack() error {
	if m.msg == nil {
		return errNotJetStream
	}
	if m.lane != nil {
		return m.lane.pt.ack(m.lane)
	}
	if err := m.msg.Ack(); err != nil {
		return fmt.Errorf("queue: ack event %s to %q: %w", m.Job.EventID, m.Job.Destination, err)
	}
	return nil
}

// laterAtOnce is the due time under which Later stores the job straight back on its
// destination's subject instead of making a schedule.
const laterAtOnce = 50 * time.Millisecond

// Later stores m's job again, numbered attempt and due at due, then acknowledges m. The job
// then waits in the store, not in the consumer's window: a job waiting for its next attempt
// holds no delivery slot, and a restart or another replica finds it. A job due now goes
// straight back to its destination's subject; a later one is a JetStream message schedule
// (fanout.retry.<destination>.<event>-<attempt>, one per attempt, so that storing it twice
// keeps one) that the server moves there when due. The acknowledgement is confirmed by the
// server. A crash between the write and the acknowledgement leaves both copies: the job is
// delivered twice, never lost.
//
// If the write fails (the store is full or unreachable), m is handed back with a negative
// acknowledgement delayed until due instead: the retry still happens, with the delivery
// count adding one to the attempt number.
//
// A lane's job is not stored again, which would let the later jobs of its key pass it: it
// stays in hand, holding no delivery slot, and is handled again when due. Its attempt
// number is stored aside, for a restart or another replica to continue the count.
func (m *Message) Later(ctx context.Context, attempt int, due time.Time) error {
	if m.msg == nil {
		return errNotJetStream
	}
	if m.lane != nil {
		return m.lane.pt.later(m.lane, attempt, due)
	}
	job := m.Job
	job.Attempt = max(attempt, 1)
	msg := &nats.Msg{
		Subject: jobsSubjectPrefix + job.Destination,
		Data:    appendFrame(make([]byte, 0, frameSize(&job)), &job),
	}
	if wait := time.Until(due); wait > laterAtOnce {
		msg.Subject = retrySubjectPrefix + job.Destination + "." + job.EventID + "-" + strconv.Itoa(job.Attempt)
		msg.Header = nats.Header{
			jetstream.ScheduleHeader:       []string{"@at " + due.UTC().Format(time.RFC3339Nano)},
			jetstream.ScheduleTargetHeader: []string{jobsSubjectPrefix + job.Destination},
			jetstream.MsgRollup:            []string{jetstream.MsgRollupSubject},
		}
	}
	if _, err := m.q.js.PublishMsg(ctx, msg); err != nil {
		if nerr := m.msg.NakWithDelay(max(time.Until(due), 0)); nerr != nil {
			return fmt.Errorf("queue: retry event %s to %q: store it: %w; hand it back: %w", job.EventID, job.Destination, err, nerr)
		}
		return fmt.Errorf("queue: retry event %s to %q: store it: %w (handed back to the consumer instead)", job.EventID, job.Destination, err)
	}
	// Confirmed, so that a stop right after (a hand-back) cannot leave both copies stored.
	if err := m.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("queue: retry event %s to %q: stored, but ack the previous copy: %w", job.EventID, job.Destination, err)
	}
	return nil
}

// Block keeps m, a lane's job that gave up, at the head of its lane, which waits until an
// operator retries or skips it (ReleaseLane); info is what the operator sees, and what the
// dead letter says if the job is skipped. The lane's record is stored first: a restart or
// another replica finds the lane blocked.
func (m *Message) Block(ctx context.Context, info DeadLetterInfo) error {
	if m.lane == nil {
		return fmt.Errorf("queue: block event %s to %q: not a job of a lane", m.Job.EventID, m.Job.Destination)
	}
	return m.lane.pt.block(ctx, m.lane, &m.Job, info)
}

// InProgress extends the ack wait of m, for a delivery that takes longer
// than the ack wait (slow downstream, quick in-process retries).
func (m *Message) InProgress() error {
	if m.msg == nil {
		return errNotJetStream
	}
	if err := m.msg.InProgress(); err != nil {
		return fmt.Errorf("queue: in progress event %s to %q: %w", m.Job.EventID, m.Job.Destination, err)
	}
	return nil
}

// ConsumeOptions configure Consume.
type ConsumeOptions struct {
	// Window is the most jobs of the destination handed out at once, across every replica
	// (the consumer's MaxAckPending): jobs being sent and jobs between two quick attempts.
	Window int
	// AckWait is how long a handed-out job may go without a word before JetStream hands
	// it out again.
	AckWait time.Duration
	// Admit, when set, runs before each job's handler and returns when the job may be
	// handled: a destination's free sending slot, say. Whatever it reserved is the
	// handler's to release. It returns an error only when ctx ends (the consumption stops);
	// the job is then handed back. Jobs waiting in Admit count in the Window.
	Admit func(ctx context.Context) error
}

// Consume creates or updates the durable consumer of destination and runs h for each job,
// each in its own goroutine, after o.Admit. Calling Consume again for the same destination
// updates the consumer (window, ack wait) for every replica; this process then runs both
// consumptions until the caller stops the old one.
//
// The consumer never gives up on a message (MaxDeliver -1): the handler decides when to
// dead-letter.
func (q *Queue) Consume(ctx context.Context, destination string, o ConsumeOptions, h Handler) (Consumption, error) {
	if err := checkDestination(destination); err != nil {
		return nil, fmt.Errorf("queue: consume: %w", err)
	}
	if o.Window < 1 {
		return nil, fmt.Errorf("queue: consume %q: window %d: must be at least 1", destination, o.Window)
	}
	if o.AckWait <= 0 {
		return nil, fmt.Errorf("queue: consume %q: ack wait %s: must be positive", destination, o.AckWait)
	}
	admit := o.Admit
	if admit == nil {
		admit = func(context.Context) error { return nil }
	}
	c := &consumption{
		q:           q,
		ctx:         ctx,
		destination: destination,
		window:      o.Window,
		admit:       admit,
		handler:     h,
		stopping:    make(chan struct{}),
		done:        make(chan struct{}),
		config: jetstream.ConsumerConfig{
			Durable:       consumerName(destination),
			Description:   "Fanout deliveries to " + destination,
			FilterSubject: jobsSubjectPrefix + destination,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       o.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: o.Window,
		},
	}
	c.admitCtx, c.stopAdmit = context.WithCancel(ctx)

	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, fmt.Errorf("queue: consume %q: %w", destination, errClosed)
	}
	q.consumptions[c] = struct{}{}
	q.mu.Unlock()

	ended := make(chan error, 1)
	if err := c.start(ctx, ended); err != nil {
		q.forget(c)
		close(c.done) // a concurrent Close may be waiting in Stop
		return nil, err
	}
	c.stopOnCancel = context.AfterFunc(ctx, c.Stop)
	go c.run(ended)
	return c, nil
}

// consumerName is the durable consumer of destination, shared by replicas.
func consumerName(destination string) string { return destination }

func (q *Queue) forget(c *consumption) {
	q.mu.Lock()
	delete(q.consumptions, c)
	q.mu.Unlock()
}

// consumption is a running Consume: a JetStream pull consumption (nats.go's Consume, which
// keeps pull requests outstanding, watches heartbeats and recovers from reconnects by
// itself) whose callback starts a goroutine per message: it waits for admission, then runs
// the handler, keeping the message in progress all along so that its ack wait never runs
// out while it waits. The server hands out at most Window messages: the queue keeps the
// rest, for this replica or another.
//
// (An iterator shared by workers, MessagesContext.Next, was tried first: under load it
// sometimes left the consumer idle with messages pending until its pull request expired.)
type consumption struct {
	q            *Queue
	ctx          context.Context
	destination  string
	window       int
	admit        func(context.Context) error
	handler      Handler
	config       jetstream.ConsumerConfig
	stopOnCancel func() bool

	admitCtx  context.Context // ends with Stop, so that a waiting Admit gives up
	stopAdmit context.CancelFunc

	stopOnce sync.Once
	stopping chan struct{} // closed by Stop
	done     chan struct{} // closed when every handler has returned

	handlers sync.WaitGroup

	mu sync.Mutex
	cc jetstream.ConsumeContext // the current consumption
}

// pullBatch caps the messages one pull request asks for.
const pullBatch = 64

// Stop stops fetching and waits for the handlers in flight. Messages fetched but not yet
// handled are handed back for another attempt at once.
func (c *consumption) Stop() {
	c.stopOnce.Do(func() {
		close(c.stopping)
		c.stopAdmit()
		c.mu.Lock()
		if c.cc != nil {
			// Drain, not Stop: the messages already on their way still reach the callback,
			// which gives them back, instead of being dropped by the client.
			c.cc.Drain()
		}
		c.mu.Unlock()
	})
	<-c.done
}

func (c *consumption) stopped() bool {
	select {
	case <-c.stopping:
		return true
	default:
		return false
	}
}

// receive is the pull consumption's callback: it hands m to a goroutine of its own, or, while
// stopping, back to the queue.
func (c *consumption) receive(m jetstream.Msg) {
	if c.stopped() {
		c.handBack(m)
		return
	}
	c.handlers.Go(func() { c.handle(m) })
}

// handBack gives m back for an attempt at once, keeping its attempt number: stored anew and
// acknowledged, since a plain negative acknowledgement would count as a delivery.
func (c *consumption) handBack(m jetstream.Msg) {
	msg, err := c.message(m)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), handBackTimeout)
		err = msg.Later(ctx, msg.attempt, time.Now())
		cancel()
		if err == nil {
			return
		}
	}
	c.q.log.Debug("cannot hand a job back; it is redelivered", "destination", c.destination, "error", err)
	_ = m.Nak()
}

// handBackTimeout bounds storing a job handed back on stop.
const handBackTimeout = 5 * time.Second

// start creates or updates the consumer and starts consuming it. ended receives the error
// that ends the consumption on its own (consumer deleted), if any.
func (c *consumption) start(ctx context.Context, ended chan<- error) error {
	cons, err := c.q.jobs.CreateOrUpdateConsumer(ctx, c.config)
	if err != nil {
		return fmt.Errorf("queue: consume %q: create or update consumer: %w", c.destination, err)
	}
	if err := c.q.ensureCensus(ctx, c.destination); err != nil {
		return err
	}
	cc, err := cons.Consume(c.receive,
		jetstream.PullMaxMessages(min(c.window, pullBatch)),
		// Under load the client's count of requested messages can drift from the server's
		// waiting pull requests, leaving the consumer idle with messages pending until the
		// request expires: a short expiry bounds that pause to about a second.
		jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				select {
				case ended <- err:
				default:
				}
				return
			}
			c.q.log.Debug("consuming: transient error", "destination", c.destination, "error", err)
		}))
	if err != nil {
		return fmt.Errorf("queue: consume %q: %w", c.destination, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped() {
		cc.Stop()
	}
	c.cc = cc
	return nil
}

// run waits for Stop; should the consumption end on its own (the consumer was deleted), it
// starts it again until Stop.
func (c *consumption) run(ended chan error) {
	defer func() {
		c.handlers.Wait()
		if c.stopOnCancel != nil {
			c.stopOnCancel()
		}
		c.q.forget(c)
		close(c.done)
	}()
	log := c.q.log.With("destination", c.destination)
	for {
		select {
		case <-c.stopping:
			c.mu.Lock()
			cc := c.cc
			c.mu.Unlock()
			if cc != nil {
				// The drained messages reach receive, which hands them back.
				select {
				case <-cc.Closed():
				case <-time.After(drainWait):
				}
			}
			return
		case err := <-ended:
			if c.q.nc.IsClosed() {
				log.Error("consuming stopped: the JetStream connection is closed", "error", err)
				return
			}
			log.Warn("consuming stopped unexpectedly, starting again", "error", err)
			c.mu.Lock()
			c.cc.Stop()
			c.mu.Unlock()
			for {
				select {
				case <-c.stopping:
					return
				case <-time.After(restartWait):
				}
				if err := c.start(c.ctx, ended); err == nil {
					break
				}
				log.Warn("consuming cannot start again", "error", err)
			}
		}
	}
}

// keepInProgress keeps m ours while it waits for admission and while its handler runs long
// (quick retries, a rate limit, a pause): the ack wait restarts every third of it, so
// JetStream does not hand the job to another worker meanwhile. A job done sooner costs one
// timer. It returns the function that stops it.
//
// mu orders the timer's re-arming with the stop: a Reset that ran after the stop would
// re-arm the timer for good, extending a finished message every period until the process
// ends.
func (c *consumption) keepInProgress(m jetstream.Msg) (stop func()) {
	every := c.config.AckWait / 3
	var (
		mu       sync.Mutex
		keep     *time.Timer
		finished bool
	)
	mu.Lock()
	keep = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if finished {
			return
		}
		if err := m.InProgress(); err != nil {
			c.q.log.Warn("cannot extend the ack wait of a job in hand", "destination", c.destination, "error", err)
		}
		keep.Reset(every)
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		finished = true
		keep.Stop()
		mu.Unlock()
	}
}

// drainWait bounds the wait for the messages already on their way when a consumption stops.
const drainWait = 5 * time.Second

// message decodes m into a Message.
func (c *consumption) message(m jetstream.Msg) (*Message, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("message without JetStream metadata: %w", err)
	}
	msg := &Message{q: c.q, msg: m, seq: meta.Sequence.Stream}
	msg.Job, err = decodeFrame(m.Data())
	msg.attempt = msg.Job.Attempt + int(meta.NumDelivered) - 1
	if err != nil {
		msg.Job = Job{Destination: c.destination, Body: m.Data()}
		msg.attempt = int(meta.NumDelivered)
	}
	return msg, err
}

// handle decodes m, admits it and runs the handler, keeping m in progress meanwhile. A
// message that is not a job frame cannot be delivered; it goes to the dead-letter queue so
// that nothing is dropped silently, without being admitted: what Admit reserves is the
// handler's to release, and no handler runs for it. A message whose admission gave up (the
// consumption stops) is handed back.
func (c *consumption) handle(m jetstream.Msg) {
	defer c.keepInProgress(m)()
	msg, err := c.message(m)
	if msg == nil {
		c.q.log.Error("cannot read a job", "destination", c.destination, "error", err)
		return
	}
	if err != nil {
		reason := "undecodable job: " + err.Error()
		if derr := c.q.DeadLetter(c.ctx, msg, DeadLetterInfo{Reason: reason, Attempts: msg.attempt}); derr != nil {
			c.q.log.Error("cannot dead-letter an undecodable job", "destination", c.destination, "seq", msg.seq, "error", derr)
		}
		return
	}
	if c.admit(c.admitCtx) != nil {
		c.handBack(m)
		return
	}
	c.handler(c.ctx, msg)
}

// errNotJetStream is returned by DeadLetter for a Message not made by Consume.
var errNotJetStream = errors.New("queue: message was not delivered by Consume")
