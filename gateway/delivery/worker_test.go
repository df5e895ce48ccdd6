package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// openQueue opens a real embedded JetStream queue in a fresh directory.
func openQueue(t *testing.T) *queue.Queue {
	t.Helper()
	q, err := queue.Open(testContext(t), queue.Options{
		Dir:              t.TempDir(),
		DedupWindow:      time.Minute,
		DeadLetterMaxAge: time.Hour,
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("queue.Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// consume runs w on the destination's queue until the end of the test.
func consume(t *testing.T, q *queue.Queue, w *Worker, dest string, ackWait time.Duration, h queue.Handler) {
	t.Helper()
	c, err := q.Consume(context.Background(), dest, queue.ConsumeOptions{Window: 4, AckWait: ackWait, Admit: w.Admit}, h)
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	t.Cleanup(c.Stop)
}

func enqueue(t *testing.T, q *queue.Queue, jobs ...queue.Job) {
	t.Helper()
	if err := q.Enqueue(testContext(t), jobs); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
}

func pending(t *testing.T, q *queue.Queue, dest string) int {
	t.Helper()
	n, _, err := q.Pending(testContext(t), dest)
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return n
}

func jobFor(dest string, i int) queue.Job {
	j := testJob()
	j.EventID = "ev" + strconv.Itoa(i)
	j.Destination = dest
	j.RequestID = "req-" + strconv.Itoa(i)
	return j
}

// current is a live destination that a test can swap, as a reload does.
func current(d *Destination) (func() *Destination, *atomic.Pointer[Destination]) {
	var p atomic.Pointer[Destination]
	p.Store(d)
	return p.Load, &p
}

func TestWorkerDeliversThroughFlakyReceiver(t *testing.T) {
	t.Parallel()
	const jobs = 20
	var (
		mu        sync.Mutex
		delivered = map[string]int{} // webhook-id -> 2xx answers
	)
	// Every other request fails, whichever job it carries.
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if r.N%2 == 1 {
			return fanouttest.Answer{Status: 503}
		}
		mu.Lock()
		delivered[r.Header.Get("Webhook-Id")]++
		mu.Unlock()
		return fanouttest.Answer{}
	})
	q := openQueue(t)
	d := testDestination(t, rc.URL(), func(d *Destination) {
		d.Name = "flaky"
		d.Policy.MaxAttempts = 50 // concurrent workers can draw several odd numbers in a row
	})
	cur, _ := current(d)
	w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur, Logger: slog.New(slog.DiscardHandler)}
	consume(t, q, w, "flaky", AckWait, w.Handle)

	var all []queue.Job
	for i := range jobs {
		all = append(all, jobFor("flaky", i))
	}
	enqueue(t, q, all...)

	fanouttest.WaitFor(t, waitTimeout, "every job delivered and acknowledged", func() bool {
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		return n == jobs && pending(t, q, "flaky") == 0
	})
	mu.Lock()
	defer mu.Unlock()
	for i := range jobs {
		if id := "msg_ev" + strconv.Itoa(i) + "_flaky"; delivered[id] != 1 {
			t.Errorf("%s delivered %d times, want 1", id, delivered[id])
		}
	}
	if n := len(rc.Requests()); n < jobs*2-1 {
		t.Errorf("%d requests, want about one failure per delivery (>= %d)", n, jobs*2-1)
	}
	dead, _, err := q.ListDeadLetters(testContext(t), queue.DeadLetterFilter{Destination: "flaky"}, 0, 10)
	if err != nil || len(dead) != 0 {
		t.Errorf("dead letters %v, %v; want none", dead, err)
	}
}

func TestWorkerDeadLetters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		label   string // Result.Reason, in the log
		reason  string // of the dead letter
		message string
	}{
		{"400", 400, "4xx", "status 400", "delivery failed, dead-lettering"},
		{"410", 410, "410", "status 410", "endpoint is gone (410), dead-lettering: the receiver says this URL was removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := fanouttest.NewReceiver(t, status(tt.status, `{"error":"bad payload"}`))
			q := openQueue(t)
			// Every kind of secret a destination holds, to check that none is logged.
			d := testDestination(t, strings.Replace(rc.URL(), "http://", "http://robot:pa55word@", 1)+"/hook?access_token=qu3ry", func(d *Destination) {
				d.Headers = map[string]string{"Authorization": "Bearer h3ader"}
				d.SigningSecrets = []string{secretA}
				d.ForwardQuery = true
				d.TIMToken = "t1m-token"
			})
			var logs fanouttest.SyncBuffer
			cur, _ := current(d)
			w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur,
				Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			consume(t, q, w, "audit", AckWait, w.Handle)
			job := jobFor("audit", 1)
			enqueue(t, q, job)

			var dead []queue.DeadLetter
			fanouttest.WaitFor(t, waitTimeout, "a dead letter", func() bool {
				var err error
				dead, _, err = q.ListDeadLetters(testContext(t), queue.DeadLetterFilter{Destination: "audit"}, 0, 10)
				return err == nil && len(dead) > 0
			})
			if len(dead) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dead))
			}
			dl := dead[0]
			if dl.EventID != job.EventID || dl.Reason != tt.reason || dl.LastStatus != tt.status ||
				dl.BodyExcerpt != `{"error":"bad payload"}` || dl.Attempts != 1 ||
				dl.LastError != fmt.Sprintf(`destination "audit": POST: status %d`, tt.status) {
				t.Errorf("dead letter %+v, want event %s reason %q status %d the body as excerpt and 1 attempt",
					dl.DeadLetterInfo, job.EventID, tt.reason, tt.status)
			}
			if !dl.FirstAttempt.Equal(job.ReceivedAt) || dl.LastAttempt.Before(job.ReceivedAt) {
				t.Errorf("first attempt %s, last %s; want ReceivedAt %s and after it", dl.FirstAttempt, dl.LastAttempt, job.ReceivedAt)
			}
			fanouttest.WaitFor(t, waitTimeout, "the job acknowledged", func() bool { return pending(t, q, "audit") == 0 })
			if n := len(rc.Requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}

			out := logs.String()
			var line map[string]any
			for l := range strings.Lines(out) {
				if strings.Contains(l, `"level":"WARN"`) {
					if err := json.Unmarshal([]byte(l), &line); err != nil {
						t.Fatalf("log line %q: %v", l, err)
					}
				}
			}
			want := map[string]any{
				"msg": tt.message, "destination": "audit", "event_id": job.EventID, "request_id": job.RequestID,
				"attempts": "1", "reason": tt.label, "status": float64(tt.status),
				// The URL as webhook.Redact shows it: the password and query values redacted.
				"url": strings.Replace(rc.URL(), "http://", "http://robot:<secret>@", 1) + "/hook?access_token=<secret>",
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("warn line %s = %v, want %v (logs: %s)", k, line[k], v, out)
				}
			}
			for _, secret := range []string{"pa55word", "qu3ry", "h3ader", "t1m-token", strings.TrimPrefix(secretA, "whsec_")} {
				if strings.Contains(out, secret) {
					t.Errorf("logs show the secret %q:\n%s", secret, out)
				}
			}
		})
	}
}

