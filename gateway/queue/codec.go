package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A job is stored as a small binary frame followed by the raw body, with no
// NATS headers besides the dedup id. BenchmarkEncode compares this with one
// header per field: headers cost a map, a slice per value and a text
// encoding per message on the hot path, the frame costs one buffer.
//
//	frame := version(1 byte) receivedAt(varint unix ns)
//	         attempt(uvarint) since(varint unix ns, 0 = receivedAt)   (version 2 on)
//	         lane(uvarint: 0 = none, else length of the key + 1; then the key) (version 2 on)
//	         eventID destination requestID query (each uvarint length + bytes)
//	         routeCount(uvarint) route... (each uvarint length + bytes)
//	         body (the rest)
//
// Version 1 frames (no attempt: a job never tried) are still read, so a store written by an
// earlier Fanout keeps working.
const (
	frameVersion   = 2
	frameVersionV1 = 1
)

// frameSize is an upper bound of the encoded size of j, so that encoding
// never grows its buffer.
func frameSize(j *Job) int {
	n := 1 + 3*binary.MaxVarintLen64 +
		binary.MaxVarintLen64 + len(j.Key) +
		4*binary.MaxVarintLen64 + len(j.EventID) + len(j.Destination) + len(j.RequestID) + len(j.Query) +
		binary.MaxVarintLen64 + len(j.Body)
	for _, r := range j.Routes {
		n += binary.MaxVarintLen64 + len(r)
	}
	return n
}

// appendFrame appends the encoding of j to b.
func appendFrame(b []byte, j *Job) []byte {
	b = append(b, frameVersion)
	var received int64
	if !j.ReceivedAt.IsZero() {
		received = j.ReceivedAt.UnixNano()
	}
	b = binary.AppendVarint(b, received)
	b = binary.AppendUvarint(b, uint64(max(j.Attempt, 1)))
	var since int64
	if !j.Since.IsZero() && !j.Since.Equal(j.ReceivedAt) {
		since = j.Since.UnixNano()
	}
	b = binary.AppendVarint(b, since)
	if j.Ordered {
		b = binary.AppendUvarint(b, uint64(len(j.Key))+1)
		b = append(b, j.Key...)
	} else {
		b = binary.AppendUvarint(b, 0)
	}
	b = appendString(b, j.EventID)
	b = appendString(b, j.Destination)
	b = appendString(b, j.RequestID)
	b = appendString(b, j.Query)
	b = binary.AppendUvarint(b, uint64(len(j.Routes)))
	for _, r := range j.Routes {
		b = appendString(b, r)
	}
	return append(b, j.Body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errShortFrame = errors.New("truncated job frame")

// decodeFrame decodes a job written by appendFrame. Body aliases data.
func decodeFrame(data []byte) (Job, error) {
	var j Job
	if len(data) == 0 {
		return j, errShortFrame
	}
	if data[0] != frameVersion && data[0] != frameVersionV1 {
		return j, fmt.Errorf("unknown job frame version %d", data[0])
	}
	d := frameDecoder{b: data[1:]}
	received := d.varint()
	if received != 0 {
		j.ReceivedAt = time.Unix(0, received)
	}
	j.Attempt = 1
	if data[0] >= 2 {
		if a := d.uvarint(); a > 1 && a <= maxAttempt {
			j.Attempt = int(a)
		}
		if since := d.varint(); since != 0 {
			j.Since = time.Unix(0, since)
		}
		if n := d.uvarint(); n > 0 {
			j.Ordered = true
			if n-1 > uint64(len(d.b)) {
				return j, errShortFrame
			}
			j.Key = string(d.b[:n-1])
			d.b = d.b[n-1:]
		}
	}
	j.EventID = d.string()
	j.Destination = d.string()
	j.RequestID = d.string()
	j.Query = d.string()
	if n := d.uvarint(); n > 0 && d.err == nil {
		if n > uint64(len(d.b)) { // each route takes at least one byte
			return j, errShortFrame
		}
		j.Routes = make([]string, n)
		for i := range j.Routes {
			j.Routes[i] = d.string()
		}
	}
	if d.err != nil {
		return j, d.err
	}
	j.Body = d.b
	return j, nil
}

// maxAttempt bounds the attempt number read from a frame, so that a damaged frame cannot
// make an absurd one.
const maxAttempt = 1 << 30

// receivedAtOf reads only the ReceivedAt of a frame, for Pending.
func receivedAtOf(data []byte) (time.Time, error) {
	if len(data) < 2 || (data[0] != frameVersion && data[0] != frameVersionV1) {
		return time.Time{}, errShortFrame
	}
	d := frameDecoder{b: data[1:]}
	received := d.varint()
	if d.err != nil || received == 0 {
		return time.Time{}, d.err
	}
	return time.Unix(0, received), nil
}

type frameDecoder struct {
	b   []byte
	err error
}

func (d *frameDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortFrame
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *frameDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortFrame
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *frameDecoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errShortFrame
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
