package rules

import (
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// BenchmarkMatch is the per-callback cost of the rules on the hot path: decode the body,
// build the event, evaluate two routes (one of them with an expression on every callback).
func BenchmarkMatch(b *testing.B) {
	body := fanouttest.Payload(b, "C2C.CallbackAfterSendMsg.json")
	s := compile(b, []RouteSpec{
		{Name: "a", Filter: Filter{When: `SendMsgResult != 0 || To_Account in ["Jonh","alice"]`}, To: []string{"a"}},
		{Name: "b", Filter: Filter{When: `CallbackCommand == "C2C.CallbackAfterSendMsg"`}, To: []string{"b"}},
	}, nil)
	query := map[string]string{"SdkAppid": "1400000000", "CallbackCommand": "C2C.CallbackAfterSendMsg"}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		fields, err := ParseBody(body)
		if err != nil {
			b.Fatal(err)
		}
		m := s.Match(NewEvent("1400000000", "C2C.CallbackAfterSendMsg", query, fields), nil)
		if len(m.Deliveries) != 2 {
			b.Fatalf("deliveries %+v", m.Deliveries)
		}
	}
}