// TestWorkerRemovedDestination: while Current returns nil the message is not acknowledged
// (JetStream redelivers it after the ack wait); once a destination is back, it is delivered.
func TestWorkerRemovedDestination(t *testing.T) {
	t.Parallel()
	rc := fanouttest.NewReceiver(t, status(200, ""))
	q := openQueue(t)
	cur, live := current(nil)
	w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur, Logger: slog.New(slog.DiscardHandler)}
	var calls atomic.Int32
	consume(t, q, w, "audit", time.Second, func(ctx context.Context, m *queue.Message) {
		calls.Add(1)
		w.Handle(ctx, m)
	})
	enqueue(t, q, jobFor("audit", 1))

	fanouttest.WaitFor(t, waitTimeout, "a redelivery of the unacknowledged job", func() bool { return calls.Load() >= 2 })
	if n := len(rc.Requests()); n != 0 {
		t.Fatalf("%d requests while the destination was removed, want 0", n)
	}
	if n := pending(t, q, "audit"); n != 1 {
		t.Fatalf("pending %d, want the job still queued", n)
	}

	live.Store(testDestination(t, rc.URL(), nil))
	fanouttest.WaitFor(t, waitTimeout, "delivery once the destination is back", func() bool {
		return len(rc.Requests()) == 1 && pending(t, q, "audit") == 0
	})
}

// TestWorkerRetriesThroughTheQueue: a wait longer than QuickRetryMax goes back to the queue,
// with the Retry-After as its delay (the queue's tests check that a delay is kept), and the
// stored job's next attempt follows the last one made.
func TestWorkerRetriesThroughTheQueue(t *testing.T) {
	t.Parallel()
	rc := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if r.N == 1 {
			return fanouttest.Answer{Status: 503, Header: http.Header{"Retry-After": {"6"}}} // longer than QuickRetryMax
		}
		return fanouttest.Answer{}
	})
	q := openQueue(t)
	d := testDestination(t, rc.URL(), func(d *Destination) {
		d.Policy = Policy{MaxAttempts: 10, Initial: 2 * time.Second, Max: 6 * time.Second, Multiplier: 2}
	})
	cur, _ := current(d)
	var (
		mu     sync.Mutex
		rounds []string
	)
	w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur, Logger: slog.New(slog.DiscardHandler),
		Done: func(res Result) {
			mu.Lock()
			defer mu.Unlock()
			rounds = append(rounds, fmt.Sprintf("%s %s after %d, delay %s", res.Outcome, res.Reason, res.Attempts, res.Delay))
		}}
	consume(t, q, w, "audit", AckWait, w.Handle)
	enqueue(t, q, jobFor("audit", 1))

	fanouttest.WaitFor(t, waitTimeout, "delivery on the redelivery", func() bool {
		return len(rc.Requests()) == 2 && pending(t, q, "audit") == 0
	})
	reqs := rc.Requests()
	got := []string{reqs[0].Header.Get("Fanout-Attempt"), reqs[1].Header.Get("Fanout-Attempt")}
	if want := []string{"1", "2"}; !slices.Equal(got, want) {
		t.Errorf("Fanout-Attempt = %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"retry 5xx after 1, delay 6s", "delivered 2xx after 1, delay 0s"}; !slices.Equal(rounds, want) {
		t.Errorf("rounds %q, want %q: the first hands the job back with the 6s of Retry-After", rounds, want)
	}
}

