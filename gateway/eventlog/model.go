package eventlog

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"time"

	"github.com/fanout-gw/fanout/gateway/webhook"
)

// Kinds of records, the `kind` of an Entry.
const (
	KindReceived  = "received"  // the callback was accepted: routes, destinations, body
	KindDuplicate = "duplicate" // the same callback again, within the dedup window: not stored again
	KindAttempt   = "attempt"   // one HTTP attempt to one destination (or a respond rule's exchange)
	KindRetrying  = "retrying"  // a round of attempts failed; the next is due at Due
	KindDead      = "dead"      // the delivery gave up (Reason) and is a dead letter
	KindBlocked   = "blocked"   // the delivery gave up (Reason) and holds its lane for an operator
	KindReplayed  = "replayed"  // the callback was queued again for a destination from the log
)

// Outcomes of a callback (Summary.Outcome) and states of its deliveries (Delivery.State).
const (
	OutcomePending   = "pending"   // queued or being attempted
	OutcomeDelivered = "delivered" // a 2xx answer
	OutcomeRetrying  = "retrying"  // waiting for its next attempt
	OutcomeDead      = "dead"      // given up: in the dead-letter queue
	OutcomeBlocked   = "blocked"   // given up, holding its ordered lane until an operator retries or skips it
	OutcomeNoRoute   = "no_route"  // no route matched: nothing to deliver
	OutcomeResponded = "responded" // only a respond rule's synchronous answer
)

// Outcomes lists the values Filter.Outcome takes.
var Outcomes = []string{OutcomeDelivered, OutcomeRetrying, OutcomeDead, OutcomeBlocked, OutcomePending, OutcomeNoRoute, OutcomeResponded}

// Entry is one record of the log: what happened to a callback at one moment. It is stored
// as JSON (the event id is beside it in its block, not repeated) and answered as is by the
// admin API, in a callback's timeline and on the live stream.
type Entry struct {
	At      time.Time `json:"at"`
	EventID string    `json:"event_id,omitempty"`
	Kind    string    `json:"kind"`

	// received and duplicate
	RequestID string `json:"request_id,omitempty"`
	// received
	SdkAppID   string            `json:"sdkappid,omitempty"`
	Command    string            `json:"command,omitempty"`
	Query      string            `json:"query,omitempty"` // without Sign and RequestTime
	Routes     []string          `json:"routes,omitempty"`
	Deliveries []Delivery        `json:"deliveries,omitempty"`
	Respond    string            `json:"respond,omitempty"` // the respond rule's destination
	Fields     map[string]string `json:"fields,omitempty"`  // the indexed fields it carries
	BodySize   int               `json:"body_size,omitempty"`
	fields     []Field           // Fields, in log.index order, as the writer has them

	// attempt, retrying, dead, blocked and replayed
	Destination string `json:"destination,omitempty"`
	// attempt: its number (Fanout-Attempt); retrying, dead and blocked: the last one made
	Attempt    int     `json:"attempt,omitempty"`
	Status     int     `json:"status,omitempty"`      // attempt: the HTTP status, 0 when none came back
	Result     string  `json:"result,omitempty"`      // attempt: 2xx, 5xx, 429, timeout, connection, ...
	DurationMS float64 `json:"duration_ms,omitempty"` // attempt: sending and reading the answer
	Error      string  `json:"error,omitempty"`       // attempt: what failed
	RespondTo  bool    `json:"respond_exchange,omitempty"`
	// retrying: when the next attempt is due
	Due time.Time `json:"due,omitzero"`
	// dead and blocked: why ("max attempts", "status 404", ...)
	Reason string `json:"reason,omitempty"`
	// replayed: by re-evaluating the routes rather than to a named destination
	Reroute bool `json:"reroute,omitempty"`
}

// Delivery is one destination a callback was routed to, with the routes naming it.
type Delivery struct {
	Destination string   `json:"destination"`
	Routes      []string `json:"routes"`
}

