package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// restartWait is the pause before a consumption whose iterator ended on its
// own (consumer deleted, stream recreated) creates its consumer again.
const restartWait = time.Second

// pullExpiry is how long a pull request waits at the server (see start).
const pullExpiry = time.Second

// Message is a job delivered to a Handler. Its retry state (the attempt
// count, the redelivery delay) lives in JetStream, not in the process, so a
// restart or another replica continues where this one stopped.
type Message struct {
	Job Job

	msg      jetstream.Msg
	seq      uint64 // jobs stream sequence, part of the dead letter's dedup id
	attempt  int
	storedAt time.Time
}

// Attempt is the delivery count of m (1 for the first delivery).
func (m *Message) Attempt() int { return m.attempt }

// StoredAt is when this copy of the job was written to the queue. It equals
// about Job.ReceivedAt, except for a replayed dead letter, which is stored
// anew (and starts again at Attempt 1): measure retry age from StoredAt.
func (m *Message) StoredAt() time.Time { return m.storedAt }

// Ack removes m from the queue: delivered.
func (m *Message) Ack() error {
	if m.msg == nil {
		return errNotJetStream
	}
	if err := m.msg.Ack(); err != nil {
		return fmt.Errorf("queue: ack event %s to %q: %w", m.Job.EventID, m.Job.Destination, err)
	}
	return nil
}

// Retry asks for m to be delivered again after delay (a negative ack with
// delay). Until it is redelivered the job still counts against the
// destination's in-flight limit (JetStream keeps it ack-pending): a
// destination whose maxInFlight jobs all wait for a retry receives no new job
// meanwhile, which spares a failing endpoint.
func (m *Message) Retry(delay time.Duration) error {
	if m.msg == nil {
		return errNotJetStream
	}
	if err := m.msg.NakWithDelay(delay); err != nil {
		return fmt.Errorf("queue: retry event %s to %q in %s: %w", m.Job.EventID, m.Job.Destination, delay, err)
	}
	return nil
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

// Consume creates or updates the durable consumer of destination and runs h
// for each message with at most maxInFlight in flight. The consumer's
// MaxAckPending is maxInFlight too, so the limit holds across replicas that
// share the consumer. Calling Consume again for the same destination updates
// the consumer (concurrency, ack wait) for every replica; this process then
// runs both consumptions until the caller stops the old one.
//
// The consumer never gives up on a message (MaxDeliver -1): the handler
// decides when to dead-letter.
func (q *Queue) Consume(ctx context.Context, destination string, maxInFlight int, ackWait time.Duration, h Handler) (Consumption, error) {
	if err := checkDestination(destination); err != nil {
		return nil, fmt.Errorf("queue: consume: %w", err)
	}
	if maxInFlight < 1 {
		return nil, fmt.Errorf("queue: consume %q: max in flight %d: must be at least 1", destination, maxInFlight)
	}
	if ackWait <= 0 {
		return nil, fmt.Errorf("queue: consume %q: ack wait %s: must be positive", destination, ackWait)
	}
	c := &consumption{
		q:           q,
		ctx:         ctx,
		destination: destination,
		maxInFlight: maxInFlight,
		handler:     h,
		stopping:    make(chan struct{}),
		done:        make(chan struct{}),
		msgs:        make(chan jetstream.Msg),
		config: jetstream.ConsumerConfig{
			Durable:       consumerName(destination),
			Description:   "Fanout deliveries to " + destination,
			FilterSubject: jobsSubjectPrefix + destination,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxDeliver:    -1,
			MaxAckPending: maxInFlight,
		},
	}

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

// consumption is a running Consume: a JetStream pull consumption (nats.go's
// Consume, which keeps pull requests outstanding, watches heartbeats and
// recovers from reconnects by itself) whose callback hands each message to one
// of maxInFlight workers. The server never has more than maxInFlight
// unacknowledged messages for the consumer, so a message always finds a free
// worker soon; until it does, the callback waits, which holds further
// deliveries back.
//
// (An iterator shared by the workers, MessagesContext.Next, was tried first:
// under load it sometimes left the consumer idle with messages pending until
// its pull request expired.)
type consumption struct {
	q            *Queue
	ctx          context.Context
	destination  string
	maxInFlight  int
	handler      Handler
	config       jetstream.ConsumerConfig
	stopOnCancel func() bool

	stopOnce sync.Once
	stopping chan struct{} // closed by Stop
	done     chan struct{} // closed when every worker has returned

	msgs    chan jetstream.Msg // callback -> workers
	workers sync.WaitGroup

	mu sync.Mutex
	cc jetstream.ConsumeContext // the current consumption
}

// Stop stops fetching and waits for the handlers in flight. Messages fetched
// but not yet handled are redelivered after the ack wait.
func (c *consumption) Stop() {
	c.stopOnce.Do(func() {
		close(c.stopping)
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

// start creates or updates the consumer and starts consuming it into c.msgs.
// ended receives the error that ends the consumption on its own (consumer
// deleted), if any.
func (c *consumption) start(ctx context.Context, ended chan<- error) error {
	cons, err := c.q.jobs.CreateOrUpdateConsumer(ctx, c.config)
	if err != nil {
		return fmt.Errorf("queue: consume %q: create or update consumer: %w", c.destination, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case c.msgs <- m:
		case <-c.stopping:
			// Not handled: given back at once. Left unacknowledged it would wait out the ack
			// wait (minutes) while holding a MaxAckPending slot, though the consumption that
			// replaces this one (a reload) or another replica could deliver it now.
			_ = m.Nak()
		}
	},
		jetstream.PullMaxMessages(c.maxInFlight),
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

// run starts the workers, then waits for Stop; should the consumption end on
// its own (the consumer was deleted), it starts it again until Stop.
func (c *consumption) run(ended chan error) {
	for range c.maxInFlight {
		c.workers.Go(func() {
			for {
				select {
				case m := <-c.msgs:
					c.handle(m)
				case <-c.stopping:
					return
				}
			}
		})
	}
	defer func() {
		c.workers.Wait()
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

// handle decodes m and runs the handler. A message that is not a job frame
// cannot be delivered; it goes to the dead-letter queue so that nothing is
// dropped silently.
func (c *consumption) handle(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		c.q.log.Error("message without JetStream metadata", "destination", c.destination, "error", err)
		return
	}
	msg := &Message{
		msg:      m,
		seq:      meta.Sequence.Stream,
		attempt:  int(meta.NumDelivered),
		storedAt: meta.Timestamp,
	}
	msg.Job, err = decodeFrame(m.Data())
	if err != nil {
		msg.Job = Job{Destination: c.destination, Body: m.Data()}
		reason := "undecodable job: " + err.Error()
		if derr := c.q.DeadLetter(c.ctx, msg, DeadLetterInfo{Reason: reason, Attempts: msg.attempt}); derr != nil {
			c.q.log.Error("cannot dead-letter an undecodable job", "destination", c.destination, "seq", msg.seq, "error", derr)
		}
		return
	}
	c.handler(c.ctx, msg)
}

// errNotJetStream is returned by DeadLetter for a Message not made by Consume.
var errNotJetStream = errors.New("queue: message was not delivered by Consume")
