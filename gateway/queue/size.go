package queue

import (
	"encoding/base64"
	"errors"
	"fmt"
)

// EmbeddedMaxPayload is the largest message the embedded JetStream server takes. NATS's
// default (1 MiB) is too small for a 1 MiB callback: a job carries the body with its query
// and routes, and a dead letter carries it in base64. 8 MiB is the most nats-server takes
// without warning that it is not recommended.
const EmbeddedMaxPayload = 8 << 20

// ErrTooLarge is returned by Enqueue for a job the JetStream server cannot store: its
// message, or the dead letter it may become, is over the server's max_payload. Nothing of
// the call is stored; the callback is to be refused (413), not retried.
var ErrTooLarge = errors.New("larger than the queue stores in one message")

// maxBodyHeadroom is what MaxBodyFor leaves, besides the body, for the rest of a job's
// message and of its dead letter: the query, the routes, the ids and, in a dead letter,
// the JSON keys, timestamps, reason, answer excerpt and last error (each bounded, see
// deadLetterFixed).
const maxBodyHeadroom = 64 << 10

// MaxBodyFor is the largest callback body a JetStream server whose max_payload is
// maxPayload stores as a job and as a dead letter (in base64, so 3/4 of the space), with
// room for a query and routes of usual sizes.
func MaxBodyFor(maxPayload int64) int64 {
	if maxPayload <= maxBodyHeadroom {
		return 0
	}
	return (maxPayload - maxBodyHeadroom) / 4 * 3
}

// MaxBody is the largest callback body this queue stores (MaxBodyFor the max_payload of
// the server it is connected to).
func (q *Queue) MaxBody() int64 { return MaxBodyFor(q.nc.MaxPayload()) }

// MaxPayload is the max_payload of the JetStream server the queue is connected to.
func (q *Queue) MaxPayload() int64 { return q.nc.MaxPayload() }

// deadLetterFixed bounds the part of a dead-letter record that does not grow with the
// job: the JSON keys and timestamps, and the reason, answer excerpt and last error, which
// clipText bounds before JSON escapes them (up to 6 bytes a character).
const deadLetterFixed = 1<<10 + 6*(maxExcerptStored+2*maxTextStored)

// maxTextStored bounds the reason and last error kept with a dead letter; maxExcerptStored
// the answer's excerpt (delivery keeps 512 bytes of it).
const (
	maxTextStored    = 1 << 10
	maxExcerptStored = 1 << 10
)

// TooLargeError is the ErrTooLarge of one job: its body's size, the server's max_payload
// and the largest body that holds (MaxBodyFor).
type TooLargeError struct {
	Body       int
	MaxPayload int64
	MaxBody    int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("body of %d bytes: %v (the JetStream server takes messages up to %d bytes, which holds bodies up to %d bytes)",
		e.Body, ErrTooLarge, e.MaxPayload, e.MaxBody)
}

// Is makes errors.Is(err, ErrTooLarge) hold.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// tooLarge returns a *TooLargeError when j's body is over MaxBodyFor(maxPayload), or its
// message or the dead letter it may become is over maxPayload (a huge query). The first
// makes the limit one number, the one MaxBody says, whatever the query and routes.
func tooLarge(j *Job, maxPayload int64) error {
	most := MaxBodyFor(maxPayload)
	if int64(len(j.Body)) <= most && int64(frameSize(j)) <= maxPayload && int64(deadLetterSize(j)) <= maxPayload {
		return nil
	}
	return &TooLargeError{Body: len(j.Body), MaxPayload: maxPayload, MaxBody: most}
}

// deadLetterSize bounds the size of j's dead-letter record: the body in base64, the
// strings JSON-escaped (at most 6 bytes a byte), and the fixed part.
func deadLetterSize(j *Job) int {
	n := base64.StdEncoding.EncodedLen(len(j.Body)) + deadLetterFixed +
		6*(len(j.Query)+len(j.EventID)+len(j.Destination)+len(j.RequestID))
	for _, r := range j.Routes {
		n += 6*len(r) + 3
	}
	return n
}

// clipText bounds a text kept with a dead letter, cutting at a character boundary.
func clipText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && s[cut]&0xC0 == 0x80 { // not in the middle of a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}
