package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Ordered delivery. A job of a destination with order_by carries its lane's key and is
// stored on fanout.lanes.<destination>.<partition>, the partition being a hash of the key
// modulo LanePartitions. Each partition has a consumer of its own that hands its jobs out
// in stream order, and exactly one process consumes it. That process keeps, per key, the
// job being worked on and the later ones it was handed, in stream order; a key's next job
// starts only once the previous one is acknowledged (delivered) or dead-lettered, while the
// other keys proceed. A job waiting for its next attempt stays in hand (going back to the
// queue would let the key's later jobs pass it), kept alive and holding no delivery slot.
//
// When a partition's consumption starts (a process starts, or takes the partition over from
// another replica), its consumer is recreated: the new one hands out every job of the
// partition not yet acknowledged, from the oldest, so that the jobs a dead process had in
// hand are not overtaken by the later jobs of their keys. A job can be delivered twice
// that way (the one in flight at a crash), never out of order.

const (
	// LanePartitions is the number of partitions of an ordered destination. It is part of
	// the stored layout: a key's jobs are found on one partition only.
	LanePartitions = 16

	lanesSubjectPrefix = "fanout.lanes."

	// laneWindow is how many jobs of one partition are in hand at once (its consumer's
	// MaxAckPending). A partition stalls only when all of them belong to keys that wait:
	// one key blocked with laneWindow jobs behind it holds back the other keys of its
	// partition, not those of the other partitions.
	laneWindow = 256

	// laneAckWait is the ack wait of a partition's consumer. Its jobs in hand are kept
	// alive every third of it; a crash does not wait for it, since the next owner recreates
	// the consumer.
	laneAckWait = time.Minute

	// laneRetryPause is the pause before a job whose round ended without a decision (the
	// destination is being removed, the store did not answer) is handled again.
	laneRetryPause = time.Second

	// blockedPoll is how often a lane waiting for an operator reads its record, besides
	// being woken by every change of the destination's blocked lanes.
	blockedPoll = 5 * time.Second

	// partitionStartTimeout bounds starting the consumption of one partition.
	partitionStartTimeout = 15 * time.Second
)

// LaneOf is the partition of key: FNV-1a, modulo LanePartitions.
func LaneOf(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % LanePartitions)
}

// laneSubject is the subject of destination's partition p.
func laneSubject(destination string, p int) string {
	return lanesSubjectPrefix + destination + "." + strconv.Itoa(p)
}

// LaneOptions configure ConsumeLanes.
type LaneOptions struct {
	// Admit, when set, runs before each round of attempts of a job and returns when it may
	// start (a free delivery slot), as ConsumeOptions.Admit does; whatever it reserved is
	// the handler's to release. It returns an error only when its context ends.
	Admit func(ctx context.Context) error
}

// Lanes is a running ConsumeLanes.
type Lanes interface {
	Consumption
	// State is what this process holds of the destination's lanes now.
	State() LaneState
}

// LaneState is what one process holds of an ordered destination's lanes.
type LaneState struct {
	Partitions []int     // the partitions it consumes, sorted
	Blocked    int       // lanes whose head job waits for an operator (on_exhausted: block)
	Oldest     time.Time // ReceivedAt of the oldest job at the head of a lane; zero when none
}

// ConsumeLanes consumes the lanes of destination and runs h for the job at the head of each
// lane, one job of a key at a time, each key in a goroutine of its own, after o.Admit. The
// handler ends each job as for Consume: Ack, Later (for a lane: the job stays in hand and
// is handled again when due, numbered as told), Queue.DeadLetter, or Block (the lane waits
// for ReleaseLane).
//
// With the embedded store this process consumes every partition. With an external
// JetStream the replicas share them: a replica consumes a partition while it holds its
// lease (see leases.go), and each aims at its share of the partitions.
func (q *Queue) ConsumeLanes(ctx context.Context, destination string, o LaneOptions, h Handler) (Lanes, error) {
	if err := checkDestination(destination); err != nil {
		return nil, fmt.Errorf("queue: consume lanes: %w", err)
	}
	admit := o.Admit
	if admit == nil {
		admit = func(context.Context) error { return nil }
	}
	s := &laneSet{
		q:           q,
		destination: destination,
		admit:       admit,
		handler:     h,
		parts:       map[int]*partition{},
		changed:     make(chan struct{}),
		stopping:    make(chan struct{}),
		done:        make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(ctx)

	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		s.cancel()
		return nil, fmt.Errorf("queue: consume lanes of %q: %w", destination, errClosed)
	}
	q.laneSets[s] = struct{}{}
	q.mu.Unlock()

	fail := func(err error) (Lanes, error) {
		s.Stop()
		return nil, fmt.Errorf("queue: consume lanes of %q: %w", destination, err)
	}
	if err := s.watchBlocked(); err != nil {
		return fail(err)
	}
	if q.leases == nil {
		// The embedded store has one process: it consumes every partition.
		for p := range LanePartitions {
			if err := s.start(p, 0); err != nil {
				return fail(err)
			}
		}
	} else {
		s.manage() // a first round at once, so that a lone replica consumes without delay
		s.background.Go(s.leaseLoop)
	}
	s.stopOnCancel = context.AfterFunc(ctx, s.Stop)
	return s, nil
}

