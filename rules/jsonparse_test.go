package rules

import (
	"math"
	"reflect"
	"testing"
)

// decodeValid must give what encoding/json (with exact integers) gives, for every valid
// body: the fuzz corpus starts with the real payloads' shapes and the tricky corners.
func FuzzDecodeValid(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, ` {"a" : [1, 2.5, -3, 1e3, 9007199254740993, 18446744073709551616, -0, 0.0]} `,
		`{"s":"plain","e":"q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00 lone \ud800 x","x":null,"t":true,"f":false}`,
		`{"dup":1,"dup":2}`, `{"deep":{"a":[{"b":[[]]}]}}`, "{\"bad\":\"\xff\xfe ok\"}",
		`{"big":1e999,"neg":-1e999}`, `[1,2]`, `"str"`, `12`, `{"a":1} x`,
		`{"CallbackCommand":"C2C.CallbackAfterSendMsg","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}}],"MsgSeq":48374}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := parseBodyStd(b)
		got, gerr := ParseBody(b)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%q: error %v, encoding/json says %v", b, gerr, werr)
		}
		if werr != nil {
			if werr.Error() != gerr.Error() {
				t.Fatalf("%q: error %q, want %q", b, gerr, werr)
			}
			return
		}
		if !equalJSON(got, want) {
			t.Fatalf("%q:\n got %#v\nwant %#v", b, got, want)
		}
	})
}

// equalJSON is reflect.DeepEqual where NaN equals NaN (numbers out of float64's range).
func equalJSON(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || (math.IsNaN(x) && math.IsNaN(y)))
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !equalJSON(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
