package rules

import (
	"reflect"
	"testing"
)

func TestLint(t *testing.T) {
	route := func(when string, commands ...string) []RouteSpec {
		return []RouteSpec{{Name: "r", Filter: Filter{When: when, Commands: commands}, To: []string{"d"}}}
	}
	w := func(field, msg string) Warning { return Warning{Kind: "route", Index: 0, Field: field, Message: msg} }
	tests := []struct {
		name     string
		routes   []RouteSpec
		responds []RespondSpec
		want     []Warning
	}{
		{name: "misspelled field", routes: route(`To_Acount == "bob"`, "C2C.CallbackAfterSendMsg"),
			want: []Warning{w("when", "unknown field To_Acount: no known Tencent IM callback carries it (did you mean To_Account?)")}},
		{name: "unknown field, nothing close", routes: route(`Colour == "red"`, "C2C.CallbackAfterSendMsg"),
			want: []Warning{w("when", "unknown field Colour: no known Tencent IM callback carries it")}},
		{name: "a field the commands cannot carry", routes: route(`GroupId == "@TGS#1"`, "C2C.*"),
			want: []Warning{w("when", "GroupId is not carried by C2C.CallbackBeforeSendMsg, C2C.CallbackAfterSendMsg, C2C.CallbackAfterMsgReport and 1 more: it is always nil on this route")}},
		{name: "a field one exact command cannot carry", routes: route(`SendMsgResult != 0`, "C2C.CallbackBeforeSendMsg"),
			want: []Warning{w("when", "SendMsgResult is not carried by C2C.CallbackBeforeSendMsg: it is always nil on this route")}},
		{name: "carried by one of the commands", routes: route(`GroupId == "@TGS#1"`, "C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg")},
		{name: "command-specific field without commands (nil != 0)", routes: route(`SendMsgResult != 0`),
			want: []Warning{w("when", "SendMsgResult is carried only by some callbacks (C2C.CallbackAfterSendMsg, Bot.OnC2CMessage); this route has no commands, so for every other callback SendMsgResult is nil (and nil != 0 is true): add commands")}},
		{name: "a field every callback carries, without commands", routes: route(`CallbackCommand startsWith "Group."`)},
		{name: "query and text need no commands", routes: route(`query.SdkAppid == "1" && text contains "x"`)},
		{name: "let-bound names and predicate fields are not body fields",
			routes: route(`let texts = filter(MsgBody, .MsgType == "TIMTextElem"); len(texts) > 0`, "C2C.CallbackAfterSendMsg")},
		{name: "unknown command", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"C2C.CallbackAfterSendMessage"}}}},
			want: []Warning{w("commands", `unknown command "C2C.CallbackAfterSendMessage" (did you mean "C2C.CallbackAfterSendMsg"?)`)}},
		{name: "unknown command, wrong case", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"c2c.callbackaftersendmsg"}}}},
			want: []Warning{w("commands", `unknown command "c2c.callbackaftersendmsg" (did you mean "C2C.CallbackAfterSendMsg"?)`)}},
		{name: "unknown command, nothing close", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"Chat.Message"}}}},
			want: []Warning{w("commands", `unknown command "Chat.Message"`)}},
		{name: "glob matching nothing", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"Chat.*", "Group.*"}}}},
			want: []Warning{w("commands", `"Chat.*" matches no known command`)}},
		{name: "broken expression is left to Compile", routes: route(`To_Acount ==`, "C2C.*")},
		{name: "every warning, in order",
			routes: []RouteSpec{
				{Name: "fine", Filter: Filter{Commands: []string{"Group.*"}, When: `GroupId startsWith "@TGS#"`}},
				{Name: "two", Filter: Filter{Commands: []string{"C2C.CallbackAfterSendMessage"}, When: `Fromm_Account == "a"`}},
			},
			responds: []RespondSpec{{Filter: Filter{Commands: []string{"C2C.CallbackBeforeSendMsg"}, When: `GroupId != ""`}, From: "d"}},
			want: []Warning{
				{"route", 1, "commands", `unknown command "C2C.CallbackAfterSendMessage" (did you mean "C2C.CallbackAfterSendMsg"?)`},
				{"route", 1, "when", "unknown field Fromm_Account: no known Tencent IM callback carries it (did you mean From_Account?)"},
				{"respond", 0, "when", "GroupId is not carried by C2C.CallbackBeforeSendMsg: it is always nil on this route"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Lint(tt.routes, tt.responds)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLintBody(t *testing.T) {
	tests := []struct {
		src  string
		want []Warning
	}{
		{`{"to": To_Acount, "text": text, "app": query.SdkAppid}`,
			[]Warning{{Kind: "body", Field: "body", Message: "unknown field To_Acount: no known Tencent IM callback carries it (did you mean To_Account?)"}}},
		{`{"from": From_Account, "n": len(MsgBody)}`, nil},
		{`{"broken": `, nil},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			if got := LintBody(tt.src); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
