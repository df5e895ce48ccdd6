package delivery

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 20 * time.Second

// status answers every request with code and body.
func status(code int, body string) fanouttest.AnswerFunc {
	return fanouttest.Reply(fanouttest.Answer{Status: code, Body: body})
}

// quickPolicy retries in-process at once, a few times.
var quickPolicy = Policy{MaxAttempts: 5, Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2}

// testDestination builds a destination to url with quickPolicy, changed by edit.
func testDestination(t *testing.T, url string, edit func(d *Destination)) *Destination {
	t.Helper()
	d := Destination{Name: "audit", URL: url, Timeout: 5 * time.Second, Policy: quickPolicy}
	if edit != nil {
		edit(&d)
	}
	built, err := NewDestination(d)
	if err != nil {
		t.Fatalf("NewDestination: %v", err)
	}
	return built
}

const testQuery = "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json" +
	"&ClientIP=10.0.0.1&OptPlatform=iOS&Sign=0123abcd&RequestTime=1669872112"

func testJob() queue.Job {
	return queue.Job{
		EventID:     "ev1",
		Destination: "audit",
		Routes:      []string{"vip", "all-to-app"},
		Query:       testQuery,
		Body:        []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"alice"}`),
		ReceivedAt:  time.Now(),
		RequestID:   "req-1",
	}
}

// attempts records what the Sender reports to its observer.
type attempts struct {
	mu     sync.Mutex
	labels []string
}

func (a *attempts) observe(at Attempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.labels = append(a.labels, at.Destination+":"+at.Result)
}

func (a *attempts) get() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.labels, " ")
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}
