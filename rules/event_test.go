package rules

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// payload reads one of Tencent's sample bodies.
func payload(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fanouttest.PayloadDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseBody(t *testing.T) {
	tests := []struct {
		name, body string
		want       map[string]any
		err        string // "" for none; ErrNotObject's text for that error
	}{
		{name: "object", body: `{"From_Account": "jared", "OnlineOnlyFlag": 1, "Nested": {"a": [1, "x", null, true]}}`,
			want: map[string]any{"From_Account": "jared", "OnlineOnlyFlag": int64(1),
				"Nested": map[string]any{"a": []any{int64(1), "x", nil, true}}}},
		{name: "integers stay exact", body: `{"MsgSeq": 9007199254740993, "Min": -9223372036854775808, "Max": 9223372036854775807}`,
			want: map[string]any{"MsgSeq": int64(9007199254740993), "Min": int64(math.MinInt64), "Max": int64(math.MaxInt64)}},
		{name: "other numbers are float64", body: `{"Price": 1.5, "Big": 18446744073709551616, "Exp": 1e3}`,
			want: map[string]any{"Price": 1.5, "Big": 18446744073709551616.0, "Exp": 1000.0}},
		{name: "numbers inside lists and objects", body: `{"L": [[2], {"n": 3}]}`,
			want: map[string]any{"L": []any{[]any{int64(2)}, map[string]any{"n": int64(3)}}}},
		{name: "whitespace around", body: " \n\t{}\r\n ", want: map[string]any{}},
		{name: "array", body: `[{"a": 1}]`, err: ErrNotObject.Error()},
		{name: "string", body: `"hello"`, err: ErrNotObject.Error()},
		{name: "number", body: `42`, err: ErrNotObject.Error()},
		{name: "null", body: `null`, err: ErrNotObject.Error()},
		{name: "empty", body: ``, err: "body is not valid JSON: EOF"},
		{name: "truncated", body: `{"a": `, err: "body is not valid JSON: unexpected EOF"},
		{name: "broken", body: `{"a" 1}`, err: "body is not valid JSON: invalid character '1' after object key"},
		{name: "second object", body: `{"a": 1} {"b": 2}`, err: "body is not valid JSON: data after the object"},
		{name: "trailing garbage", body: `{"a": 1} xyz`, err: "body is not valid JSON: data after the object"},
		{name: "trailing brace", body: `{"a": 1}}`, err: "body is not valid JSON: data after the object"},
		{name: "trailing bracket", body: `{"a": 1}]`, err: "body is not valid JSON: data after the object"},
		{name: "trailing comma", body: `{"a": 1},`, err: "body is not valid JSON: data after the object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBody([]byte(tt.body))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if (tt.err == ErrNotObject.Error()) != errors.Is(err, ErrNotObject) {
					t.Errorf("errors.Is(err, ErrNotObject) = %v", errors.Is(err, ErrNotObject))
				}
				if got != nil {
					t.Errorf("fields %v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// TestParsePayloads decodes every sample body Tencent documents.
func TestParsePayloads(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fanouttest.PayloadDir(), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no payloads in %s: %v", fanouttest.PayloadDir(), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			fields, err := ParseBody(payload(t, filepath.Base(file)))
			if err != nil {
				t.Fatal(err)
			}
			ev := NewEvent("1400000000", "", nil, fields)
			if !strings.HasPrefix(filepath.Base(file), ev.Command+".") {
				t.Errorf("command %q from the body", ev.Command)
			}
		})
	}
}

func TestNewEvent(t *testing.T) {
	fields := map[string]any{"CallbackCommand": "C2C.CallbackAfterSendMsg"}
	t.Run("command from the body", func(t *testing.T) {
		ev := NewEvent("1", "", nil, fields)
		if ev.Command != "C2C.CallbackAfterSendMsg" || ev.AppID != "1" || ev.Query == nil {
			t.Errorf("event %+v", ev)
		}
	})
	t.Run("the query's command wins", func(t *testing.T) {
		if ev := NewEvent("1", "Group.CallbackAfterSendMsg", nil, fields); ev.Command != "Group.CallbackAfterSendMsg" {
			t.Errorf("command %q", ev.Command)
		}
	})
	t.Run("no command anywhere", func(t *testing.T) {
		if ev := NewEvent("1", "", nil, map[string]any{"CallbackCommand": 7}); ev.Command != "" {
			t.Errorf("command %q", ev.Command)
		}
	})
}

func TestText(t *testing.T) {
	text := func(elems ...string) map[string]any {
		var body []any
		for _, e := range elems {
			typ, value, _ := strings.Cut(e, ":")
			body = append(body, map[string]any{"MsgType": typ, "MsgContent": map[string]any{"Text": value, "Data": value}})
		}
		return map[string]any{"MsgBody": body}
	}
	tests := []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"one", text("TIMTextElem:hi"), "hi"},
		{"joined by newlines, other elements skipped", text("TIMTextElem:red", "TIMFaceElem:smile", "TIMTextElem:packet"), "red\npacket"},
		{"no text elements", text("TIMImageElem:x", "TIMCustomElem:y"), ""},
		{"no MsgBody", map[string]any{}, ""},
		{"MsgBody not a list", map[string]any{"MsgBody": "TIMTextElem"}, ""},
		{"odd elements", map[string]any{"MsgBody": []any{"x", nil, map[string]any{"MsgType": "TIMTextElem"},
			map[string]any{"MsgType": "TIMTextElem", "MsgContent": map[string]any{"Text": 5}},
			map[string]any{"MsgType": "TIMTextElem", "MsgContent": map[string]any{"Text": "ok"}}}}, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Text(tt.fields); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
