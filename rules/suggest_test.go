package rules

import (
	"testing"

	"github.com/fanout-gw/fanout/gateway/tencentim"
)

func TestSuggest(t *testing.T) {
	var commands []string
	for _, c := range tencentim.Commands() {
		commands = append(commands, c.Name)
	}
	fields := tencentim.KnownFields()
	tests := []struct {
		name       string
		candidates []string
		want       string
		ok         bool
	}{
		{"To_Acount", fields, "To_Account", true},
		{"Form_Account", fields, "From_Account", true}, // adjacent swap: one edit
		{"groupid", fields, "GroupId", true},           // case only
		{"SendMsgResults", fields, "SendMsgResult", true},
		{"C2C.CallbackAfterSendMessage", commands, "C2C.CallbackAfterSendMsg", true},
		{"Group.CallbackAfterSendMsgException", commands, "Group.CallbackSendMsgException", true},
		{"State.StateChanged", commands, "State.StateChange", true},
		{"Banana", fields, "", false},
		{"Banana", commands, "", false},
		{"Tipe", []string{"Type", "Name"}, "Type", true},
		{"Name", []string{"Type"}, "", false}, // two edits in four characters: another word
		{"To_Acount", nil, "", false},
		{"", fields, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Suggest(tt.name, tt.candidates)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Suggest(%q) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"", "abc", 3},
		{"abc", "abc", 0},
		{"abc", "acb", 1}, // swap
		{"to_acount", "to_account", 1},
		{"kitten", "sitting", 3},
		{"ca", "abc", 3}, // optimal string alignment: no edit of a swapped pair
		{"message", "msg", 4},
	}
	for _, tt := range tests {
		if got := distance([]rune(tt.a), []rune(tt.b)); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
