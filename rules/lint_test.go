package rules

import (
	"reflect"
	"testing"
)

func TestLint(t *testing.T) {
	route := func(when string, commands ...string) []RouteSpec {
		return []RouteSpec{{Name: "r", Filter: Filter{When: when, Commands: commands}, To: []string{"d"}}}
	}
	// w is a warning and e an error about the when of route 0, at line 1, column col.
	w := func(col int, msg string) Finding {
		return Finding{Kind: "route", Field: "when", Line: 1, Column: col, Message: msg}
	}
	e := func(col int, msg string) Finding {
		return Finding{Kind: "route", Field: "when", Line: 1, Column: col, Message: msg, Error: true}
	}
	// cmd is a finding about commands[entry] of route 0.
	cmd := func(entry int, msg string, isErr bool) Finding {
		return Finding{Kind: "route", Field: "commands", Entry: entry, Message: msg, Error: isErr}
	}
	tests := []struct {
		name     string
		routes   []RouteSpec
		responds []RespondSpec
		extra    []string
		want     []Finding
	}{
		// Fields the route's commands do not carry.
		{name: "misspelled field on an exact command", routes: route(`SendMsgReslt != 0`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, "unknown field SendMsgReslt: C2C.CallbackAfterSendMsg does not carry it, so it is always nil on this route (did you mean SendMsgResult?)")}},
		{name: "misspelled field, suggested from every callback", routes: route(`x == 1 && To_Acount == "bob"`, "C2C.CallbackAfterMsgReport"),
			want: []Finding{
				e(1, "unknown field x: C2C.CallbackAfterMsgReport does not carry it, so it is always nil on this route"),
				e(11, "unknown field To_Acount: C2C.CallbackAfterMsgReport does not carry it, so it is always nil on this route (did you mean To_Account?)"),
			}},
		{name: "unknown field, nothing close", routes: route(`Colour == "red"`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, "unknown field Colour: C2C.CallbackAfterSendMsg does not carry it, so it is always nil on this route")}},
		{name: "a known field one exact command cannot carry", routes: route(`SendMsgResult != 0`, "C2C.CallbackBeforeSendMsg"),
			want: []Finding{e(1, "SendMsgResult is not carried by C2C.CallbackBeforeSendMsg: it is always nil on this route")}},
		{name: "a field none of two exact commands carries", routes: route(`MsgKey != "" && GroupId == "@TGS#1"`, "C2C.CallbackAfterSendMsg", "C2C.CallbackAfterMsgWithDraw"),
			want: []Finding{e(17, "GroupId is not carried by C2C.CallbackAfterSendMsg, C2C.CallbackAfterMsgWithDraw: it is always nil on this route")}},
		{name: "carried by one of the exact commands", routes: route(`GroupId == "@TGS#1"`, "C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg")},
		{name: "a field the commands of a glob cannot carry is a warning", routes: route(`GroupId == "@TGS#1"`, "C2C.*"),
			want: []Finding{w(1, "GroupId is not carried by C2C.CallbackBeforeSendMsg, C2C.CallbackAfterSendMsg, C2C.CallbackAfterMsgReport and 1 more: it is always nil on this route")}},
		{name: "an unknown field under a glob is a warning", routes: route(`To_Acount == "bob"`, "C2C.*"),
			want: []Finding{w(1, "unknown field To_Acount: no known Tencent IM callback carries it (did you mean To_Account?)")}},
		{name: "command-specific field without commands (nil != 0)", routes: route(`SendMsgResult != 0`),
			want: []Finding{w(1, "SendMsgResult is carried only by some callbacks (C2C.CallbackAfterSendMsg, Bot.OnC2CMessage); this route has no commands, so for every other callback SendMsgResult is nil (and nil != 0 is true): add commands")}},
		{name: "a field every callback carries, without commands", routes: route(`CallbackCommand startsWith "Group."`)},
		{name: "query and text need no commands", routes: route(`query.SdkAppid == "1" && text contains "x"`)},
		{name: "let-bound names and predicate fields are not body fields",
			routes: route(`let texts = filter(MsgBody, .MsgType == "TIMTextElem"); len(texts) > 0`, "C2C.CallbackAfterSendMsg")},
		{name: "the position is the field's, on its line",
			routes: route("SendMsgResult != 0 ||\n  GroupId == \"x\"", "C2C.CallbackAfterSendMsg"),
			want:   []Finding{{Kind: "route", Field: "when", Line: 2, Column: 3, Message: "GroupId is not carried by C2C.CallbackAfterSendMsg: it is always nil on this route", Error: true}}},

		// Comparisons that cannot hold.
		{name: "a number compared with a string", routes: route(`SendMsgResult != "0"`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, `SendMsgResult is a number, so SendMsgResult != "0" is always true (did you mean SendMsgResult != 0?)`)}},
		{name: "a number equal to a string", routes: route(`SendMsgResult == "20006"`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, `SendMsgResult is a number, so SendMsgResult == "20006" is never true (did you mean SendMsgResult == 20006?)`)}},
		{name: "the literal first", routes: route(`"0" < SendMsgResult`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(7, `SendMsgResult is a number, so SendMsgResult > "0" fails at run time (a rule error, counted as no match) (did you mean SendMsgResult > 0?)`)}},
		{name: "a string compared with a number", routes: route(`To_Account == -1`, "C2C.*"),
			want: []Finding{e(1, `To_Account is a string, so To_Account == -1 is never true (did you mean To_Account == "-1"?)`)}},
		{name: "a string that is no number", routes: route(`SendMsgResult != "ok"`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, `SendMsgResult is a number, so SendMsgResult != "ok" is always true`)}},
		{name: "a flag compared with a boolean", routes: route(`OnlineOnlyFlag == true`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, `OnlineOnlyFlag is a number, so OnlineOnlyFlag == true is never true`)}},
		{name: "in a list of strings", routes: route(`SendMsgResult in ["20006", "80001"]`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, `SendMsgResult is a number, so SendMsgResult in ["20006", "80001"] fails at run time (a rule error, counted as no match) (did you mean SendMsgResult in [20006, 80001]?)`)}},
		{name: "not in a list of strings", routes: route(`SendMsgResult not in ["0"]`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, `SendMsgResult is a number, so SendMsgResult in ["0"] fails at run time (a rule error, counted as no match) (did you mean SendMsgResult in [0]?)`)}},
		{name: "a string operator on a number", routes: route(`SendMsgResult startsWith "2"`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, `SendMsgResult is a number, so SendMsgResult startsWith "2" fails at run time (a rule error, counted as no match)`)}},
		{name: "a list compared with a string", routes: route(`MsgBody == ""`, "C2C.CallbackAfterSendMsg"),
			want: []Finding{e(1, `MsgBody is a list, so MsgBody == "" is never true`)}},
		{name: "without commands, by the callbacks that carry it", routes: route(`SendMsgResult != "0"`),
			want: []Finding{
				w(1, "SendMsgResult is carried only by some callbacks (C2C.CallbackAfterSendMsg, Bot.OnC2CMessage); this route has no commands, so for every other callback SendMsgResult is nil (and nil != 0 is true): add commands"),
				e(1, `SendMsgResult is a number, so SendMsgResult != "0" is always true (did you mean SendMsgResult != 0?)`),
			}},
		{name: "a type that differs between the commands is not checked", routes: route(`To_Account == "x"`, "C2C.*", "Follow.*")},
		{name: "a type the sources disagree on is not checked", routes: route(`EventTime == "1"`, "Group.CallbackAfterSendMsg")},
		{name: "a list where a command has one", routes: route(`To_Account == "x"`, "Follow.*"),
			want: []Finding{e(1, `To_Account is a list, so To_Account == "x" is never true`)}},
		{name: "one literal of the right type is enough", routes: route(`SendMsgResult in [0, "1"]`, "C2C.CallbackAfterSendMsg")},
		{name: "numbers and nil compare fine", routes: route(`SendMsgResult >= 1.5 && MsgSeq != nil && From_Account != ""`, "C2C.CallbackAfterSendMsg")},
		{name: "let-bound names are not fields", routes: route(`let r = SendMsgResult; r != "0"`, "C2C.CallbackAfterSendMsg")},
		{name: "members are not checked", routes: route(`Info.Action == 1`, "State.StateChange")},

		// Commands.
		{name: "unknown command", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"C2C.CallbackAfterSendMessage"}}}},
			want: []Finding{cmd(0, `unknown command "C2C.CallbackAfterSendMessage" (did you mean "C2C.CallbackAfterSendMsg"?): no callback has it, so this entry selects nothing; if Tencent IM added it, list it in tencent.extra_commands`, true)}},
		{name: "unknown command, wrong case", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"Group.*", "c2c.callbackaftersendmsg"}}}},
			want: []Finding{cmd(1, `unknown command "c2c.callbackaftersendmsg" (did you mean "C2C.CallbackAfterSendMsg"?): no callback has it, so this entry selects nothing; if Tencent IM added it, list it in tencent.extra_commands`, true)}},
		{name: "unknown command, nothing close", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"Chat.Message"}}}},
			want: []Finding{cmd(0, `unknown command "Chat.Message": no callback has it, so this entry selects nothing; if Tencent IM added it, list it in tencent.extra_commands`, true)}},
		{name: "an extra command is known, its fields are not",
			routes: route(`GroupId == "x" && Anything != 0`, "C2C.CallbackAfterSendMsg", "Chat.Message"), extra: []string{"Chat.Message"},
			want: []Finding{w(19, "unknown field Anything: no known Tencent IM callback carries it")}},
		{name: "glob matching nothing", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"Group.*", "Chat.*"}}}},
			want: []Finding{cmd(1, `"Chat.*" matches no known command`, false)}},
		{name: "glob matching an extra command", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"Chat.*"}}}},
			extra: []string{"Chat.Message"}},
		{name: "broken expression is left to Compile", routes: route(`To_Acount ==`, "C2C.*")},
		{name: "every finding, in order",
			routes: []RouteSpec{
				{Name: "fine", Filter: Filter{Commands: []string{"Group.*"}, When: `GroupId startsWith "@TGS#"`}},
				{Name: "two", Filter: Filter{Commands: []string{"C2C.CallbackAfterSendMessage"}, When: `Fromm_Account == "a"`}},
			},
			responds: []RespondSpec{{Filter: Filter{Commands: []string{"C2C.CallbackBeforeSendMsg"}, When: `GroupId != ""`}, From: "d"}},
			want: []Finding{
				{Kind: "route", Index: 1, Field: "commands", Message: `unknown command "C2C.CallbackAfterSendMessage" (did you mean "C2C.CallbackAfterSendMsg"?): no callback has it, so this entry selects nothing; if Tencent IM added it, list it in tencent.extra_commands`, Error: true},
				{Kind: "route", Index: 1, Field: "when", Line: 1, Column: 1, Message: "unknown field Fromm_Account: no known Tencent IM callback carries it (did you mean From_Account?)"},
				{Kind: "respond", Index: 0, Field: "when", Line: 1, Column: 1, Message: "GroupId is not carried by C2C.CallbackBeforeSendMsg: it is always nil on this route", Error: true},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Lint(tt.routes, tt.responds, tt.extra)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLintBody(t *testing.T) {
	tests := []struct {
		src  string
		want []Finding
	}{
		{`{"to": To_Acount, "text": text, "app": query.SdkAppid}`,
			[]Finding{{Kind: "body", Field: "body", Line: 1, Column: 8, Message: "unknown field To_Acount: no known Tencent IM callback carries it (did you mean To_Account?)"}}},
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