// consumesLanes reports whether this process runs ConsumeLanes for destination: a replayed
// dead letter of an ordered job then goes back to its lane.
func (q *Queue) consumesLanes(destination string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for s := range q.laneSets {
		if s.destination == destination {
			return true
		}
	}
	return false
}

// laneSet is a running ConsumeLanes: the partitions of one destination that this process
// consumes.
type laneSet struct {
	q           *Queue
	destination string
	admit       func(context.Context) error
	handler     Handler

	ctx          context.Context // ends with Stop: every partition's rounds end
	cancel       context.CancelFunc
	stopOnCancel func() bool
	watcher      jetstream.KeyWatcher // changes of the destination's blocked lanes
	background   sync.WaitGroup       // the lease loop and the watcher's reader

	mu       sync.Mutex
	parts    map[int]*partition // consumed now, by partition
	changed  chan struct{}      // closed and replaced when a blocked lane's record changes
	stopOnce sync.Once
	stopping chan struct{}
	done     chan struct{}
}

// Stop stops every partition and waits for their rounds in flight; their jobs stay in the
// queue for the next owner. It releases the leases this process holds.
func (s *laneSet) Stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		close(s.stopping) // under mu: ended starts no goroutine after this
		s.mu.Unlock()
		s.cancel()
		if s.watcher != nil {
			_ = s.watcher.Stop()
		}
		s.background.Wait()
		s.mu.Lock()
		parts := make([]*partition, 0, len(s.parts))
		for _, pt := range s.parts {
			parts = append(parts, pt)
		}
		s.parts = map[int]*partition{}
		s.mu.Unlock()
		var wg sync.WaitGroup
		for _, pt := range parts {
			wg.Go(func() {
				pt.stop()
				s.releaseLease(pt)
			})
		}
		wg.Wait()
		if s.q.leases != nil {
			// Gone from the count at once: the others take their share without waiting for
			// the announcement to expire.
			ctx, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
			_ = s.q.leases.Delete(ctx, memberKey(s.destination, s.q.owner))
			cancel()
		}
		if s.stopOnCancel != nil {
			s.stopOnCancel()
		}
		s.q.mu.Lock()
		delete(s.q.laneSets, s)
		s.q.mu.Unlock()
		close(s.done)
	})
	<-s.done
}

func (s *laneSet) stopped() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// State is what this process holds of the destination's lanes now.
func (s *laneSet) State() LaneState {
	var st LaneState
	s.mu.Lock()
	parts := make([]*partition, 0, len(s.parts))
	for p, pt := range s.parts {
		st.Partitions = append(st.Partitions, p)
		parts = append(parts, pt)
	}
	s.mu.Unlock()
	slices.Sort(st.Partitions)
	for _, pt := range parts {
		blocked, oldest := pt.heads()
		st.Blocked += blocked
		if !oldest.IsZero() && (st.Oldest.IsZero() || oldest.Before(st.Oldest)) {
			st.Oldest = oldest
		}
	}
	return st
}

// start starts consuming partition p (holding its lease of revision leaseRev, 0 without
// leases).
func (s *laneSet) start(p int, leaseRev uint64) error {
	pt := &partition{
		set:      s,
		q:        s.q,
		p:        p,
		subject:  laneSubject(s.destination, p),
		leaseRev: leaseRev,
		renewed:  time.Now(),
		lanes:    map[string]*lane{},
		inHand:   map[uint64]*laneJob{},
		stopping: make(chan struct{}),
	}
	pt.ctx, pt.cancel = context.WithCancel(s.ctx)
	if err := pt.start(); err != nil {
		pt.stop()
		return fmt.Errorf("partition %d: %w", p, err)
	}
	s.mu.Lock()
	if s.stopped() {
		s.mu.Unlock()
		pt.stop()
		return nil
	}
	s.parts[p] = pt
	s.mu.Unlock()
	return nil
}