func TestDeadLetterReason(t *testing.T) {
	tests := []struct {
		res  Result
		want string
	}{
		{Result{Reason: Reason4xx, Status: 404}, "status 404"},
		{Result{Reason: Reason410, Status: 410}, "status 410"},
		{Result{Reason: Reason3xx, Status: 302}, "status 302"},
		{Result{Reason: ReasonStatus, Status: 600}, "status 600"},
		{Result{Reason: ReasonMaxAttempts, Status: 503}, "max attempts"},
		{Result{Reason: ReasonMaxAge}, "max age"},
		{Result{Reason: ReasonTransform, Err: fmt.Errorf("destination %q: transform: %w", "x", errors.New("bad field"))}, "transform: bad field"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := deadLetterReason(tt.res); got != tt.want {
				t.Errorf("deadLetterReason = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWorkerLogsEveryFailedAttempt: a round logs one warning naming its attempts and the
// last error, whether it ends in a dead letter (which keeps that error) or in a delivery
// after failed attempts.
func TestWorkerLogsEveryFailedAttempt(t *testing.T) {
	t.Parallel()
	refusedURL := "http://" + fanouttest.FreeAddr(t) // nothing listens: every attempt is refused
	flaky := fanouttest.NewReceiver(t, fanouttest.Statuses(503, 503, 200))
	tests := []struct {
		name, url string
		want      map[string]any // in the one warn line
		dead      bool
	}{
		{"refused", refusedURL, map[string]any{"msg": "delivery failed, dead-lettering", "attempts": "1-3", "reason": "max attempts"}, true},
		{"recovers", flaky.URL(), map[string]any{"msg": "delivered after failed attempts", "attempts": "1-2", "delivered_attempt": 3.0,
			"error": `destination "audit": POST: status 503`}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := openQueue(t)
			d := testDestination(t, tt.url, func(d *Destination) { d.Policy.MaxAttempts = 3 })
			var logs fanouttest.SyncBuffer
			cur, _ := current(d)
			w := &Worker{Queue: q, Sender: NewSender(SenderOptions{}), Current: cur,
				Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
			consume(t, q, w, "audit", AckWait, w.Handle)
			enqueue(t, q, jobFor("audit", 1))
			fanouttest.WaitFor(t, waitTimeout, "the round's end", func() bool { return pending(t, q, "audit") == 0 })

			var warns []map[string]any
			for l := range strings.Lines(logs.String()) {
				var line map[string]any
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
				if line["level"] == "WARN" {
					warns = append(warns, line)
				}
			}
			if len(warns) != 1 {
				t.Fatalf("%d warn lines, want 1:\n%s", len(warns), logs.String())
			}
			for k, v := range tt.want {
				if warns[0][k] != v {
					t.Errorf("warn line %s = %v, want %v", k, warns[0][k], v)
				}
			}
			if !tt.dead {
				return
			}
			errText, _ := warns[0]["error"].(string)
			if !strings.HasPrefix(errText, `destination "audit": POST: dial tcp `) || !strings.HasSuffix(errText, "connection refused") {
				t.Errorf("error %q, want the refused connection", errText)
			}
			dead, _, err := q.ListDeadLetters(testContext(t), queue.DeadLetterFilter{}, 0, 10)
			if err != nil || len(dead) != 1 || dead[0].LastError != errText || dead[0].Attempts != 3 || dead[0].LastStatus != 0 {
				t.Errorf("dead letters %+v, %v; want one with the last error %q", dead, err, errText)
			}
		})
	}
}

func TestAttemptRange(t *testing.T) {
	for _, c := range []struct {
		first, last int
		want        string
	}{{1, 4, "1-4"}, {3, 3, "3"}, {5, 4, "none"}} {
		if got := attemptRange(c.first, c.last); got != c.want {
			t.Errorf("attemptRange(%d, %d) = %q, want %q", c.first, c.last, got, c.want)
		}
	}
}
