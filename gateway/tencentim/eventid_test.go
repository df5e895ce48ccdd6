package tencentim

import (
	"encoding/hex"
	"testing"
)

func TestEventID(t *testing.T) {
	// Pinned: changing the algorithm would let callbacks received around a deploy be
	// delivered twice. Computed independently: sha256 over (8-byte big-endian length, bytes)
	// for each part, first 16 bytes in hex.
	t.Run("pinned value", func(t *testing.T) {
		got := EventID("1400000000", "C2C.CallbackAfterSendMsg", []byte(`{"MsgKey":"1_2_3"}`))
		if want := "9fcf027725e9a0eb336a99731168987d"; got != want {
			t.Errorf("EventID = %s, want %s", got, want)
		}
	})

	type parts struct {
		app, command string
		body         []byte
	}
	tests := []struct {
		name string
		a, b parts
		same bool
	}{
		{"same callback again", parts{"1", "X", []byte("{}")}, parts{"1", "X", []byte("{}")}, true},
		{"nil and empty body", parts{"1", "X", nil}, parts{"1", "X", []byte{}}, true},
		{"other app", parts{"1", "X", []byte("{}")}, parts{"2", "X", []byte("{}")}, false},
		{"other command", parts{"1", "X", []byte("{}")}, parts{"1", "Y", []byte("{}")}, false},
		{"other body", parts{"1", "X", []byte(`{"a":1}`)}, parts{"1", "X", []byte(`{"a":2}`)}, false},
		{"app and command boundary", parts{"1", "2X", nil}, parts{"12", "X", nil}, false},
		{"command and body boundary", parts{"1", "XY", []byte("Z")}, parts{"1", "X", []byte("YZ")}, false},
		{"NUL inside a part", parts{"1\x00", "X", nil}, parts{"1", "\x00X", nil}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := EventID(tt.a.app, tt.a.command, tt.a.body)
			b := EventID(tt.b.app, tt.b.command, tt.b.body)
			for _, id := range []string{a, b} {
				if _, err := hex.DecodeString(id); err != nil || len(id) != 32 {
					t.Fatalf("EventID = %q, want 32 hex digits", id)
				}
			}
			if (a == b) != tt.same {
				t.Errorf("EventID(%+v) = %s, EventID(%+v) = %s, want same=%v", tt.a, a, tt.b, b, tt.same)
			}
		})
	}
}
