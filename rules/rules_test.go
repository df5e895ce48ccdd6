package rules

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// c2cBody is a C2C.CallbackAfterSendMsg body with a failed send, two text elements and a
// MsgSeq above 2^53.
const c2cBody = `{
  "CallbackCommand": "C2C.CallbackAfterSendMsg",
  "From_Account": "jared",
  "To_Account": "Jonh",
  "MsgSeq": 9007199254740993,
  "MsgRandom": 2837546,
  "SendMsgResult": 20006,
  "ErrorInfo": "blocked",
  "Price": 1.5,
  "MsgBody": [
    {"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}},
    {"MsgType": "TIMFaceElem", "MsgContent": {"Index": 1}},
    {"MsgType": "TIMTextElem", "MsgContent": {"Text": "call me"}}
  ]
}`

var c2cQuery = map[string]string{"SdkAppid": "1400000000", "CallbackCommand": "C2C.CallbackAfterSendMsg",
	"OptPlatform": "RESTAPI", "ClientIP": "203.0.113.9"}

func newEvent(t testing.TB, appID, command string, query map[string]string, body string) *Event {
	t.Helper()
	fields, err := ParseBody([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return NewEvent(appID, command, query, fields)
}

// compile compiles specs that must compile.
func compile(t testing.TB, routes []RouteSpec, responds []RespondSpec) *Set {
	t.Helper()
	s, errs := Compile(routes, responds)
	if len(errs) > 0 {
		for _, e := range errs {
			t.Errorf("compile: %v (line %d, column %d)", e, e.Line, e.Column)
		}
		t.FailNow()
	}
	return s
}

// when is one route, "r" to "d", with the expression w.
func when(w string) []RouteSpec {
	return []RouteSpec{{Name: "r", Filter: Filter{When: w}, To: []string{"d"}}}
}

// TestWhenEnvironment evaluates expressions over the environment docs/rules.md describes.
func TestWhenEnvironment(t *testing.T) {
	ev := newEvent(t, "1400000000", "C2C.CallbackAfterSendMsg", c2cQuery, c2cBody)
	tests := []struct {
		when string
		want bool
	}{
		{`From_Account == "jared"`, true},
		{`From_Account == "Jonh"`, false},
		{`SendMsgResult != 0`, true},
		{`SendMsgResult == 20006`, true},
		{`To_Account in ["Jonh", "alice"]`, true},
		{`MsgSeq == 9007199254740993`, true},
		{`MsgSeq == 9007199254740992`, false},
		{`MsgSeq > 9007199254740992`, true},
		{`Price == 1.5`, true},
		{`query.SdkAppid == "1400000000"`, true},
		{`query.OptPlatform == "RESTAPI" && query.ClientIP startsWith "203.0.113."`, true},
		{`query.CallbackCommand == CallbackCommand`, true},
		{`text == "red packet\ncall me"`, true},
		{`text contains "packet"`, true},
		{`text matches "(?m)^call"`, true},
		{`"blocked" in split(ErrorInfo, " ")`, true},
		{`len(MsgBody) == 3`, true},
		{`MsgBody[0].MsgContent.Text == "red packet"`, true},
		{`any(MsgBody, .MsgType == "TIMFaceElem")`, true},
		{`all(MsgBody, .MsgType == "TIMTextElem")`, false},
		{`len(filter(MsgBody, .MsgType == "TIMTextElem")) == 2`, true},
		{`GroupId == nil`, true},    // absent: nil
		{`GroupId != 0`, true},      // the trap the linter warns about
		{`GroupId?.x == nil`, true}, // optional chaining on an absent field
		{`now().Year() > 2000`, true},
		{`let n = MsgRandom; n % 2 == 0`, true},
		{`true`, true},
		{`false`, false},
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			s := compile(t, when(tt.when), nil)
			m := s.Match(ev, func(kind, name string, err error) { t.Errorf("%s %s: %v", kind, name, err) })
			if got := len(m.Routes) == 1; got != tt.want {
				t.Errorf("matched = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMatchSamplePayload: the exact integers of the real sample body.
func TestMatchSamplePayload(t *testing.T) {
	fields, err := ParseBody(fanouttest.Payload(t, "C2C.CallbackAfterSendMsg.json"))
	if err != nil {
		t.Fatal(err)
	}
	ev := NewEvent("1400000000", "", nil, fields)
	s := compile(t, []RouteSpec{
		{Name: "seq", Filter: Filter{When: `MsgSeq == 48374 && SendMsgResult == 0 && text == "red packet"`}, To: []string{"a"}},
		{Name: "fail", Filter: Filter{When: `SendMsgResult != 0`}, To: []string{"b"}},
	}, nil)
	if m := s.Match(ev, nil); !slices.Equal(m.Routes, []string{"seq"}) {
		t.Errorf("routes %v", m.Routes)
	}
}

func TestMatch(t *testing.T) {
	route := func(name, w string, to ...string) RouteSpec {
		return RouteSpec{Name: name, Filter: Filter{When: w}, To: to}
	}
	cmds := func(r RouteSpec, commands ...string) RouteSpec { r.Commands = commands; return r }
	apps := func(r RouteSpec, apps ...string) RouteSpec { r.Apps = apps; return r }
	stop := func(r RouteSpec) RouteSpec { r.Stop = true; return r }
	respondFrom := func(from, w string, commands ...string) RespondSpec {
		return RespondSpec{Filter: Filter{When: w, Commands: commands}, From: from}
	}
	d := func(dest string, routes ...string) Delivery { return Delivery{Destination: dest, Routes: routes} }

	tests := []struct {
		name     string
		routes   []RouteSpec
		responds []RespondSpec
		app, cmd string // of the event; the body is c2cBody
		want     Match
	}{
		{name: "no filter matches everything",
			routes: []RouteSpec{route("all", "", "app")},
			want:   Match{Routes: []string{"all"}, Deliveries: []Delivery{d("app", "all")}}},
		{name: "no routes",
			want: Match{}},
		{name: "exact command",
			routes: []RouteSpec{cmds(route("c2c", "", "a"), "C2C.CallbackAfterSendMsg"), cmds(route("group", "", "b"), "Group.CallbackAfterSendMsg")},
			want:   Match{Routes: []string{"c2c"}, Deliveries: []Delivery{d("a", "c2c")}}},
		{name: "command globs",
			routes: []RouteSpec{cmds(route("star", "", "a"), "C2C.*"), cmds(route("question", "", "b"), "C2C.CallbackAfterSendMs?"),
				cmds(route("class", "", "c"), "[BC]2C.Callback*"), cmds(route("group", "", "d"), "Group.*"),
				cmds(route("list", "", "e"), "Group.*", "*.CallbackAfterSendMsg")},
			want: Match{Routes: []string{"star", "question", "class", "list"},
				Deliveries: []Delivery{d("a", "star"), d("b", "question"), d("c", "class"), d("e", "list")}}},
		{name: "a glob does not cross the whole name",
			routes: []RouteSpec{cmds(route("prefix", "", "a"), "C2C"), cmds(route("case", "", "b"), "c2c.*")},
			want:   Match{}},
		{name: "the command from the query wins over the body's",
			routes: []RouteSpec{cmds(route("group", "", "a"), "Group.*")}, cmd: "Group.CallbackAfterSendMsg",
			want: Match{Routes: []string{"group"}, Deliveries: []Delivery{d("a", "group")}}},
		{name: "apps",
			routes: []RouteSpec{apps(route("mine", "", "a"), "1400000000", "1400000001"), apps(route("other", "", "b"), "1400000002")},
			want:   Match{Routes: []string{"mine"}, Deliveries: []Delivery{d("a", "mine")}}},
		{name: "apps and commands filter before the expression runs",
			routes: []RouteSpec{apps(route("other-app", `SendMsgResult > "x"`, "a"), "1"), cmds(route("other-cmd", `SendMsgResult > "x"`, "b"), "Group.*")},
			want:   Match{}},
		{name: "every matching route delivers",
			routes: []RouteSpec{route("a", "", "app"), route("b", "false", "x"), route("c", `From_Account == "jared"`, "audit")},
			want:   Match{Routes: []string{"a", "c"}, Deliveries: []Delivery{d("app", "a"), d("audit", "c")}}},
		{name: "stop",
			routes: []RouteSpec{route("a", "", "app"), stop(route("b", "", "audit")), route("c", "", "bot")},
			want:   Match{Routes: []string{"a", "b"}, Deliveries: []Delivery{d("app", "a"), d("audit", "b")}}},
		{name: "stop on a route that does not match",
			routes: []RouteSpec{stop(route("a", "false", "app")), route("b", "", "audit")},
			want:   Match{Routes: []string{"b"}, Deliveries: []Delivery{d("audit", "b")}}},
		{name: "a destination named by several routes is delivered once",
			routes: []RouteSpec{route("failed", "SendMsgResult != 0", "bot", "audit"), route("vip", `To_Account in ["Jonh"]`, "audit"), route("all", "", "app", "audit")},
			want: Match{Routes: []string{"failed", "vip", "all"},
				Deliveries: []Delivery{d("bot", "failed"), d("audit", "failed", "vip", "all"), d("app", "all")}}},
		{name: "a destination named twice by one route",
			routes: []RouteSpec{route("r", "", "a", "a")},
			want:   Match{Routes: []string{"r"}, Deliveries: []Delivery{d("a", "r")}}},
		{name: "the respond rule's destination gets no async copy",
			routes:   []RouteSpec{route("all", "", "app", "audit")},
			responds: []RespondSpec{respondFrom("app", "", "C2C.*")},
			want: Match{Routes: []string{"all"}, Deliveries: []Delivery{d("audit", "all")},
				Respond: &RespondSpec{Filter: Filter{Commands: []string{"C2C.*"}}, From: "app"}}},
		{name: "first matching respond rule wins",
			routes: []RouteSpec{route("all", "", "app", "moderation")},
			responds: []RespondSpec{respondFrom("nobody", "false"), respondFrom("moderation", `text contains "packet"`),
				respondFrom("app", "")},
			want: Match{Routes: []string{"all"}, Deliveries: []Delivery{d("app", "all")},
				Respond: &RespondSpec{Filter: Filter{When: `text contains "packet"`}, From: "moderation"}, RespondIndex: 1}},
		{name: "no respond rule matches",
			routes:   []RouteSpec{route("all", "", "app")},
			responds: []RespondSpec{respondFrom("app", "", "C2C.CallbackBeforeSendMsg")},
			want:     Match{Routes: []string{"all"}, Deliveries: []Delivery{d("app", "all")}}},
		{name: "respond rules do not depend on routes",
			routes:   []RouteSpec{route("none", "false", "app")},
			responds: []RespondSpec{respondFrom("app", "")},
			want:     Match{Respond: &RespondSpec{From: "app"}}},
		{name: "respond rules are not cut short by stop",
			routes:   []RouteSpec{stop(route("first", "", "audit")), route("second", "", "app")},
			responds: []RespondSpec{respondFrom("app", "")},
			want:     Match{Routes: []string{"first"}, Deliveries: []Delivery{d("audit", "first")}, Respond: &RespondSpec{From: "app"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := cmpOr(tt.app, "1400000000")
			ev := newEvent(t, app, tt.cmd, c2cQuery, c2cBody)
			s := compile(t, tt.routes, tt.responds)
			got := s.Match(ev, func(kind, name string, err error) { t.Errorf("%s %s: %v", kind, name, err) })
			if !sameMatch(got, tt.want) {
				t.Errorf("got  %s\nwant %s", showMatch(got), showMatch(tt.want))
			}
		})
	}
}

// sameMatch compares matches, an empty list equal to none.
func sameMatch(a, b Match) bool {
	for _, m := range []*Match{&a, &b} {
		if len(m.Routes) == 0 {
			m.Routes = nil
		}
		if len(m.Deliveries) == 0 {
			m.Deliveries = nil
		}
	}
	return reflect.DeepEqual(a, b)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func showMatch(m Match) string {
	s := fmt.Sprintf("routes %q deliveries %+v", m.Routes, m.Deliveries)
	if m.Respond != nil {
		s += fmt.Sprintf(" respond[%d] %+v", m.RespondIndex, *m.Respond)
	}
	return s
}

// TestRunTimeErrors: a rule that fails at run time does not match, the others still do,
// and the hook hears of it with the route's name.
func TestRunTimeErrors(t *testing.T) {
	tests := []struct {
		name, when, err string
	}{
		{"type mismatch", `SendMsgResult > "x"`, "invalid operation: int64 > string"},
		{"method on nil", `GroupId.Trim() == ""`, "cannot fetch Trim from <nil>"},
		{"field of nil", `Info.Action == 1`, "cannot fetch Action from <nil>"},
		{"builtin on nil", `upper(GroupId) == "X"`, "interface conversion"},
		{"not a boolean at run time", `SendMsgResult != 0 ? From_Account : true`, "invalid operation: bool(string)"},
		{"index out of range", `MsgBody[7].MsgType == "x"`, "index out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, errs := Compile([]RouteSpec{
				{Name: "broken", Filter: Filter{When: tt.when}, To: []string{"a", "b"}},
				{Name: "fine", To: []string{"b"}},
			}, []RespondSpec{{Filter: Filter{When: tt.when}, From: "a"}, {From: "b"}})
			if len(errs) > 0 {
				t.Fatalf("compile: %v", errs[0])
			}
			var heard []string
			m := s.Match(newEvent(t, "1", "", nil, c2cBody), func(kind, name string, err error) {
				if !strings.Contains(err.Error(), tt.err) {
					t.Errorf("%s %s: error %q does not say %q", kind, name, err, tt.err)
				}
				heard = append(heard, kind+" "+name)
			})
			if want := []string{"route broken", "respond respond[0]"}; !slices.Equal(heard, want) {
				t.Errorf("hook heard %q, want %q", heard, want)
			}
			want := Match{Routes: []string{"fine"}, Respond: &RespondSpec{From: "b"}, RespondIndex: 1}
			if !sameMatch(m, want) {
				t.Errorf("got %s, want %s", showMatch(m), showMatch(want))
			}
			// Without a hook, the outcome is the same.
			if m2 := s.Match(newEvent(t, "1", "", nil, c2cBody), nil); !sameMatch(m2, want) {
				t.Errorf("without a hook: %s", showMatch(m2))
			}
		})
	}
}

// TestCompileErrors: every problem of every spec, in order, located inside the expression.
func TestCompileErrors(t *testing.T) {
	type want struct {
		kind         string
		index        int
		field        string
		line, column int
		msg          string
	}
	tests := []struct {
		name     string
		routes   []RouteSpec
		responds []RespondSpec
		want     []want
	}{
		{name: "a body field is not a condition", routes: when(`From_Account`),
			want: []want{{"route", 0, "when", 1, 1, "expected bool, but From_Account is a value, not a condition: compare it (e.g. From_Account != nil)"}}},
		{name: "a member is not a condition", routes: when(`  Info.Action`),
			want: []want{{"route", 0, "when", 1, 3, "expected bool, but Info.Action is a value, not a condition: compare it (e.g. Info.Action != nil)"}}},
		{name: "an element is not a condition", routes: when(`MsgBody[0]`),
			want: []want{{"route", 0, "when", 1, 1, "expected bool, but MsgBody[0] is a value, not a condition: compare it (e.g. MsgBody[0] != nil)"}}},
		{name: "optional chaining is not a condition", routes: when(`GroupId?.x`),
			want: []want{{"route", 0, "when", 1, 1, "expected bool, but GroupId?.x is a value, not a condition: compare it (e.g. GroupId?.x != nil)"}}},
		{name: "a string", routes: when(`"yes"`),
			want: []want{{"route", 0, "when", 0, 0, "expected bool, but got string"}}},
		{name: "a number", routes: when(`1 + 1`),
			want: []want{{"route", 0, "when", 0, 0, "expected bool, but got int"}}},
		{name: "a query parameter", routes: when(`query.SdkAppid`),
			want: []want{{"route", 0, "when", 0, 0, "expected bool, but got string"}}},
		{name: "text", routes: when(`text`),
			want: []want{{"route", 0, "when", 0, 0, "expected bool, but got string"}}},
		{name: "syntax", routes: when(`SendMsgResult != 0 && && true`),
			want: []want{{"route", 0, "when", 1, 23, `unexpected token Operator("&&")`}}},
		{name: "second line", routes: when("SendMsgResult != 0 ||\n  SendMsgResult > > 1"),
			want: []want{{"route", 0, "when", 2, 19, `unexpected token Operator(">")`}}},
		{name: "unknown function", routes: when(`From_Account == "a" || lowercase(To_Account) == "b" || uper(To_Account) == "B"`),
			want: []want{{"route", 0, "when", 1, 24, "unknown function lowercase"}}},
		{name: "unknown function, with a suggestion", routes: when(`uper(To_Account) == "B"`),
			want: []want{{"route", 0, "when", 1, 1, "unknown function uper (did you mean upper?)"}}},
		{name: "bad glob", routes: []RouteSpec{{Name: "r", Filter: Filter{Commands: []string{"C2C.*", "C2C.[x"}}}},
			want: []want{{"route", 0, "commands", 0, 0, `bad glob "C2C.[x": syntax error in pattern`}}},
		{name: "every problem, in order",
			routes: []RouteSpec{
				{Name: "ok", Filter: Filter{When: "true"}},
				{Name: "two", Filter: Filter{Commands: []string{"["}, When: "From_Account =="}},
				{Name: "three", Filter: Filter{When: "To_Account"}},
			},
			responds: []RespondSpec{{Filter: Filter{When: `"x"`}}, {Filter: Filter{When: "true"}}, {Filter: Filter{When: ")"}}},
			want: []want{
				{"route", 1, "commands", 0, 0, `bad glob "[": syntax error in pattern`},
				{"route", 1, "when", 1, 15, "unexpected token EOF"},
				{"route", 2, "when", 1, 1, "expected bool, but To_Account is a value, not a condition: compare it (e.g. To_Account != nil)"},
				{"respond", 0, "when", 0, 0, "expected bool, but got string"},
				{"respond", 2, "when", 1, 1, `unexpected token Bracket(")")`},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, errs := Compile(tt.routes, tt.responds)
			if s != nil {
				t.Errorf("a Set with errors")
			}
			var got []want
			for _, e := range errs {
				got = append(got, want{e.Kind, e.Index, e.Field, e.Line, e.Column, e.Err.Error()})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}

	t.Run("Error", func(t *testing.T) {
		_, errs := Compile(nil, []RespondSpec{{}, {Filter: Filter{When: "1"}}})
		if len(errs) != 1 || errs[0].Error() != "respond 1: when: expected bool, but got int" {
			t.Fatalf("got %v", errs)
		}
	})
}

// TestConditionsCompile: boolean expressions of every shape compile.
func TestConditionsCompile(t *testing.T) {
	for _, w := range []string{
		`true`, `!false`, `not (SendMsgResult == 0)`, `From_Account in ["a", "b"]`, `From_Account matches "^a"`,
		`SendMsgResult == 0 ? true : false`, `let x = From_Account; x == "a"`, `any(MsgBody, .MsgType == "TIMTextElem")`,
		`GroupId == nil`, `"  " != ""`, `text contains "x"`, `query.SdkAppid == "1"`, "  \n  ",
	} {
		t.Run(w, func(t *testing.T) { compile(t, when(w), nil) })
	}
}

// TestMatchConcurrent runs one Set from many goroutines, each with its own events (run with
// -race): the Set is compiled once and shared.
func TestMatchConcurrent(t *testing.T) {
	s := compile(t, []RouteSpec{
		{Name: "text", Filter: Filter{When: `text contains "packet"`}, To: []string{"a"}},
		{Name: "fail", Filter: Filter{When: `SendMsgResult != 0`}, To: []string{"a", "b"}},
	}, []RespondSpec{{Filter: Filter{When: `From_Account == "jared"`}, From: "b"}})
	want := Match{Routes: []string{"text", "fail"}, Deliveries: []Delivery{{Destination: "a", Routes: []string{"text", "fail"}}},
		Respond: &RespondSpec{Filter: Filter{When: `From_Account == "jared"`}, From: "b"}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if m := s.Match(newEvent(t, "1", "", nil, c2cBody), nil); !sameMatch(m, want) {
					t.Errorf("got %s", showMatch(m))
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestIdentifiers(t *testing.T) {
	tests := []struct {
		src  string
		want []string
	}{
		{`From_Account == "a"`, []string{"From_Account"}},
		{`query.SdkAppid == "1" && Info.Action == 1`, []string{"Info", "query"}},
		{`let x = A; x + B + A`, []string{"A", "B"}},
		{`any(MsgBody, .MsgType == "TIMTextElem") && text != ""`, []string{"MsgBody", "text"}},
		{`len(GroupId) > 0 || upper(To_Account) == "B"`, []string{"GroupId", "To_Account"}},
		{`1 + 2`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			got, err := ParseIdentifiers(tt.src)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := ParseIdentifiers("a =="); err == nil {
		t.Errorf("no error for a broken expression")
	}
}
