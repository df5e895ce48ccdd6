package rules

import (
	"errors"
	"strings"
	"testing"
)

func TestKeyEval(t *testing.T) {
	ev := newEvent(t, "1400000000", "C2C.CallbackAfterSendMsg", c2cQuery, c2cBody)
	group := newEvent(t, "1400000000", "Group.CallbackAfterSendMsg", nil,
		`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#1","From_Account":"jared"}`)
	tests := []struct {
		name, src string
		ev        *Event
		want      string
	}{
		{"conversation of a C2C message", `GroupId ?? (From_Account + ":" + To_Account)`, ev, "jared:Jonh"},
		{"conversation of a group message", `GroupId ?? (From_Account + ":" + To_Account)`, group, "@TGS#1"},
		{"a field", `From_Account`, ev, "jared"},
		{"an integer, exact above 2^53", `MsgSeq`, ev, "9007199254740993"},
		{"a float", `Price`, ev, "1.5"},
		{"an int from arithmetic", `len(MsgBody)`, ev, "3"},
		{"the query", `query.SdkAppid`, ev, "1400000000"},
		{"text", `text`, ev, "red packet\ncall me"},
		{"the empty string is a key like another", `""`, ev, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := CompileKey(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.Eval(tt.ev)
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestKeyEvalErrors(t *testing.T) {
	ev := newEvent(t, "1400000000", "C2C.CallbackAfterSendMsg", c2cQuery, c2cBody)
	tests := []struct{ name, src, err string }{
		{"a field the callback lacks", `GroupId`, "order_by: value is nil (a field the callback does not carry?)"},
		{"a boolean", `SendMsgResult != 0`, "order_by: value of type bool: want a string or a number"},
		{"a list", `MsgBody`, "order_by: value of type []interface {}: want a string or a number"},
		{"run-time type error", `From_Account + 1`, "order_by: invalid operation: string + int"},
		{"not a number", `1 / 0`, "order_by: value +Inf is not a usable number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := CompileKey(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.Eval(ev)
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) || got != "" {
				t.Errorf("got %q, %v; want an error starting %q", got, err, tt.err)
			}
		})
	}
}

func TestCompileKeyErrors(t *testing.T) {
	tests := []struct {
		name, src    string
		line, column int
		msg          string
	}{
		{"syntax", `From_Account +`, 1, 14, "unexpected token EOF"},
		{"unknown function", `lowercase(From_Account)`, 1, 1, "unknown function lowercase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := CompileKey(tt.src)
			var ce *CompileError
			if k != nil || !errors.As(err, &ce) {
				t.Fatalf("got %v, %v; want a *CompileError", k, err)
			}
			if ce.Field != "order_by" || ce.Line != tt.line || ce.Column != tt.column || ce.Err.Error() != tt.msg {
				t.Errorf("got %s at %d:%d %q, want order_by at %d:%d %q", ce.Field, ce.Line, ce.Column, ce.Err, tt.line, tt.column, tt.msg)
			}
		})
	}
}
