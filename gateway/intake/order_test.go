package intake

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-gw/fanout/rules"
)

// TestOrderKeys: the jobs of a destination with order_by carry the callback's key; a key
// that cannot be computed sends the callback to the fallback lane, counted and logged;
// other destinations' jobs are not ordered.
func TestOrderKeys(t *testing.T) {
	f := newFixture(t, defaultRoutes, nil, nil)
	f.metrics.OrderKeyErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "k"}, []string{"destination"})
	f.in.metrics = f.metrics
	key, err := rules.CompileKey(`GroupId ?? (From_Account + ":" + To_Account)`)
	if err != nil {
		t.Fatal(err)
	}
	f.live.OrderBy = map[string]*rules.Key{"app-backend": key}

	bodies := []string{
		`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh","SendMsgResult":1}`,
		`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#1","From_Account":"jared"}`,
		`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":7,"SendMsgResult":0}`,
	}
	for i, b := range bodies {
		cmd := afterMsg
		if i == 1 {
			cmd = "Group.CallbackAfterSendMsg"
		}
		if a := f.receive(t, query(app, cmd), []byte(b)); a.Status != http.StatusOK {
			t.Fatalf("callback %d: %d %s", i, a.Status, a.Body)
		}
	}
	var got []string
	for _, j := range f.store.stored() {
		got = append(got, j.Destination+" ordered="+map[bool]string{true: "yes", false: "no"}[j.Ordered]+" key="+j.Key)
	}
	want := []string{
		"app-backend ordered=yes key=jared:Jonh",
		"audit ordered=no key=",
		"app-backend ordered=yes key=@TGS#1",
		"app-backend ordered=yes key=", // string + int fails: the fallback lane
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("jobs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := f.count(t, f.metrics.OrderKeyErrors, "app-backend"); n != 1 {
		t.Errorf("fanout_order_key_errors_total{app-backend} = %g, want 1", n)
	}
	if !strings.Contains(f.log.String(), "order_by failed at run time: the callback goes to the fallback lane") {
		t.Errorf("no log of the failed key:\n%s", f.log)
	}
}