// Summary is one callback as listed: what it was, and where each of its deliveries stands.
type Summary struct {
	ID         string            `json:"id"` // the event id: webhook-id is msg_<id>_<destination>
	ReceivedAt time.Time         `json:"received_at"`
	RequestID  string            `json:"request_id"`
	SdkAppID   string            `json:"sdkappid"`
	Command    string            `json:"command"`
	Fields     map[string]string `json:"fields"` // the indexed fields it carries
	Routes     []string          `json:"routes"`
	Respond    string            `json:"respond,omitempty"`
	// Outcome is the callback's as a whole: no_route, responded, or the least advanced of
	// its deliveries' states (dead, then blocked, retrying, pending, delivered).
	Outcome    string          `json:"outcome"`
	Deliveries []DeliveryState `json:"deliveries"`
	Duplicates int             `json:"duplicates,omitempty"` // received again within the dedup window
	// Evicted: the received record has left the log (its limits); what is known comes
	// from the records after it.
	Evicted bool `json:"evicted,omitempty"`

	seq uint64 // position of its received record: the listing's cursor
}

// DeliveryState is where one delivery of a callback stands.
type DeliveryState struct {
	Destination string    `json:"destination"`
	WebhookID   string    `json:"webhook_id"`
	Routes      []string  `json:"routes"`
	State       string    `json:"state"`    // pending, delivered, retrying, dead, blocked
	Attempts    int       `json:"attempts"` // the number of the last attempt made (Fanout-Attempt)
	LastStatus  int       `json:"last_status,omitempty"`
	LastResult  string    `json:"last_result,omitempty"`
	LastAt      time.Time `json:"last_attempt_at,omitzero"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	Due         time.Time `json:"due,omitzero"`       // retrying: the next attempt
	Reason      string    `json:"reason,omitempty"`   // dead and blocked: why
	Replayed    int       `json:"replayed,omitempty"` // times queued again from the log

	seen time.Time // the latest attempt or end of a round recorded for it
}

// Detail is one callback with its body and every record, in the order they happened.
type Detail struct {
	Summary
	Query string `json:"query"` // without Sign and RequestTime
	// Body is the callback's body: the JSON itself ("json"), else a base64 string
	// ("base64"), as BodyEncoding says; null when its record was evicted.
	Body         json.RawMessage `json:"body"`
	BodyEncoding string          `json:"body_encoding,omitempty"`
	Timeline     []Entry         `json:"timeline"`

	body []byte // the raw body, for a replay
}

// stored is one record as read from the store, decoded.
type stored struct {
	seq   uint64
	entry Entry
	body  []byte // received: the raw body
}

// decode reads a record. A record that does not decode keeps its kind, so that it still
// shows in a timeline.
func decode(r raw, withBody bool) stored {
	s := stored{seq: r.pos}
	head, body, hasBody := bytes.Cut(r.data, []byte{'\n'})
	if err := json.Unmarshal(head, &s.entry); err != nil {
		s.entry = Entry{Kind: kindOf(r.data), Error: "undecodable record: " + err.Error()}
	}
	s.entry.EventID = r.id
	if s.entry.At.IsZero() {
		s.entry.At = r.at
	}
	if withBody && hasBody {
		s.body = body
	}
	return s
}

// assemble builds the detail of callback id from its records, in log order. found is
// false when there is none.
func assemble(id string, records []stored) (d Detail, found bool) {
	d.ID = id
	d.Fields, d.Routes, d.Deliveries, d.Timeline = map[string]string{}, []string{}, []DeliveryState{}, []Entry{}
	states := map[string]*DeliveryState{}
	var order []string
	state := func(dest string) *DeliveryState {
		if s := states[dest]; s != nil {
			return s
		}
		s := &DeliveryState{Destination: dest, WebhookID: webhook.ID(id, dest), Routes: []string{}, State: OutcomePending}
		states[dest] = s
		order = append(order, dest)
		return s
	}
	received := false
	for _, r := range records {
		e := r.entry
		d.Timeline = append(d.Timeline, e)
		switch e.Kind {
		case KindReceived:
			if received {
				continue // received again after a restart: the first one describes it
			}
			received = true
			d.seq, d.ReceivedAt, d.RequestID, d.SdkAppID, d.Command = r.seq, e.At, e.RequestID, e.SdkAppID, e.Command
			d.Routes, d.Respond, d.Query = nonNil(e.Routes), e.Respond, e.Query
			if e.Fields != nil {
				d.Fields = e.Fields
			}
			d.body = r.body
			for _, dl := range e.Deliveries {
				state(dl.Destination).Routes = nonNil(dl.Routes)
			}
		case KindDuplicate:
			d.Duplicates++
		case KindAttempt:
			if e.RespondTo {
				continue
			}
			s := state(e.Destination)
			s.seen = later(s.seen, e.At)
			if !e.At.Before(s.LastAt) { // the latest attempt; a replay numbers its own from 1
				s.Attempts, s.LastStatus, s.LastResult, s.LastAt = e.Attempt, e.Status, e.Result, e.At
			}
			if e.Result == "2xx" {
				s.State, s.DeliveredAt, s.Due, s.Reason = OutcomeDelivered, e.At.Add(time.Duration(e.DurationMS*float64(time.Millisecond))), time.Time{}, ""
			} else if s.State != OutcomeDelivered {
				s.State, s.Due = OutcomePending, time.Time{}
			}
		case KindRetrying:
			// An operator's retry of a blocked lane is recorded when asked, and the retried
			// attempts can reach the log first: like a replay, it tells the state only when
			// nothing was recorded after it.
			s := state(e.Destination)
			if !e.At.Before(s.seen) && s.State != OutcomeDelivered {
				s.State, s.Due = OutcomeRetrying, e.Due
			}
			s.seen = later(s.seen, e.At)
		case KindDead, KindBlocked:
			s := state(e.Destination)
			s.seen = later(s.seen, e.At)
			if s.State != OutcomeDelivered {
				s.State, s.Reason, s.Due = e.Kind, e.Reason, time.Time{} // the kinds are the states
			}
		case KindReplayed:
			// The copy's own attempts may reach the log before this record (it is written
			// once the copy is queued, and a worker can be faster): it resets the state only
			// when nothing was recorded after the moment of the replay.
			s := state(e.Destination)
			if e.At.After(s.seen) {
				s.State, s.Due, s.Reason = OutcomePending, time.Time{}, ""
			}
			s.Replayed++
		}
	}
	if len(records) == 0 {
		return d, false
	}
	if !received {
		d.Evicted = true
		d.seq = records[0].seq
		d.ReceivedAt = records[0].entry.At
	}
	for _, dest := range order {
		d.Deliveries = append(d.Deliveries, *states[dest])
	}
	d.Outcome = outcome(&d.Summary)
	slices.SortStableFunc(d.Timeline, func(a, b Entry) int { return a.At.Compare(b.At) })
	d.Body, d.BodyEncoding = bodyJSON(d.body, received)
	return d, true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// outcome is a callback's outcome as a whole: the least advanced of its deliveries.
func outcome(s *Summary) string {
	if len(s.Deliveries) == 0 {
		if s.Respond != "" {
			return OutcomeResponded
		}
		return OutcomeNoRoute
	}
	rank := map[string]int{OutcomeDead: 0, OutcomeBlocked: 1, OutcomeRetrying: 2, OutcomePending: 3, OutcomeDelivered: 4}
	least := OutcomeDelivered
	for _, dl := range s.Deliveries {
		if cmp.Less(rank[dl.State], rank[least]) {
			least = dl.State
		}
	}
	return least
}

// bodyJSON is a body as the API shows it: itself when it is JSON, else a base64 string.
func bodyJSON(body []byte, known bool) (json.RawMessage, string) {
	switch {
	case !known:
		return json.RawMessage("null"), ""
	case json.Valid(body):
		return json.RawMessage(body), "json"
	}
	b, _ := json.Marshal(body)
	return b, "base64"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
