package httpapi

import (
	"encoding/json"
	"time"
)

// The JSON the admin API answers with, one type per endpoint and the types they hold.

// Routes is the live routing of GET /api/v1/routes.
type Routes struct {
	ConfigHash string        `json:"config_hash"`
	Routes     []RouteInfo   `json:"routes"`
	Respond    []RespondInfo `json:"respond"`
}

// RouteInfo is one route and how many callbacks it matched since the process started
// (counted across reloads, by route name).
type RouteInfo struct {
	Name     string   `json:"name"`
	Commands []string `json:"commands"`
	Apps     []string `json:"apps"`
	When     string   `json:"when"`
	To       []string `json:"to"`
	Stop     bool     `json:"stop"`
	Matches  uint64   `json:"matches"`
}

// RespondInfo is one respond rule.
type RespondInfo struct {
	Commands  []string `json:"commands"`
	Apps      []string `json:"apps"`
	When      string   `json:"when"`
	From      string   `json:"from"`
	Timeout   string   `json:"timeout"`
	OnFailure string   `json:"on_failure"`
}

// Destinations is the answer of GET /api/v1/destinations.
type Destinations struct {
	Destinations []DestinationInfo `json:"destinations"`
}

// DestinationInfo is one live destination. Secrets show only as whether they are set;
// headers only by name; the URL with its userinfo and query values redacted.
type DestinationInfo struct {
	Name             string    `json:"name"`
	URL              string    `json:"url"`
	Timeout          string    `json:"timeout"`
	Concurrency      int       `json:"concurrency"`
	RateLimit        string    `json:"rate_limit"` // "200/s"; "" when unlimited
	Retry            RetryInfo `json:"retry"`
	ForwardQuery     bool      `json:"forward_query"`
	HasBodyTransform bool      `json:"has_body_transform"`
	HasSigningSecret bool      `json:"has_signing_secret"`
	HasTIMToken      bool      `json:"has_tim_token"`
	Headers          []string  `json:"headers"`     // names only
	MaxBacklog       string    `json:"max_backlog"` // a count, or a size in bytes ("2147483648B"); "none"
	OrderBy          string    `json:"order_by,omitempty"`
	OnExhausted      string    `json:"on_exhausted,omitempty"` // with order_by: dead_letter or block

	InFlight         int       `json:"in_flight"` // slots in use here: requests in flight, and deliveries held for the rate limit or a pause
	BacklogFull      bool      `json:"backlog_full"`
	Pending          int       `json:"pending"`
	OldestPendingAt  time.Time `json:"oldest_pending_at,omitzero"`
	OldestPendingAge float64   `json:"oldest_pending_age_seconds"`
	DeadLetters      int       `json:"dead_letters"`
	QueueError       string    `json:"queue_error,omitempty"` // why the three above are unknown

	Paused      bool      `json:"paused"`
	PausedBy    string    `json:"paused_by,omitempty"` // "operator" (until resumed) or "failures"
	PausedUntil time.Time `json:"paused_until,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// RetryInfo is a destination's retry policy.
type RetryInfo struct {
	MaxAttempts int         `json:"max_attempts"`
	Backoff     BackoffInfo `json:"backoff"`
	MaxAge      string      `json:"max_age"`
}

// BackoffInfo is the wait between attempts.
type BackoffInfo struct {
	Initial    string  `json:"initial"`
	Max        string  `json:"max"`
	Multiplier float64 `json:"multiplier"`
	Jitter     float64 `json:"jitter"`
}

// DeadLetterFilter selects dead letters; zero fields match everything.
type DeadLetterFilter struct {
	Destination string
	Reason      string    // substring of the reason
	Since       time.Time // dead at or after
	Until       time.Time // dead before
}

// IsZero reports a filter that selects everything.
func (f DeadLetterFilter) IsZero() bool {
	return f.Destination == "" && f.Reason == "" && f.Since.IsZero() && f.Until.IsZero()
}

// Selection is what a replay or purge acts on: the dead letters IDs when IDs is not nil,
// else those Filter selects.
type Selection struct {
	IDs    []uint64
	Filter DeadLetterFilter
}

// DeadLetter is one dead letter as listed.
type DeadLetter struct {
	ID           uint64    `json:"id"`
	EventID      string    `json:"event_id"`
	Destination  string    `json:"destination"`
	Routes       []string  `json:"routes"`
	Reason       string    `json:"reason"`
	LastStatus   int       `json:"last_status"`
	BodyExcerpt  string    `json:"body_excerpt"` // the start of the destination's last answer
	LastError    string    `json:"last_error"`   // the last attempt's error: connection refused, timeout, status 503...
	Attempts     int       `json:"attempts"`
	FirstAttempt time.Time `json:"first_attempt,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	DeadAt       time.Time `json:"dead_at"`
	ReceivedAt   time.Time `json:"received_at,omitzero"`
	RequestID    string    `json:"request_id"`
	Command      string    `json:"command"`
	SdkAppID     string    `json:"sdkappid"`
	BodySize     int       `json:"body_size"`
}

// DeadLetterDetail is one dead letter with the callback it carries.
type DeadLetterDetail struct {
	DeadLetter
	// Query is the callback's query string without Sign and RequestTime.
	Query string `json:"query"`
	// Body is the callback's body: the JSON itself when it is JSON ("json"), else a
	// base64 string ("base64"), as BodyEncoding says.
	Body         json.RawMessage `json:"body"`
	BodyEncoding string          `json:"body_encoding"`
}

// DeadLetterPage is the answer of GET /api/v1/dlq.
type DeadLetterPage struct {
	Items []DeadLetter `json:"items"`
	Next  uint64       `json:"next"` // pass as after for the next page; 0 at the end
}

// IDError is why one dead letter could not be replayed or deleted.
type IDError struct {
	ID    uint64 `json:"id"`
	Error string `json:"error"`
}

// ReplayResult is the answer of POST /api/v1/dlq/replay. Replayed lists what was queued
// again; in a dry run nothing is, and WouldReplay lists what would be.
type ReplayResult struct {
	DryRun      bool      `json:"dry_run"`
	Matched     int       `json:"matched"`
	Replayed    []uint64  `json:"replayed"`
	WouldReplay []uint64  `json:"would_replay,omitempty"`
	Errors      []IDError `json:"errors"`
}

// PurgeResult is the answer of a delete: in a dry run Deleted is 0 and Matched says how
// many would go.
type PurgeResult struct {
	DryRun  bool      `json:"dry_run"`
	Matched int       `json:"matched"`
	Deleted int       `json:"deleted"`
	Errors  []IDError `json:"errors"`
}
