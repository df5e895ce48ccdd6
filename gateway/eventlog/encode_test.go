package eventlog

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestEncodeAsJSON checks the hand-written encoding against encoding/json: every field an
// Entry has, with strings that need escaping, reads back the same.
func TestEncodeAsJSON(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	odd := "quote \" backslash \\ newline \n tab \t nul \x00 bell \x07 <tag> & é \u2028 invalid \xff end"
	full := Entry{At: at, Kind: KindReceived, RequestID: odd, SdkAppID: "1400000000", Command: "C2C.CallbackAfterSendMsg",
		Query: "SdkAppid=1400000000&x=" + odd, Routes: []string{"all", odd}, Respond: "app",
		Deliveries: []Delivery{{Destination: "crm", Routes: []string{"all"}}, {Destination: "audit", Routes: []string{"vip", "all"}}},
		fields:     []Field{{Name: "MsgKey", Value: odd}, {Name: "To_Account", Value: "bob"}}, BodySize: 42,
		Destination: "audit", Attempt: 3, Status: 503, Result: "5xx", DurationMS: 1.25, Error: odd, RespondTo: true,
		Due: at.Add(time.Minute), Reason: odd, Reroute: true}
	for _, e := range []Entry{full, {At: at, Kind: KindAttempt, Destination: "crm", Attempt: 1, Status: 200, Result: "2xx"}, {Kind: KindDead}} {
		body := []byte("{\"raw\":  \"body\"}\n")
		data := encode(nil, &e, body)
		head, rest, _ := bytes.Cut(data, []byte{'\n'})
		var got Entry
		if err := json.Unmarshal(head, &got); err != nil {
			t.Fatalf("%s: %v", head, err)
		}
		want := e
		want.At, want.Due = e.At.UTC(), e.Due.UTC()
		if e.Due.IsZero() {
			want.Due = time.Time{}
		}
		if len(e.fields) > 0 {
			want.Fields = map[string]string{}
			for _, f := range e.fields {
				want.Fields[f.Name] = f.Value
			}
		}
		want.fields = nil
		// encoding/json reads invalid UTF-8 as U+FFFD, as it writes it.
		wantJSON, _ := json.Marshal(want)
		var wantBack Entry
		_ = json.Unmarshal(wantJSON, &wantBack)
		if !reflect.DeepEqual(got, wantBack) {
			t.Errorf("read back\n%+v\nwant\n%+v\nfrom %s", got, wantBack, head)
		}
		if e.Kind == KindReceived && !bytes.Equal(rest, body) {
			t.Errorf("body %q, want %q", rest, body)
		}
		if k := kindOf(data); k != e.Kind {
			t.Errorf("kindOf = %q, want %q", k, e.Kind)
		}
	}
}
