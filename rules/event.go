// Package rules compiles and evaluates what a Fanout config says about callbacks: routes
// (which destinations get a callback), respond rules (which "before" callbacks are answered
// synchronously, and by whom) and body transforms. Expressions are expr-lang/expr, compiled
// once at load. The package knows nothing of HTTP, YAML files or NATS: callers hand it
// decoded callbacks and plain specs, and get names back. Its linter reads what Tencent's
// callbacks carry from tencentim's command table.
package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// Event is one callback as the rules see it. Build it with NewEvent.
type Event struct {
	AppID   string            // the SdkAppid query parameter
	Command string            // the CallbackCommand query parameter (or the body's)
	Query   map[string]string // every query parameter
	Fields  map[string]any    // the decoded JSON body (see ParseBody)

	env     map[string]any // Fields plus query and text, built on first use
	textSet bool
}

// NewEvent returns an event for a callback whose body was decoded by ParseBody. An empty
// command falls back to the body's CallbackCommand.
func NewEvent(appID, command string, query map[string]string, fields map[string]any) *Event {
	if command == "" {
		command, _ = fields["CallbackCommand"].(string)
	}
	if query == nil {
		query = map[string]string{}
	}
	return &Event{AppID: appID, Command: command, Query: query, Fields: fields}
}

// environment is what expressions see: every top-level body field by name, query and
// text (computed only for expressions that use it). query and text are added to Fields
// itself, which saves a copy per callback; a body that has fields of those names (no
// Tencent callback does) is copied first, so that they stay the body's.
func (e *Event) environment(withText bool) map[string]any {
	if e.env == nil {
		e.env = e.Fields
		_, q := e.Fields["query"]
		_, t := e.Fields["text"]
		if q || t {
			e.env = make(map[string]any, len(e.Fields)+2)
			for k, v := range e.Fields {
				e.env[k] = v
			}
		}
		e.env["query"] = e.Query
	}
	if withText && !e.textSet {
		e.env["text"] = Text(e.Fields)
		e.textSet = true
	}
	return e.env
}

// Text joins the Text of every TIMTextElem in the body's MsgBody with newlines: what
// keyword rules want to search, whatever else the message carries.
func Text(fields map[string]any) string {
	body, _ := fields["MsgBody"].([]any)
	var parts []string
	for _, el := range body {
		m, _ := el.(map[string]any)
		if m == nil || m["MsgType"] != "TIMTextElem" {
			continue
		}
		content, _ := m["MsgContent"].(map[string]any)
		if s, ok := content["Text"].(string); ok {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "\n")
}

// ErrNotObject is returned by ParseBody for a body that is valid JSON but not an object.
var ErrNotObject = errors.New("body is not a JSON object")

// ParseBody decodes a callback body that must be one JSON object. JSON integers become
// int64 when they fit (so MsgSeq == 9007199254740993 compares exactly), other numbers
// float64; everything else is what encoding/json gives.
func ParseBody(body []byte) (map[string]any, error) {
	if !json.Valid(body) {
		_, err := parseBodyStd(body)
		if err == nil { // cannot happen: both follow encoding/json
			err = errors.New("body is not valid JSON")
		}
		return nil, err
	}
	m, ok := decodeValid(body).(map[string]any)
	if !ok {
		return nil, ErrNotObject
	}
	return m, nil
}

// parseBodyStd is ParseBody on encoding/json: for the error message of an invalid body,
// and as the reference decodeValid is tested against.
func parseBodyStd(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("body is not valid JSON: %w", err)
	}
	// Anything but the end of input after the value is an error, including bytes that are
	// not a valid token (`{} x`, `{}}`), for which Token fails with a syntax error.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("body is not valid JSON: data after the object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ErrNotObject
	}
	exactNumbers(m)
	return m, nil
}

// exactNumbers replaces json.Number values in place, recursively.
func exactNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = exactNumbers(x)
		}
	case []any:
		for i, x := range t {
			t[i] = exactNumbers(x)
		}
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		if f, err := t.Float64(); err == nil {
			return f
		}
		return math.NaN()
	}
	return v
}
