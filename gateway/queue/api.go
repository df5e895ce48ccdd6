// Package queue owns the durable store of Fanout: NATS JetStream, embedded in the
// process by default or external (a cluster) with Options.URL. It is the only
// package that imports NATS. It knows jobs, destinations and dead letters as
// opaque records; it knows nothing of rules, HTTP or Gin.
//
// Two streams hold everything. FANOUT_JOBS (work-queue retention) keeps each
// job on subject fanout.jobs.<destination> until that destination's durable
// consumer, shared by every replica, acknowledges it; retries wait as message
// schedules, so their state survives restarts. The jobs of an ordered
// destination are kept in its lanes instead, fanout.lanes.<destination>.<partition>
// (lanes.go), whose attempt numbers, blocked lanes and leases live in two
// key-value buckets. FANOUT_DLQ (limits retention, dead_letter_max_age) keeps
// dead letters on fanout.dlq.<destination>, the stream sequence being the dead
// letter's id. A third key-value bucket, fanout_replicas, is the registry of the
// replicas sharing the queue and the destinations each one's config names
// (replicas.go). The embedded store's health (a failed write, a deleted
// directory) is watched in health.go.
// Two further streams, FANOUT_EVENTLOG and its index FANOUT_EVENTLOG_INDEX (limits
// retention by age and size, discarding the oldest), keep the event log (events.go):
// history only, so that their limits never take a job.
package queue

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Job is one delivery of one callback to one destination, as stored.
type Job struct {
	EventID     string    // hash of SdkAppid, CallbackCommand and the raw body
	Destination string    // destination name (a subject token: [A-Za-z0-9_-]+)
	Routes      []string  // names of the matched routes that send to Destination
	Query       string    // the callback's raw query string
	Body        []byte    // the callback's raw body
	ReceivedAt  time.Time // when Fanout accepted the callback
	RequestID   string    // the callback's request id, for logs
	// Attempt is the number of the next HTTP attempt: 1 for a new job, n+1 for a job whose
	// attempts 1..n failed. It is stored with the job, so the count survives restarts,
	// reloads and other replicas.
	Attempt int
	// Since is when this job's attempts began: ReceivedAt, or when it was replayed from
	// the dead-letter queue. A retry policy's max_age counts from here. Zero means
	// ReceivedAt.
	Since time.Time
	// Ordered marks a job of a destination with order_by: it is stored in the lane of Key
	// and delivered only after the jobs of that lane stored before it (see ConsumeLanes).
	Ordered bool
	// Key is the lane of an ordered job. "" is a key like another: the fallback lane of
	// callbacks whose key could not be computed.
	Key string
}

// AttemptsSince is j.Since, or j.ReceivedAt when unset.
func (j *Job) AttemptsSince() time.Time {
	if j.Since.IsZero() {
		return j.ReceivedAt
	}
	return j.Since
}

// TLS holds the client TLS files for an external JetStream.
type TLS struct {
	CA, Cert, Key string
}

// Options configure Open.
type Options struct {
	Dir          string        // embedded mode: the store directory
	URL          string        // external mode: comma-separated server URLs
	Credentials  string        // external mode: a .creds file
	TLS          TLS           // external mode
	Replicas     int           // stream replicas (external clusters)
	SyncAlways   bool          // embedded: fsync every write before acknowledging it
	SyncInterval time.Duration // embedded: fsync period otherwise
	// DedupWindow: the same EventID+Destination within this window is stored once. 0 turns
	// the de-duplication off (and saves the server about 100 bytes per job it would remember).
	DedupWindow      time.Duration
	DeadLetterMaxAge time.Duration // dead letters older than this are discarded
	// MaxBytes bounds the embedded store (every stream together); 0 leaves JetStream's
	// own default. A write it cannot take fails, and the callback is answered 503.
	MaxBytes int64
	// BacklogFull, when set, is told of every job that Enqueue stored as a dead letter
	// because its destination's backlog was full, once the write is acknowledged.
	BacklogFull func(destination string)
	Logger      *slog.Logger
}

// ReasonBacklogFull is the dead-letter reason of a job refused because its destination's
// backlog was at its bound.
const ReasonBacklogFull = "backlog full"

// BacklogLimit bounds the jobs stored for one destination: waiting, handed out and waiting
// for a retry. Zero fields mean no bound.
type BacklogLimit struct {
	Jobs  int
	Bytes int64
}

// DeadLetterInfo says why a job is being dead-lettered.
type DeadLetterInfo struct {
	Reason       string // e.g. "status 400", "max attempts", "max age", "destination removed"
	LastStatus   int    // last HTTP status, 0 when none
	BodyExcerpt  string // start of the last response body
	LastError    string // the last attempt's error (connection refused, timeout, status 503...)
	Attempts     int
	FirstAttempt time.Time
	LastAttempt  time.Time
}

// DeadLetter is a stored dead letter.
type DeadLetter struct {
	ID uint64 // stable id (the DLQ stream sequence)
	Job
	DeadLetterInfo
	DeadAt time.Time
}

// DeadLetterFilter selects dead letters; zero fields match everything.
type DeadLetterFilter struct {
	Destination string
	Reason      string    // substring match
	Since       time.Time // DeadAt at or after
	Until       time.Time // DeadAt before
}

// ErrNotFound is returned for a dead letter id that does not exist.
var ErrNotFound = errors.New("not found")

// Handler processes one message. It must end the message with exactly one of
// Ack, Retry or DeadLetter (or leave it to be redelivered after the ack wait).
type Handler func(ctx context.Context, m *Message)

// Consumption is a running Consume; Stop ends it and waits for handlers in flight.
type Consumption interface {
	Stop()
}