// ended is told that pt's consumption ended on its own (its consumer is gone). Without
// leases the partition starts again; with leases, its consumer was deleted by a replica
// that holds the lease now, or by an operator: pt is dropped, and the lease loop takes it
// again if the lease is free.
func (s *laneSet) ended(pt *partition, err error) {
	s.mu.Lock()
	current := s.parts[pt.p] == pt
	if current {
		delete(s.parts, pt.p)
	}
	s.mu.Unlock()
	if !current {
		return
	}
	log := s.q.log.With("destination", s.destination, "partition", pt.p)
	log.Warn("lane partition: consuming stopped unexpectedly", "error", err)
	pt.stop()
	if s.q.leases != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped() {
		return
	}
	s.background.Go(func() {
		for {
			select {
			case <-s.stopping:
				return
			case <-time.After(restartWait):
			}
			err := s.start(pt.p, 0)
			if err == nil {
				return
			}
			log.Warn("lane partition cannot start again", "error", err)
		}
	})
}

// watchBlocked starts the watcher whose every update wakes the lanes waiting for an
// operator: an action asked through any replica reaches the one that consumes the lane.
func (s *laneSet) watchBlocked() error {
	w, err := s.q.lanes.Watch(s.ctx, blockPrefix(s.destination)+">", jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch the blocked lanes: %w", err)
	}
	s.watcher = w
	s.background.Go(func() {
		for range w.Updates() {
			s.mu.Lock()
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
		}
	})
	return nil
}

// blockedChanged is closed at the next change of a blocked lane's record.
func (s *laneSet) blockedChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// partition is the consumption of one partition of an ordered destination.
type partition struct {
	set     *laneSet
	q       *Queue
	p       int
	subject string

	ctx    context.Context // ends with stop: the rounds in flight end
	cancel context.CancelFunc

	leaseRev uint64    // lease loop only
	renewed  time.Time // when the last successful renewal was sent; lease loop only

	mu       sync.Mutex
	cc       jetstream.ConsumeContext
	lanes    map[string]*lane         // by key
	inHand   map[uint64]*laneJob      // by stream sequence
	attempts map[uint64]attemptRecord // stored attempt numbers, read at start
	blocked  map[uint64]bool          // jobs whose lane waited for an operator, read at start
	workers  sync.WaitGroup           // one goroutine per lane with jobs
	stopOnce sync.Once
	stopping chan struct{}
}

// lane is the jobs of one key in hand, in stream order; the first is being worked on.
type lane struct {
	key  string
	jobs []*laneJob
}

// laneState is where a job in hand stands.
type laneState int

const (
	laneReady   laneState = iota // to be handled (again)
	laneLater                    // waiting for its next attempt, due at laneJob.due
	laneBlocked                  // waiting for an operator
	laneDone                     // acknowledged or dead-lettered: the lane moves on
)

// laneJob is a job in hand. msg and state are guarded by the partition's mu; the rest
// belongs to the lane's goroutine (which runs the handler).
type laneJob struct {
	pt   *partition
	seq  uint64
	lane string // its lane: the job's Key, or a lane of its own for an undecodable job
	job  Job
	err  error // why the frame did not decode

	msg   jetstream.Msg // the latest delivery
	state laneState

	attempt  int       // the number of its next attempt
	since    time.Time // its attempts began here (an operator's retry); zero: the job's own
	recorded bool      // an attempt record is stored for it
	due      time.Time // laneLater: when
}

func (pt *partition) stopped() bool {
	select {
	case <-pt.stopping:
		return true
	default:
		return false
	}
}

