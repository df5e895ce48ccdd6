package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// What the lanes keep besides their jobs, in the key-value bucket lanesBucket, so that a
// restart or another replica finds it:
//
//	a.<destination>.<partition>.<seq>  the next attempt number of a job that failed
//	                                   (attemptRecord), deleted with the job
//	b.<destination>.<partition>.<seq>  a lane waiting for an operator with job seq at its
//	                                   head (blockRecord); the action asked is written into
//	                                   it, and the record is deleted once it is applied
//	c.<destination>.<partition>        the name of the partition's current consumer
const lanesBucket = "fanout_lanes"

// storeRecordTimeout bounds one write or read of a lane record.
const storeRecordTimeout = 10 * time.Second

// The actions an operator can take on a blocked lane.
const (
	LaneRetry = "retry" // a new series of attempts for the job the lane waits with
	LaneSkip  = "skip"  // dead-letter that job; the lane moves on
)

func attemptKey(destination string, p int, seq uint64) string {
	return "a." + destination + "." + strconv.Itoa(p) + "." + strconv.FormatUint(seq, 10)
}

func blockPrefix(destination string) string { return "b." + destination + "." }

func blockKey(destination string, p int, seq uint64) string {
	return blockPrefix(destination) + strconv.Itoa(p) + "." + strconv.FormatUint(seq, 10)
}

func consumerKey(destination string, p int) string {
	return "c." + destination + "." + strconv.Itoa(p)
}

// seqOf reads the sequence at the end of a record's key.
func seqOf(key string) (uint64, bool) {
	i := strings.LastIndexByte(key, '.')
	seq, err := strconv.ParseUint(key[i+1:], 10, 64)
	return seq, err == nil
}

// attemptRecord is the stored attempt state of a lane job that failed.
type attemptRecord struct {
	Attempt int       `json:"attempt"`        // the number of its next attempt
	Since   time.Time `json:"since,omitzero"` // its attempts began here (an operator's retry)
}

// blockRecord is the stored form of a blocked lane.
type blockRecord struct {
	Destination  string    `json:"destination"`
	Key          string    `json:"key"`
	Partition    int       `json:"partition"`
	Seq          uint64    `json:"seq"`
	EventID      string    `json:"event_id"`
	RequestID    string    `json:"request_id,omitempty"`
	ReceivedAt   time.Time `json:"received_at,omitzero"`
	Reason       string    `json:"reason"`
	LastStatus   int       `json:"last_status,omitempty"`
	BodyExcerpt  string    `json:"body_excerpt,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	Attempts     int       `json:"attempts,omitempty"`
	FirstAttempt time.Time `json:"first_attempt,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	BlockedAt    time.Time `json:"blocked_at"`
	Action       string    `json:"action,omitempty"`
	ActionAt     time.Time `json:"action_at,omitzero"`
}

func (r *blockRecord) info() DeadLetterInfo {
	return DeadLetterInfo{Reason: r.Reason, LastStatus: r.LastStatus, BodyExcerpt: r.BodyExcerpt, LastError: r.LastError, Attempts: r.Attempts,
		FirstAttempt: r.FirstAttempt, LastAttempt: r.LastAttempt}
}

func (r *blockRecord) lane() BlockedLane {
	return BlockedLane{Destination: r.Destination, Key: r.Key, Partition: r.Partition, Seq: r.Seq, EventID: r.EventID,
		RequestID: r.RequestID, ReceivedAt: r.ReceivedAt, DeadLetterInfo: r.info(), BlockedAt: r.BlockedAt,
		Action: r.Action, ActionAt: r.ActionAt}
}

// BlockedLane is a lane of an ordered destination with on_exhausted: block whose head job
// gave up: the lane waits for an operator.
type BlockedLane struct {
	Destination string
	Key         string
	Partition   int
	Seq         uint64 // the job's sequence in the jobs stream
	EventID     string
	RequestID   string
	ReceivedAt  time.Time
	DeadLetterInfo
	BlockedAt time.Time
	// Action is the operator's action (LaneRetry or LaneSkip) asked and not yet applied by
	// the process that consumes the lane; "" when none was asked.
	Action   string
	ActionAt time.Time
}

func (q *Queue) putAttempt(ctx context.Context, destination string, p int, seq uint64, r attemptRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = q.lanes.Put(ctx, attemptKey(destination, p, seq), data)
	return err
}

func (q *Queue) putBlocked(ctx context.Context, r blockRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = q.lanes.Put(ctx, blockKey(r.Destination, r.Partition, r.Seq), data)
	return err
}

// getBlocked reads a blocked lane's record, or ErrNotFound.
func (q *Queue) getBlocked(ctx context.Context, key string) (blockRecord, uint64, error) {
	var r blockRecord
	e, err := q.lanes.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, 0, ErrNotFound
	}
	if err != nil {
		return r, 0, err
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, 0, fmt.Errorf("blocked lane %s: %w", key, err)
	}
	return r, e.Revision(), nil
}

