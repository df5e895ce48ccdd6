package tencentim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestPayloadKinds checks the kinds table against every sample body: each top-level value
// whose kind is known has that kind.
func TestPayloadKinds(t *testing.T) {
	for _, file := range fanouttest.PayloadFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			if err := json.Unmarshal(data, &body); err != nil {
				t.Fatal(err)
			}
			command, _ := body["CallbackCommand"].(string)
			for key, v := range body {
				want, ok := FieldKind(command, key)
				if !ok {
					continue
				}
				if got := kindOf(v); got != want {
					t.Errorf("%s: %s is a %s, the table says %s", command, key, got, want)
				}
			}
		})
	}
}

func kindOf(v any) Kind {
	switch v.(type) {
	case float64:
		return KindNumber
	case string:
		return KindString
	case []any:
		return KindList
	case map[string]any:
		return KindObject
	}
	return "other"
}

func TestFieldKindTable(t *testing.T) {
	for field := range fieldKinds {
		if !KnownField(field) {
			t.Errorf("fieldKinds names %s, which no command carries", field)
		}
	}
	for command, fields := range kindExceptions {
		for field := range fields {
			if _, ok := FieldKind(command, field); !ok {
				t.Errorf("kindExceptions: %s does not carry %s", command, field)
			}
		}
	}
	tests := []struct {
		command, field string
		want           Kind
		ok             bool
	}{
		{"C2C.CallbackAfterSendMsg", "SendMsgResult", KindNumber, true},
		{"C2C.CallbackAfterSendMsg", "To_Account", KindString, true},
		{"Follow.CallbackAfterFollowDelete", "To_Account", KindList, true},
		{"C2C.CallbackBeforeSendMsg", "SendMsgResult", "", false}, // not carried
		{"Group.CallbackAfterSendMsg", "EventTime", "", false},    // number or string
		{"Chat.Message", "From_Account", "", false},               // unknown command
	}
	for _, tt := range tests {
		if got, ok := FieldKind(tt.command, tt.field); got != tt.want || ok != tt.ok {
			t.Errorf("FieldKind(%s, %s) = %q, %v; want %q, %v", tt.command, tt.field, got, ok, tt.want, tt.ok)
		}
	}
}