// start reads the partition's stored attempt numbers and blocked lanes, recreates its
// consumer and starts consuming it.
func (pt *partition) start() error {
	ctx, cancel := context.WithTimeout(pt.ctx, partitionStartTimeout)
	defer cancel()
	attempts, blocked, err := pt.q.partitionRecords(ctx, pt.set.destination, pt.p)
	if err != nil {
		return err
	}
	cons, err := pt.q.recreateLaneConsumer(ctx, pt.set.destination, pt.p)
	if err != nil {
		return err
	}
	pt.mu.Lock()
	pt.attempts, pt.blocked = attempts, blocked
	pt.mu.Unlock()
	cc, err := cons.Consume(pt.receive,
		jetstream.PullMaxMessages(min(laneWindow, pullBatch)),
		jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				go pt.set.ended(pt, err)
				return
			}
			pt.q.log.Debug("consuming a lane partition: transient error", "destination", pt.set.destination, "partition", pt.p, "error", err)
		}))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	pt.mu.Lock()
	pt.cc = cc
	pt.mu.Unlock()
	pt.workers.Go(pt.keepAlive)
	return nil
}

// stop stops fetching, ends the rounds in flight and waits for the lanes' goroutines. The
// jobs in hand stay in the queue, unacknowledged.
func (pt *partition) stop() {
	pt.stopOnce.Do(func() {
		pt.mu.Lock()
		close(pt.stopping)
		cc := pt.cc
		pt.mu.Unlock()
		pt.cancel()
		if cc != nil {
			cc.Stop()
		}
	})
	pt.workers.Wait()
}

// receive is the consumption's callback: it puts a job in its lane, starting the lane's
// goroutine if the lane was idle. A job handed out again (its ack wait ran out) is already
// in hand: only its delivery is kept, for the acknowledgement.
func (pt *partition) receive(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		pt.q.log.Error("a lane job without JetStream metadata", "destination", pt.set.destination, "error", err)
		return
	}
	seq := meta.Sequence.Stream
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.stopped() {
		return // left unacknowledged for the next owner
	}
	if j := pt.inHand[seq]; j != nil {
		j.msg = m
		return
	}
	j := &laneJob{pt: pt, seq: seq, msg: m}
	j.job, j.err = decodeFrame(m.Data())
	j.lane = j.job.Key
	if j.err != nil {
		j.job = Job{Destination: pt.set.destination, Body: m.Data()}
		j.lane = "\x00undecodable " + strconv.FormatUint(seq, 10)
	}
	j.attempt = max(j.job.Attempt, 1)
	if r, ok := pt.attempts[seq]; ok {
		j.attempt, j.since, j.recorded = max(r.Attempt, 1), r.Since, true
	}
	if pt.blocked[seq] {
		j.state = laneBlocked
	}
	pt.inHand[seq] = j
	l := pt.lanes[j.lane]
	if l == nil {
		l = &lane{key: j.lane}
		pt.lanes[j.lane] = l
		pt.workers.Go(func() { pt.run(l) })
	}
	// Jobs come in stream order, but keep it whatever happens.
	i, _ := slices.BinarySearchFunc(l.jobs, seq, func(x *laneJob, seq uint64) int { return cmpUint(x.seq, seq) })
	l.jobs = slices.Insert(l.jobs, i, j)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// run works through lane l, one job after the other, until it is empty or the partition
// stops.
func (pt *partition) run(l *lane) {
	for {
		pt.mu.Lock()
		if len(l.jobs) == 0 || pt.stopped() {
			if pt.lanes[l.key] == l {
				delete(pt.lanes, l.key)
			}
			pt.mu.Unlock()
			return
		}
		j := l.jobs[0]
		pt.mu.Unlock()
		if !pt.work(j) {
			return
		}
		pt.mu.Lock()
		l.jobs = slices.Delete(l.jobs, 0, 1)
		delete(pt.inHand, j.seq)
		delete(pt.attempts, j.seq)
		delete(pt.blocked, j.seq)
		pt.mu.Unlock()
	}
}

// work handles j until it is acknowledged or dead-lettered (true), or the partition stops
// (false).
func (pt *partition) work(j *laneJob) bool {
	for {
		if pt.stopped() {
			return false
		}
		switch pt.stateOf(j) {
		case laneDone:
			return true
		case laneBlocked:
			if !pt.awaitOperator(j) {
				return false
			}
			continue
		case laneLater:
			if !pt.sleep(time.Until(j.due)) {
				return false
			}
		}
		pt.setState(j, laneReady)
		if j.err != nil {
			pt.deadLetterUndecodable(j)
		} else {
			if pt.set.admit(pt.ctx) != nil {
				return false
			}
			pt.set.handler(pt.ctx, pt.message(j))
		}
		if pt.stateOf(j) == laneReady && !pt.sleep(laneRetryPause) {
			// No decision: the destination is being removed, or the store did not answer.
			return false
		}
	}
}

