package eventlog

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
)

// Records are written as JSON with "kind" first, by hand: this runs for every callback and
// every attempt, and encoding/json's reflection was most of the log's cost in the writer.
// They are read back with encoding/json into an Entry, whose field names these are; a
// test checks that the two agree. A received record is followed by a newline and the raw
// body, whose bytes a replay must send unchanged.

// encode is the stored form of e (its EventID is beside it in its block, not written).
func encode(buf []byte, e *Entry, body []byte) []byte {
	b := append(buf, `{"kind":`...)
	b = appendString(b, e.Kind)
	b = append(b, `,"at":"`...)
	b = e.At.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "request_id", e.RequestID)
	b = appendField(b, "sdkappid", e.SdkAppID)
	b = appendField(b, "command", e.Command)
	b = appendField(b, "query", e.Query)
	if len(e.Routes) > 0 {
		b = append(b, `,"routes":`...)
		b = appendStrings(b, e.Routes)
	}
	if len(e.Deliveries) > 0 {
		b = append(b, `,"deliveries":[`...)
		for i, d := range e.Deliveries {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"destination":`...)
			b = appendString(b, d.Destination)
			b = append(b, `,"routes":`...)
			b = appendStrings(b, d.Routes)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendField(b, "respond", e.Respond)
	if len(e.fields) > 0 {
		b = append(b, `,"fields":{`...)
		for i, f := range e.fields {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f.Name)
			b = append(b, ':')
			b = appendString(b, f.Value)
		}
		b = append(b, '}')
	}
	b = appendInt(b, "body_size", e.BodySize)
	b = appendField(b, "destination", e.Destination)
	b = appendInt(b, "attempt", e.Attempt)
	b = appendInt(b, "status", e.Status)
	b = appendField(b, "result", e.Result)
	if e.DurationMS != 0 {
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendFloat(b, e.DurationMS, 'f', -1, 64)
	}
	b = appendField(b, "error", e.Error)
	if e.RespondTo {
		b = append(b, `,"respond_exchange":true`...)
	}
	if !e.Due.IsZero() {
		b = append(b, `,"due":"`...)
		b = e.Due.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = appendField(b, "reason", e.Reason)
	if e.Reroute {
		b = append(b, `,"reroute":true`...)
	}
	b = append(b, '}')
	if e.Kind == KindReceived {
		b = append(b, '\n')
		b = append(b, body...)
	}
	return b
}

// kindOf reads the kind of a stored record without decoding it.
func kindOf(data []byte) string {
	rest, ok := bytes.CutPrefix(data, []byte(`{"kind":"`))
	if !ok {
		return ""
	}
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		return string(rest[:i])
	}
	return ""
}

func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendInt(b []byte, name string, v int) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, int64(v), 10)
}

func appendStrings(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// plain are the bytes a JSON string holds as they are: ASCII but control characters,
// quotes and backslashes.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD, as encoding/json writes it (< > & kept as
// they are).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // as encoding/json: valid JSON, not valid JavaScript
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