// deleteRecord deletes a lane record; a failure leaves it to the next start of its
// partition, which deletes the records of jobs no longer stored.
func (q *Queue) deleteRecord(ctx context.Context, key string) {
	if err := q.lanes.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		q.log.Debug("cannot delete a lane record", "key", key, "error", err)
	}
}

// records returns the current records whose key matches filter (a subject filter).
func (q *Queue) records(ctx context.Context, filter string) ([]jetstream.KeyValueEntry, error) {
	w, err := q.lanes.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return out, errors.New("watcher closed")
			}
			if e == nil { // every current value was sent
				return out, nil
			}
			out = append(out, e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// partitionRecords reads the attempt numbers and blocked lanes of partition p, deleting
// those of jobs no longer stored (a crash between a job's acknowledgement and the deletion
// of its records leaves them).
func (q *Queue) partitionRecords(ctx context.Context, destination string, p int) (map[uint64]attemptRecord, map[uint64]bool, error) {
	attempts := map[uint64]attemptRecord{}
	blocked := map[uint64]bool{}
	prefix := "." + destination + "." + strconv.Itoa(p) + ".*"
	for _, kind := range []string{"a", "b"} {
		entries, err := q.records(ctx, kind+prefix)
		if err != nil {
			return nil, nil, fmt.Errorf("read the lane records: %w", err)
		}
		for _, e := range entries {
			seq, ok := seqOf(e.Key())
			if !ok {
				continue
			}
			if _, err := q.jobs.GetMsg(ctx, seq); errors.Is(err, jetstream.ErrMsgNotFound) {
				q.deleteRecord(ctx, e.Key())
				continue
			}
			if kind == "b" {
				blocked[seq] = true
				continue
			}
			var r attemptRecord
			if json.Unmarshal(e.Value(), &r) == nil {
				attempts[seq] = r
			}
		}
	}
	return attempts, blocked, nil
}

// recreateLaneConsumer deletes the consumer of destination's partition p and creates a new
// one that hands out every job of the partition still stored, oldest first. Its name is
// new each time (and recorded): an acknowledgement sent by an earlier owner, still alive,
// can never act on the new consumer's deliveries.
func (q *Queue) recreateLaneConsumer(ctx context.Context, destination string, p int) (jetstream.Consumer, error) {
	if e, err := q.lanes.Get(ctx, consumerKey(destination, p)); err == nil {
		if err := q.jobs.DeleteConsumer(ctx, string(e.Value())); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete the previous consumer: %w", err)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("read the previous consumer's name: %w", err)
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	subject := laneSubject(destination, p)
	cfg := jetstream.ConsumerConfig{
		Durable:       laneConsumerPrefix(destination, p) + hex.EncodeToString(suffix[:]),
		Description:   "Fanout lane partition " + strconv.Itoa(p) + " of " + destination,
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       laneAckWait,
		MaxDeliver:    -1,
		MaxAckPending: laneWindow,
	}
	cons, err := q.jobs.CreateConsumer(ctx, cfg)
	if err != nil {
		// Another consumer of the partition that the record does not name (a crash before
		// the record was written): find it by its filter.
		if derr := q.deleteLaneConsumers(ctx, func(filter string) bool { return filter == subject }); derr != nil {
			return nil, fmt.Errorf("create the consumer: %w; delete the others: %w", err, derr)
		}
		if cons, err = q.jobs.CreateConsumer(ctx, cfg); err != nil {
			return nil, fmt.Errorf("create the consumer: %w", err)
		}
	}
	if _, err := q.lanes.Put(ctx, consumerKey(destination, p), []byte(cfg.Durable)); err != nil {
		return nil, fmt.Errorf("record the consumer's name: %w", err)
	}
	return cons, nil
}

// laneConsumerPrefix starts the names of partition p's consumers. '~' cannot appear in a
// destination name.
func laneConsumerPrefix(destination string, p int) string {
	return "lane~" + destination + "~" + strconv.Itoa(p) + "~"
}

// deleteLaneConsumers deletes the lane consumers whose filter subject keep accepts.
func (q *Queue) deleteLaneConsumers(ctx context.Context, keep func(filter string) bool) error {
	var names []string
	consumers := q.jobs.ListConsumers(ctx)
	for ci := range consumers.Info() {
		if strings.HasPrefix(ci.Config.FilterSubject, lanesSubjectPrefix) && keep(ci.Config.FilterSubject) {
			names = append(names, ci.Name)
		}
	}
	if err := consumers.Err(); err != nil {
		return err
	}
	for _, name := range names {
		if err := q.jobs.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return err
		}
	}
	return nil
}

// removeLanes deletes the lane consumers and records of destination (RemoveDestination).
func (q *Queue) removeLanes(ctx context.Context, destination string) error {
	prefix := lanesSubjectPrefix + destination + "."
	if err := q.deleteLaneConsumers(ctx, func(filter string) bool { return strings.HasPrefix(filter, prefix) }); err != nil {
		return fmt.Errorf("delete the lane consumers: %w", err)
	}
	for _, kind := range []string{"a", "b", "c"} {
		entries, err := q.records(ctx, kind+"."+destination+".>")
		if err != nil {
			return fmt.Errorf("read the lane records: %w", err)
		}
		for _, e := range entries {
			if err := q.lanes.Purge(ctx, e.Key()); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("delete lane record %s: %w", e.Key(), err)
			}
		}
	}
	return nil
}