// message is the Message the handler gets for j.
func (pt *partition) message(j *laneJob) *Message {
	job := j.job
	job.Attempt = j.attempt
	if !j.since.IsZero() {
		job.Since = j.since
	}
	pt.mu.Lock()
	msg := j.msg
	pt.mu.Unlock()
	return &Message{Job: job, q: pt.q, msg: msg, seq: j.seq, attempt: j.attempt, lane: j}
}

func (pt *partition) stateOf(j *laneJob) laneState {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return j.state
}

func (pt *partition) setState(j *laneJob, s laneState) {
	pt.mu.Lock()
	j.state = s
	pt.mu.Unlock()
}

// sleep waits for d, or until the partition stops (false).
func (pt *partition) sleep(d time.Duration) bool {
	if d <= 0 {
		return !pt.stopped()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-pt.stopping:
		return false
	}
}

// heads counts the lanes waiting for an operator and finds the oldest job at a lane's head.
func (pt *partition) heads() (blocked int, oldest time.Time) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for _, l := range pt.lanes {
		if len(l.jobs) == 0 {
			continue
		}
		j := l.jobs[0]
		if j.state == laneBlocked {
			blocked++
		}
		if at := j.job.ReceivedAt; !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	return blocked, oldest
}

// keepAlive extends the ack wait of every job in hand every third of it, so that the
// consumer does not hand them out again while they wait their turn.
func (pt *partition) keepAlive() {
	t := time.NewTicker(laneAckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-pt.stopping:
			return
		case <-t.C:
		}
		pt.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(pt.inHand))
		for _, j := range pt.inHand {
			if j.state != laneDone {
				msgs = append(msgs, j.msg)
			}
		}
		pt.mu.Unlock()
		for _, m := range msgs {
			if err := m.InProgress(); err != nil {
				pt.q.log.Debug("cannot extend the ack wait of a lane job", "destination", pt.set.destination, "partition", pt.p, "error", err)
			}
		}
	}
}

// ackConfirmWait bounds one confirmed acknowledgement of a lane job; it is tried again
// until it succeeds, the job is gone, or the partition stops.
const ackConfirmWait = 5 * time.Second

// ack acknowledges j with the server's confirmation, so that the lane's next job never
// starts while j could still be handed out again. A job no longer stored (acknowledged
// through an earlier delivery) counts as acknowledged.
func (pt *partition) ack(j *laneJob) error {
	for {
		pt.mu.Lock()
		msg := j.msg
		pt.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(pt.ctx), ackConfirmWait)
		err := msg.DoubleAck(ctx)
		if err != nil {
			if _, gerr := pt.q.jobs.GetMsg(ctx, j.seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
				err = nil
			}
		}
		cancel()
		if err == nil {
			pt.forget(j)
			return nil
		}
		if pt.stopped() || !pt.sleep(laneRetryPause) {
			return fmt.Errorf("queue: ack event %s to %q: %w", j.job.EventID, pt.set.destination, err)
		}
		pt.q.log.Warn("cannot acknowledge a lane job; trying again", "destination", pt.set.destination, "partition", pt.p, "error", err)
	}
}

// forget marks j done and deletes its records.
func (pt *partition) forget(j *laneJob) {
	pt.setState(j, laneDone)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(pt.ctx), storeRecordTimeout)
	defer cancel()
	if j.recorded {
		pt.q.deleteRecord(ctx, attemptKey(pt.set.destination, pt.p, j.seq))
	}
	pt.mu.Lock()
	wasBlocked := pt.blocked[j.seq]
	pt.mu.Unlock()
	if wasBlocked {
		pt.q.deleteRecord(ctx, blockKey(pt.set.destination, pt.p, j.seq))
	}
}

// later keeps j in hand, to be handled again at due as attempt number attempt, which is
// stored so that a restart or another replica continues the count.
func (pt *partition) later(j *laneJob, attempt int, due time.Time) error {
	attempt = max(attempt, 1)
	var err error
	if attempt != j.attempt {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(pt.ctx), storeRecordTimeout)
		err = pt.q.putAttempt(ctx, pt.set.destination, pt.p, j.seq, attemptRecord{Attempt: attempt, Since: j.since})
		cancel()
		if err == nil {
			j.recorded = true
		}
	}
	j.attempt, j.due = attempt, due
	pt.setState(j, laneLater)
	if err != nil {
		return fmt.Errorf("queue: retry event %s to %q: store its attempt number: %w (kept in hand)", j.job.EventID, pt.set.destination, err)
	}
	return nil
}

