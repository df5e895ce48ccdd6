package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestRender checks the exact bytes a body transform sends.
// render compiles the body transform src, which must compile, and renders ev with it.
func render(t *testing.T, src string, ev *Event) ([]byte, error) {
	t.Helper()
	b, err := CompileBody(src)
	if err != nil {
		t.Fatal(err)
	}
	return b.Render(ev)
}

func TestRender(t *testing.T) {
	ev := newEvent(t, "1400000000", "C2C.CallbackAfterSendMsg", c2cQuery, c2cBody)
	tests := []struct {
		name, src, want string
	}{
		{"map, keys sorted", `{"msgtype": "text", "text": {"content": From_Account + " to " + To_Account + ": " + ErrorInfo}}`,
			`{"msgtype":"text","text":{"content":"jared to Jonh: blocked"}}`},
		{"list", `[From_Account, To_Account, SendMsgResult]`, `["jared","Jonh",20006]`},
		{"string", `From_Account`, `"jared"`},
		{"integer, exact above 2^53", `MsgSeq`, `9007199254740993`},
		{"arithmetic", `SendMsgResult * 2 + 1`, `40013`},
		{"float", `Price`, `1.5`},
		{"boolean", `SendMsgResult != 0`, `true`},
		{"null", `GroupId`, `null`},
		{"a body field passed through", `MsgBody[0]`, `{"MsgContent":{"Text":"red packet"},"MsgType":"TIMTextElem"}`},
		{"text and query", `{"text": text, "app": query.SdkAppid, "ip": query.ClientIP}`,
			`{"app":"1400000000","ip":"203.0.113.9","text":"red packet\ncall me"}`},
		{"builtins", `{"n": len(MsgBody), "texts": map(filter(MsgBody, .MsgType == "TIMTextElem"), .MsgContent.Text)}`,
			`{"n":3,"texts":["red packet","call me"]}`},
		{"conditional", `SendMsgResult == 0 ? "ok" : "failed: " + ErrorInfo`, `"failed: blocked"`},
		// As written, not \u003c: chat bots' markdown (<font>) needs them.
		{"HTML characters", `{"md": "<font>" + From_Account + " -> " + To_Account + "</font> & co"}`, `{"md":"<font>jared -> Jonh</font> & co"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render(t, tt.src, ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	ev := newEvent(t, "1", "", nil, c2cBody)
	tests := []struct {
		name, src, err string
	}{
		{"run-time type error", `From_Account + 1`, "body transform: invalid operation: string + int"},
		{"field of nil", `Info.Action`, "body transform: cannot fetch Action from <nil>"},
		{"not JSON", `1 / 0`, "body transform: value is not JSON: json: unsupported value: +Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render(t, tt.src, ev)
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) || got != nil {
				t.Errorf("got %s, %v; want an error starting %q", got, err, tt.err)
			}
		})
	}
}

func TestCompileBodyErrors(t *testing.T) {
	tests := []struct {
		name, src    string
		line, column int
		msg          string
	}{
		{"syntax", `{"a": From_Account +}`, 1, 21, `unexpected token Bracket("}")`},
		{"second line", "{\n  \"a\": From_Account,\n  \"b\": ]\n}", 3, 8, `unexpected token Bracket("]")`},
		{"unknown function", `{"a": lowercase(From_Account)}`, 1, 7, "unknown function lowercase"},
		{"$env is not callable", `$env()`, 1, 1, "map[string]interface {} is not callable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := CompileBody(tt.src)
			var ce *CompileError
			if b != nil || !errors.As(err, &ce) {
				t.Fatalf("got %v, %v; want a *CompileError", b, err)
			}
			if ce.Field != "body" || ce.Line != tt.line || ce.Column != tt.column || ce.Err.Error() != tt.msg {
				t.Errorf("got %s at %d:%d %q, want body at %d:%d %q", ce.Field, ce.Line, ce.Column, ce.Err, tt.line, tt.column, tt.msg)
			}
		})
	}
}

func TestTransform(t *testing.T) {
	b, err := CompileBody(`{"from": From_Account, "app": query.SdkAppid, "command": CallbackCommand, "text": text}`)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("sample payload", func(t *testing.T) {
		got, err := b.Transform("1400000000", "C2C.CallbackAfterSendMsg", map[string]string{"SdkAppid": "1400000000"},
			fanouttest.Payload(t, "C2C.CallbackAfterSendMsg.json"))
		if want := `{"app":"1400000000","command":"C2C.CallbackAfterSendMsg","from":"jared","text":"red packet"}`; err != nil || string(got) != want {
			t.Errorf("got %s, %v; want %s", got, err, want)
		}
	})
	t.Run("nil query", func(t *testing.T) {
		got, err := b.Transform("1", "", nil, []byte(`{"From_Account": "a"}`))
		if want := `{"app":"","command":null,"from":"a","text":""}`; err != nil || string(got) != want {
			t.Errorf("got %s, %v; want %s", got, err, want)
		}
	})
	t.Run("not an object", func(t *testing.T) {
		if _, err := b.Transform("1", "", nil, []byte(`["a"]`)); !errors.Is(err, ErrNotObject) {
			t.Errorf("error %v, want ErrNotObject", err)
		}
	})
	t.Run("broken JSON", func(t *testing.T) {
		if _, err := b.Transform("1", "", nil, []byte(`{"a":`)); err == nil || errors.Is(err, ErrNotObject) {
			t.Errorf("error %v, want a JSON error", err)
		}
	})
}
