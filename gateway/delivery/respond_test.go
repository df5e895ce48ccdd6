package delivery

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestRespond asks a real receiver for each kind of answer and checks what Tencent would
// get back, and how the exchange is labelled.
func TestRespond(t *testing.T) {
	deny := string(tencentim.Decision(tencentim.DecisionDeny))
	tests := []struct {
		name    string
		answer  fanouttest.AnswerFunc
		paused  bool
		want    string // the answer Tencent gets
		outcome string
		status  int
	}{
		{"a decision is returned verbatim", status(http.StatusOK, `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":120001,"MsgBody":[]}`),
			false, `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":120001,"MsgBody":[]}`, RespondAnswered, 200},
		{"an error status", status(http.StatusInternalServerError, `{"ErrorCode":0}`), false, deny, RespondErrorStatus, 500},
		{"a 200 that is not a decision", status(http.StatusOK, `{"ErrorCode":"0"}`), false, deny, RespondBadAnswer, 200},
		{"too slow", fanouttest.Reply(fanouttest.Answer{Delay: time.Minute}), false, deny, RespondTimeout, 0},
		{"paused: not asked", status(http.StatusOK, `{"ErrorCode":0}`), true, deny, RespondPaused, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := fanouttest.NewReceiver(t, tt.answer)
			r := &Responder{
				Sender:      NewSender(SenderOptions{}),
				Destination: testDestination(t, rc.URL(), nil),
				Timeout:     200 * time.Millisecond,
				OnFailure:   tencentim.DecisionDeny,
				Paused:      func() bool { return tt.paused },
			}
			got := r.Respond(testContext(t), testJob())
			if string(got.Answer) != tt.want || got.Outcome != tt.outcome || got.Status != tt.status {
				t.Errorf("Respond = %s, %s, %d; want %s, %s, %d", got.Answer, got.Outcome, got.Status, tt.want, tt.outcome, tt.status)
			}
			if n := len(rc.Requests()); tt.paused && n != 0 || !tt.paused && n != 1 {
				t.Errorf("the destination was asked %d times", n)
			}
			if tt.outcome == RespondTimeout && got.Err == nil {
				t.Error("a timeout without an error")
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		r := &Responder{Sender: NewSender(SenderOptions{}), Destination: testDestination(t, "http://"+fanouttest.FreeAddr(t)+"/hook", nil), // nothing listens there
			Timeout: 5 * time.Second, OnFailure: tencentim.DecisionDrop}
		got := r.Respond(testContext(t), testJob())
		if string(got.Answer) != string(tencentim.Decision(tencentim.DecisionDrop)) || got.Outcome != RespondUnreachable || got.Err == nil {
			t.Errorf("Respond = %s, %s, %v", got.Answer, got.Outcome, got.Err)
		}
	})

	t.Run("the request is the one Send makes, with the original body", func(t *testing.T) {
		rc := fanouttest.NewReceiver(t, fanouttest.Reply(fanouttest.Answer{Body: `{"ErrorCode":0}`}))
		r := &Responder{Sender: NewSender(SenderOptions{}), Destination: testDestination(t, rc.URL(), func(d *Destination) {
			d.Transform = func(string, []byte) ([]byte, error) { return []byte(`"transformed"`), nil }
		}), Timeout: 5 * time.Second}
		if got := r.Respond(context.Background(), testJob()); got.Outcome != RespondAnswered {
			t.Fatalf("Respond = %+v", got)
		}
		req := rc.Requests()[0]
		if string(req.Body) != string(testJob().Body) || req.Header.Get("Webhook-Id") == "" ||
			!strings.HasPrefix(req.Header.Get("User-Agent"), "fanout/") {
			t.Errorf("request %s %v", req.Body, req.Header)
		}
	})
}