// deadLetter stores j's dead letter, then acknowledges j: the lane moves on.
func (pt *partition) deadLetter(ctx context.Context, j *laneJob, job *Job, info DeadLetterInfo) error {
	if err := pt.q.publishDeadLetter(ctx, job, j.seq, info); err != nil {
		return fmt.Errorf("queue: dead-letter event %s to %q: %w", job.EventID, job.Destination, err)
	}
	return pt.ack(j)
}

// deadLetterUndecodable dead-letters a job whose frame does not decode: it cannot be
// delivered, and nothing is dropped silently.
func (pt *partition) deadLetterUndecodable(j *laneJob) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(pt.ctx), storeRecordTimeout)
	defer cancel()
	info := DeadLetterInfo{Reason: "undecodable job: " + j.err.Error(), Attempts: j.attempt - 1}
	if err := pt.deadLetter(ctx, j, &j.job, info); err != nil {
		pt.q.log.Error("cannot dead-letter an undecodable lane job", "destination", pt.set.destination, "seq", j.seq, "error", err)
	}
}

// block records that j's lane waits for an operator.
func (pt *partition) block(ctx context.Context, j *laneJob, job *Job, info DeadLetterInfo) error {
	r := blockRecord{
		Destination: pt.set.destination, Key: job.Key, Partition: pt.p, Seq: j.seq,
		EventID: job.EventID, RequestID: job.RequestID, ReceivedAt: job.ReceivedAt,
		Reason: info.Reason, LastStatus: info.LastStatus, BodyExcerpt: info.BodyExcerpt, LastError: info.LastError,
		Attempts: info.Attempts, FirstAttempt: info.FirstAttempt, LastAttempt: info.LastAttempt, BlockedAt: time.Now().UTC(),
	}
	if err := pt.q.putBlocked(ctx, r); err != nil {
		return fmt.Errorf("queue: block the lane of event %s to %q: %w", job.EventID, job.Destination, err)
	}
	pt.mu.Lock()
	pt.blocked[j.seq] = true
	j.state = laneBlocked
	pt.mu.Unlock()
	pt.q.log.Warn("lane blocked: its delivery gave up; the lane waits for an operator (fanout lanes retry|skip)",
		"destination", pt.set.destination, "key", job.Key, "event_id", job.EventID, "reason", info.Reason)
	return nil
}

// awaitOperator waits until an operator releases j's lane (true), or the partition stops
// (false). A retry starts a new series of attempts, numbered from 1, whose max_age counts
// from now; a skip dead-letters j and the lane moves on.
func (pt *partition) awaitOperator(j *laneJob) bool {
	d := pt.set.destination
	log := pt.q.log.With("destination", d, "partition", pt.p, "key", j.job.Key, "event_id", j.job.EventID)
	for {
		changed := pt.set.blockedChanged()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(pt.ctx), storeRecordTimeout)
		r, _, err := pt.q.getBlocked(ctx, blockKey(d, pt.p, j.seq))
		switch {
		case err == nil && r.Action == LaneRetry, errors.Is(err, ErrNotFound):
			// A record deleted by someone else (by hand, say) releases the lane as a retry.
			since := time.Now()
			err = pt.q.putAttempt(ctx, d, pt.p, j.seq, attemptRecord{Attempt: 1, Since: since})
			if err == nil {
				j.attempt, j.since, j.recorded = 1, since, true
				pt.q.deleteRecord(ctx, blockKey(d, pt.p, j.seq))
				pt.mu.Lock()
				delete(pt.blocked, j.seq)
				j.state = laneReady
				pt.mu.Unlock()
				cancel()
				log.Info("lane released by an operator: a new series of attempts")
				return true
			}
		case err == nil && r.Action == LaneSkip:
			info := r.info()
			info.Reason += "; lane skipped by an operator"
			job := j.job
			err = pt.deadLetter(ctx, j, &job, info)
			if err == nil {
				cancel()
				log.Info("lane released by an operator: the delivery is dead-lettered, the lane moves on")
				return true
			}
		case err == nil:
			cancel()
			select {
			case <-changed:
			case <-time.After(blockedPoll):
			case <-pt.stopping:
				return false
			}
			continue
		}
		cancel()
		log.Warn("blocked lane: cannot read or apply the operator's action; trying again", "error", err)
		if !pt.sleep(laneRetryPause) {
			return false
		}
	}
}
