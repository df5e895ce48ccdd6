package tencentim

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// OK is the answer Tencent expects for a callback that was accepted. It is shared: write it,
// never modify it.
var OK = []byte(`{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`)

// Decisions a before-callback answer carries in ErrorCode (respond on_failure allow | deny | drop).
const (
	DecisionAllow = 0 // the event goes ahead
	DecisionDeny  = 1 // the event is refused; the sender sees an error
	DecisionDrop  = 2 // the event is dropped silently; the sender sees success
)

// Fail is the answer for a refused or failed callback, with info as ErrorInfo. info is
// encoded by encoding/json, so quotes, newlines and invalid UTF-8 still give valid JSON.
func Fail(info string) []byte {
	quoted, _ := json.Marshal(info) // a string always marshals
	b := make([]byte, 0, len(`{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":}`)+len(quoted))
	b = append(b, `{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":`...)
	b = append(b, quoted...)
	return append(b, '}')
}

// Decision is a before-callback answer carrying code in ErrorCode. ActionStatus stays "OK"
// for every code because Tencent documents the decision in ErrorCode only and shows "OK"
// in all its before-callback examples.
func Decision(code int) []byte {
	b := append([]byte(nil), `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	return append(b, '}')
}

// IsDecision reports whether b is a before-callback answer as Tencent reads it: one JSON
// object with an integer ErrorCode. A quoted "1" or a null is not one: Tencent would take
// the answer as a failed callback.
func IsDecision(b []byte) bool {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(b), &m); err != nil {
		return false
	}
	var code *int64
	return json.Unmarshal(m["ErrorCode"], &code) == nil && code != nil
}