// BlockedLanes lists the lanes waiting for an operator, of destination ("" for every
// destination), by destination, then key. It reads the shared records: any replica answers
// for all.
func (q *Queue) BlockedLanes(ctx context.Context, destination string) ([]BlockedLane, error) {
	filter := "b.>"
	if destination != "" {
		if err := checkDestination(destination); err != nil {
			return nil, fmt.Errorf("queue: blocked lanes: %w", err)
		}
		filter = blockPrefix(destination) + ">"
	}
	entries, err := q.records(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("queue: blocked lanes: %w", err)
	}
	out := make([]BlockedLane, 0, len(entries))
	for _, e := range entries {
		var r blockRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			continue
		}
		out = append(out, r.lane())
	}
	slices.SortFunc(out, func(a, b BlockedLane) int {
		if c := strings.Compare(a.Destination, b.Destination); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}

// releaseWait bounds how long ReleaseLane waits for the consuming process to apply the
// action, and releasePoll is how often it looks.
const (
	releaseWait = 10 * time.Second
	releasePoll = 50 * time.Millisecond
)

// ReleaseLane asks for action (LaneRetry or LaneSkip) on the blocked lane key of
// destination. The action is written into the lane's record, which the process consuming
// the lane (this one or another replica) watches; ReleaseLane then waits a moment for it
// to be applied, and says whether it was. ErrNotFound: no lane of that key is blocked.
func (q *Queue) ReleaseLane(ctx context.Context, destination, key, action string) (lane BlockedLane, applied bool, err error) {
	if err := checkDestination(destination); err != nil {
		return lane, false, fmt.Errorf("queue: release lane: %w", err)
	}
	if action != LaneRetry && action != LaneSkip {
		return lane, false, fmt.Errorf("queue: release lane: action %q: want %s or %s", action, LaneRetry, LaneSkip)
	}
	p := LaneOf(key)
	entries, err := q.records(ctx, blockPrefix(destination)+strconv.Itoa(p)+".*")
	if err != nil {
		return lane, false, fmt.Errorf("queue: release lane: %w", err)
	}
	for _, e := range entries {
		var r blockRecord
		if json.Unmarshal(e.Value(), &r) != nil || r.Key != key {
			continue
		}
		rev := e.Revision()
		if r.Action == "" {
			r.Action, r.ActionAt = action, time.Now().UTC()
			data, err := json.Marshal(r)
			if err != nil {
				return lane, false, err
			}
			if rev, err = q.lanes.Update(ctx, e.Key(), data, rev); err != nil {
				return lane, false, fmt.Errorf("queue: release lane %q of %q: %w", key, destination, err)
			}
		}
		lane = r.lane()
		// Applied: the record is gone, or written again (the retried job gave up again).
		deadline := time.Now().Add(releaseWait)
		for time.Now().Before(deadline) {
			if _, now, err := q.getBlocked(ctx, e.Key()); errors.Is(err, ErrNotFound) || (err == nil && now != rev) {
				return lane, true, nil
			}
			select {
			case <-time.After(releasePoll):
			case <-ctx.Done():
				return lane, false, nil
			}
		}
		return lane, false, nil
	}
	return lane, false, fmt.Errorf("queue: no blocked lane %q of %q: %w", key, destination, ErrNotFound)
}

// createLaneBuckets creates the key-value buckets of the lanes: their records, and with an
// external JetStream (several replicas may share the lanes) their leases.
func (q *Queue) createLaneBuckets(ctx context.Context, replicas int, external bool) error {
	var err error
	q.lanes, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      lanesBucket,
		Description: "Fanout lanes: attempt numbers of failing ordered deliveries, blocked lanes, partition consumers",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: create or update bucket %s: %w", lanesBucket, err)
	}
	if !external {
		return nil
	}
	q.leases, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      leasesBucket,
		Description: "Fanout lane partitions: which replica consumes each",
		History:     1,
		TTL:         leaseTTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: create or update bucket %s: %w", leasesBucket, err)
	}
	return nil
}

// newOwner returns a random id for this process among the replicas, and the same id with
// the host name.
func newOwner() (id, name string) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id = hex.EncodeToString(b[:])
	host, _ := os.Hostname()
	return id, host + "/" + id
}
