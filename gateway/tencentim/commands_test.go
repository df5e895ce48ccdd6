package tencentim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestPayloadsAreKnown checks the table against every sample body: its command is known
// and every top-level key is in the command's Fields. A missing folder fails the test
// rather than skipping it, since a silent skip would hide a table that drifted.
func TestPayloadsAreKnown(t *testing.T) {
	for _, file := range fanouttest.PayloadFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]json.RawMessage
			if err := json.Unmarshal(data, &body); err != nil {
				t.Fatalf("not a JSON object: %v", err)
			}
			var command string
			if err := json.Unmarshal(body["CallbackCommand"], &command); err != nil || command == "" {
				t.Fatalf("no CallbackCommand string in the body")
			}
			if base := filepath.Base(file); !strings.HasPrefix(base, command+".") {
				t.Errorf("file %s holds a %s body", base, command)
			}
			info, ok := LookupCommand(command)
			if !ok {
				t.Fatalf("command %s is not known", command)
			}
			if info.Fields == nil {
				t.Fatalf("command %s has a sample body but unknown Fields", command)
			}
			for key := range body {
				if !slices.Contains(info.Fields, key) {
					t.Errorf("%s: top-level key %s is not in Fields", command, key)
				}
			}
		})
	}
}

func TestCommandsTable(t *testing.T) {
	cmds := Commands()
	if got := cmds[0].Name; got != "Alert.RequestOverLimit" {
		t.Errorf("first command = %s, want Alert.RequestOverLimit (the order of Tencent's command list)", got)
	}
	if got := cmds[len(cmds)-1].Name; got != "Push.AllMemberPush" {
		t.Errorf("last command = %s, want Push.AllMemberPush", got)
	}
	seen := map[string]bool{}
	for _, c := range cmds {
		if seen[c.Name] {
			t.Errorf("command %s listed twice", c.Name)
		}
		seen[c.Name] = true
		if !strings.Contains(c.Name, ".") {
			t.Errorf("command %q has no category prefix", c.Name)
		}
		if c.Fields != nil && len(c.Fields) == 0 {
			t.Errorf("command %s: an empty Fields would say the body is known to be empty; use nil for unknown", c.Name)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(c.Fields)))) != len(c.Fields) {
			t.Errorf("command %s lists a field twice", c.Name)
		}
	}

	// Changing what Commands and LookupCommand return must not change the table.
	cmds[0].Fields[0] = "Changed"
	info, _ := LookupCommand("C2C.CallbackAfterSendMsg")
	info.Fields[0] = "Changed"
	if Commands()[0].Fields[0] == "Changed" || KnownField("Changed") {
		t.Error("callers can change the table through returned slices")
	}
}

func TestLookupCommand(t *testing.T) {
	tests := []struct {
		name   string
		ok     bool
		before bool
	}{
		{"C2C.CallbackAfterSendMsg", true, false},
		{"C2C.CallbackBeforeSendMsg", true, true},
		{"Group.CallbackBeforeSendMsg", true, true},
		{"Group.CallbackBeforeCreateGroup", true, true},
		{"Group.CallbackBeforeApplyJoinGroup", true, true},
		{"Group.CallbackBeforeInviteJoinGroup", true, true},
		{"Group.CallbackBeforeCreateTopic", true, true},
		{"Sns.CallbackPrevFriendAdd", true, true},
		{"Sns.CallbackPrevFriendResponse", true, true},
		{"OfficialAccount.CallbackBeforeSendMsg", true, true},
		{"Group.CallbackSendMsgException", true, false},
		{"State.StateChange", true, false},
		{"Follow.CallbackAfterFollowAdd", true, false},
		{"Bot.OnC2CMessage", true, false},
		{"Push.OfflinePush", true, false},
		{"C2C.CallbackAfterMsgWithDraw", true, false},
		{"C2C.CallbackAfterMsgWithdraw", false, false}, // Tencent's capital D matters
		{"c2c.callbackaftersendmsg", false, false},
		{"C2C.CallbackAfterSendMessage", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, ok := LookupCommand(tt.name)
			if ok != tt.ok {
				t.Fatalf("LookupCommand(%q) ok = %v, want %v", tt.name, ok, tt.ok)
			}
			if ok && (info.Name != tt.name || info.Before != tt.before) {
				t.Errorf("LookupCommand(%q) = %s before=%v, want before=%v", tt.name, info.Name, info.Before, tt.before)
			}
		})
	}
}

func TestCommandsWithField(t *testing.T) {
	tests := []struct {
		field string
		want  []string
	}{
		{"SendMsgResult", []string{"C2C.CallbackAfterSendMsg", "Bot.OnC2CMessage"}},
		{"Info", []string{"State.StateChange"}},
		{"KickedDevice", []string{"State.StateChange"}},
		{"Events", []string{"Push.OfflinePush", "Push.AllMemberPush"}},
		{"To_Acount", nil},
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			if got := CommandsWithField(tt.field); !slices.Equal(got, tt.want) {
				t.Errorf("CommandsWithField(%q) = %v, want %v", tt.field, got, tt.want)
			}
		})
	}

	t.Run("GroupId", func(t *testing.T) {
		got := CommandsWithField("GroupId")
		for _, name := range []string{
			"Group.CallbackBeforeSendMsg", "Group.CallbackAfterSendMsg",
			"Group.CallbackAfterNewMemberJoin", "Group.CallbackAfterMemberExit",
			"Group.CallbackSendMsgException", "Group.CallbackAfterRecallMsg",
			"Group.CallbackBeforeInviteJoinGroup", "Bot.OnGroupMessage",
		} {
			if !slices.Contains(got, name) {
				t.Errorf("GroupId: %s missing from %v", name, got)
			}
		}
		for _, name := range got {
			if strings.HasPrefix(name, "C2C.") || strings.HasPrefix(name, "Sns.") {
				t.Errorf("GroupId: %s is not a group command", name)
			}
		}
	})
}

func TestCommonField(t *testing.T) {
	tests := []struct {
		field string
		want  bool
	}{
		{"CallbackCommand", true},
		{"GroupId", false},
		{"EventTime", false},
		{"Events", false},
		{"To_Account", false},
		{"Nope", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			if got := CommonField(tt.field); got != tt.want {
				t.Errorf("CommonField(%q) = %v, want %v", tt.field, got, tt.want)
			}
		})
	}
}

func TestKnownFields(t *testing.T) {
	fields := KnownFields()
	if !slices.IsSorted(fields) {
		t.Error("KnownFields is not sorted")
	}
	if len(slices.Compact(slices.Clone(fields))) != len(fields) {
		t.Error("KnownFields has repeats")
	}
	for _, f := range []string{"CallbackCommand", "To_Account", "SendMsgResult", "GroupId", "Info", "MsgBody"} {
		if !slices.Contains(fields, f) || !KnownField(f) {
			t.Errorf("%s should be a known field", f)
		}
	}
	for _, f := range []string{"To_Acount", "Banana", "query", "text", ""} {
		if KnownField(f) {
			t.Errorf("KnownField(%q) = true", f)
		}
	}
}
