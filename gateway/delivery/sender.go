package delivery

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/gateway/webhook"
)

// Result is what one Send did.
type Result struct {
	Outcome     Outcome
	Delay       time.Duration // Retry: redeliver after this
	Reason      string        // a Reason* constant
	Status      int           // HTTP status of the last attempt, 0 when none came back
	BodyExcerpt string        // start of the last answer's body when it was not 2xx
	Attempts    int           // HTTP attempts made by this Send
	LastAttempt time.Time     // when the last attempt started; zero when none was made
	Gone        bool          // the last answer was 410 Gone: the endpoint was removed
	Err         error         // the last attempt's failure; nil when Delivered
	// LastFailure is the error of the round's last failed attempt, also when a later
	// attempt delivered; nil when none failed.
	LastFailure error
	// Blocked: a Dead round of an ordered job whose destination blocks the lane instead of
	// dead-lettering (set by Worker).
	Blocked bool
}

// SenderOptions configure NewSender.
type SenderOptions struct {
	Version string // User-Agent: fanout/<Version>
	// Observe, when set, is called after every HTTP attempt: the gateway counts
	// fanout_delivery_attempts_total and fanout_delivery_duration_seconds with it, and
	// writes the attempt to the event log. It runs on the worker's goroutine, so it must be
	// quick and safe for concurrent use.
	Observe func(Attempt)
}

// Attempt is one HTTP attempt, as SenderOptions.Observe is told of it.
type Attempt struct {
	Destination string
	EventID     string
	Number      int    // its Fanout-Attempt
	Result      string // a Reason* constant
	Status      int    // the HTTP status; 0 when no answer came back
	Started     time.Time
	Took        time.Duration // reading the answer included
	Err         error         // what failed; nil when delivered
	Respond     bool          // a respond rule's synchronous exchange (Ask), not a queued delivery
}

// Sender makes the HTTP attempts of every destination. One per process: its connection pool
// is shared, so keep-alive connections to a receiver survive reloads and are reused by all
// the workers of a destination. It is safe for concurrent use.
type Sender struct {
	userAgent string
	observe   func(Attempt)
	transport *http.Transport
}

// NewSender returns a Sender with a transport tuned for many requests to few hosts.
func NewSender(o SenderOptions) *Sender {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no global cap: the per-host cap below bounds each destination
	// A busy destination has up to `concurrency` requests in flight; keep that many
	// connections warm instead of the default 2, or every burst opens new ones.
	t.MaxIdleConnsPerHost = 512
	version := o.Version
	if version == "" {
		version = "dev"
	}
	return &Sender{
		userAgent: "fanout/" + version,
		observe:   o.Observe,
		transport: t,
	}
}

// CloseIdleConnections closes the pooled connections that are idle, for shutdown.
func (s *Sender) CloseIdleConnections() { s.transport.CloseIdleConnections() }

// attemptTimeout is the shared transport as one destination's attempts use it: each
// request, and the reading of its answer until the body is closed, is bounded by timeout
// (zero: no bound). It does what http.Client.Timeout does, on the request's context, because
// a client with a Timeout over a RoundTripper other than *http.Transport arms a timer and
// starts a goroutine per request. It also hides the transport's CloseIdleConnections:
// go-retryablehttp calls it whenever a Do ends in an error, which would drop the warm
// connections of every destination each time one receiver is down.
type attemptTimeout struct {
	rt      http.RoundTripper
	timeout time.Duration
}

func (a attemptTimeout) RoundTrip(r *http.Request) (*http.Response, error) {
	if a.timeout <= 0 {
		return a.rt.RoundTrip(r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	resp, err := a.rt.RoundTrip(r.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends an attempt's context when its answer's body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// Send delivers job to d: one round of attempts, the first numbered job.Attempt. After a
// failed attempt that may be retried, the next one follows in-process if its backoff is at
// most QuickRetryMax; otherwise Send ends with Outcome Retry and the wait in Delay, for the
// queue to store the job until then. The round ends Dead on an answer that will not change
// (classify), after MaxAttempts, or when the next attempt would start after
// job.AttemptsSince()+MaxAge; a first attempt is always made, however old the job. A Retry-After
// can lengthen a wait, up to Policy.Max. When ctx ends, Send stops at once with Outcome
// Retry (reason "canceled" if an attempt was cut short).
//
// Each attempt holds one of d.Slots (when set) while its request is in flight; o says
// whether the caller already took the slot of the first attempt, and whether the round is
// bound by a pause. d must come from NewDestination.
func (s *Sender) Send(ctx context.Context, d *Destination, job queue.Job, o Round) Result {
	if d.target == nil {
		panic("delivery: Send with a Destination not built by NewDestination")
	}
	if err := ctx.Err(); err != nil {
		// Stopping already (a job handed out while the worker stops): no attempt is made,
		// so none is counted, and the job goes back with the number it came with.
		return Result{Outcome: Retry, Reason: ReasonCanceled, Err: fmt.Errorf("destination %q: %w", d.Name, err)}
	}
	r := &round{
		sender:    s,
		d:         d,
		job:       job,
		webhookID: webhookID(d, job),
		attempt:   max(job.Attempt, 1),
		slots:     d.Slots,
		holding:   o.Held && d.Slots != nil,
		breaker:   o.Breaker,
		probe:     o.Probe,
	}
	defer r.releaseSlot()
	r.body = job.Body
	if d.Transform != nil {
		b, err := d.Transform(job.Query, job.Body)
		if err != nil {
			return Result{Outcome: Dead, Reason: ReasonTransform, Err: fmt.Errorf("destination %q: transform: %w", d.Name, err)}
		}
		r.body = b
	}
	r.header = s.baseHeader(d, job)
	return r.run(ctx)
}

// Round says how a Send starts and what bounds it besides the destination's policy.
type Round struct {
	// Held: the caller took the slot of the first attempt (Worker.Admit).
	Held bool
	// Breaker is the destination's pause state (nil: never paused). Once it pauses, the
	// round makes no more quick attempts: it ends with Retry and the planned wait, so
	// that it holds neither a slot nor a job while the pause lasts.
	Breaker *Breaker
	// Probe marks the round that tests a paused destination (Breaker.Acquire said so): it
	// makes one attempt. Waiting for a slot for a second one could wait for good, the slots
	// being held by the rounds that wait for the probe's outcome.
	Probe bool
}

// baseHeader is the part of the headers that is the same for every attempt: defaults, then
// the configured headers (which may replace User-Agent or Content-Type), then Fanout's own.
func (s *Sender) baseHeader(d *Destination, job queue.Job) http.Header {
	h := make(http.Header, len(d.Headers)+8)
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", s.userAgent)
	for k, v := range d.Headers {
		h.Set(k, v)
	}
	if len(job.Routes) > 0 {
		h.Set("Fanout-Route", strings.Join(job.Routes, ","))
	}
	h.Set("Webhook-Id", webhookID(d, job))
	return h
}

// webhookID is the same for every attempt and every redelivery of one event to one
// destination, and differs between destinations, so a receiver can deduplicate on it.
func webhookID(d *Destination, job queue.Job) string {
	return webhook.ID(job.EventID, d.Name)
}

// round is the state of one Send: go-retryablehttp runs the loop (body rewinds, the waits,
// draining answers for reuse), and its hooks call back into round, which decides.
type round struct {
	sender    *Sender
	d         *Destination
	job       queue.Job
	body      []byte
	webhookID string
	header    http.Header

	attempt int           // number of the attempt being made
	started time.Time     // when it started
	wait    time.Duration // planned wait before the next attempt
	res     Result        // as of the last attempt
	failure error         // of the last failed attempt, for Result.LastFailure

	slots   *Slots // d.Slots, when set
	holding bool   // a slot is taken for the attempt being made
	// ask marks the synchronous exchange of a respond rule: it has its own budget (the
	// rule's timeout) and never waits behind the queued deliveries for a slot or the
	// rate limit.
	ask bool

	breaker *Breaker // Round.Breaker
	probe   bool     // Round.Probe: one attempt only
}

// takeSlot takes a slot for the next attempt, unless one is already held.
func (r *round) takeSlot(ctx context.Context) error {
	if r.ask || r.slots == nil || r.holding {
		return nil
	}
	if err := r.slots.Acquire(ctx); err != nil {
		return fmt.Errorf("destination %q: waiting for a free slot: %w", r.d.Name, err)
	}
	r.holding = true
	return nil
}

// releaseSlot gives back the slot of the attempt just made, if any.
func (r *round) releaseSlot() {
	if r.holding {
		r.holding = false
		r.slots.Release()
	}
}

func (r *round) run(ctx context.Context) Result {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, r.d.target.String(), r.body)
	if err != nil { // cannot happen: NewDestination parsed the URL
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return Result{Outcome: Dead, Reason: ReasonConnection, Err: fmt.Errorf("destination %q: build request: %w", r.d.Name, err)}
	}
	if host := r.header.Get("Host"); host != "" {
		req.Host = host // net/http ignores a Host header; the field is what it sends
	}
	if err := r.prepare(req.Request); err != nil {
		return Result{Outcome: Retry, Reason: ReasonCanceled, Err: err}
	}

	client := &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: attemptTimeout{rt: r.sender.transport, timeout: r.d.Timeout},
			// A redirect is answered, not followed: the signature and the headers were made
			// for this URL, and classify dead-letters the 3xx so that the config gets fixed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		RetryMax:   r.d.Policy.MaxAttempts, // an upper bound: checkRetry ends the round
		CheckRetry: r.checkRetry,
		Backoff:    func(time.Duration, time.Duration, int, *http.Response) time.Duration { return r.wait },
		PrepareRetry: func(req *http.Request) error {
			if r.pausedNow() { // paused during the wait: the attempt is the queue's again
				r.res.Delay = 0
				return errPausedRound
			}
			r.attempt++
			return r.prepare(req)
		},
		// Return the last response or error as is (no wrapping with the URL, no closed body).
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	resp, _ := client.Do(req)
	if resp != nil {
		drainAndClose(resp.Body)
	}
	// When Do stopped between two attempts (ctx ended during a wait or in the limiter),
	// r.res is the last attempt's Retry with the planned wait, which is what the queue needs.
	return r.res
}

// prepare waits for the rate limit, then stamps req for attempt r.attempt: a fresh
// timestamp, signature and Tencent Sign, as a receiver checking their age expects.
func (r *round) prepare(req *http.Request) error {
	if r.d.RateLimit != nil && !r.ask {
		if err := r.d.RateLimit.Wait(req.Context()); err != nil {
			return fmt.Errorf("destination %q: rate limit: %w", r.d.Name, err)
		}
	}
	if err := r.takeSlot(req.Context()); err != nil {
		return err
	}
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	// A new map: the previous attempt's request, which retryablehttp copied shallowly,
	// keeps its own. The values of the base headers are shared: nothing changes them.
	h := make(http.Header, len(r.header)+3)
	maps.Copy(h, r.header)
	own := []string{strconv.Itoa(r.attempt), ts, ""}
	h["Fanout-Attempt"], h["Webhook-Timestamp"] = own[0:1:1], own[1:2:2]
	if len(r.d.keys) > 0 {
		own[2] = signature(r.d.keys, r.webhookID, ts, r.body)
		h["Webhook-Signature"] = own[2:3:3]
	}
	req.Header = h
	req.URL = r.url(now)
	r.started = now
	return nil
}

// url is the destination URL for an attempt at now. With ForwardQuery the callback's query
// follows the URL's own, so a receiver reading the first value of a key that both carry gets
// the configured one; Sign and RequestTime are made for TIMToken, or removed without it.
func (r *round) url(now time.Time) *url.URL {
	u := *r.d.target
	if !r.d.ForwardQuery && r.d.TIMToken == "" {
		return &u
	}
	forwarded := ""
	if r.d.ForwardQuery {
		forwarded = r.job.Query
	}
	forwarded = tencentim.Resign(forwarded, r.d.TIMToken, now)
	switch {
	case forwarded == "":
	case u.RawQuery == "":
		u.RawQuery = forwarded
	default:
		u.RawQuery += "&" + forwarded
	}
	return &u
}

// checkRetry runs after every attempt: it classifies the answer, reports the attempt to the
// observer, records it in r.res and decides whether another attempt follows in-process.
// Returning false ends the round with r.res as the Result.
func (r *round) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	v := classify(ctx, status, err)
	excerpt := ""
	var judged error // why success_when said no, when it did
	switch {
	case resp != nil && r.d.Success != nil:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, AnswerLimit))
		ok, err := r.d.Success(status, resp.Header, body)
		switch {
		case ok:
			v = verdict{outcome: Delivered, reason: v.reason}
		case v.outcome == Delivered || err != nil:
			// A 2xx that the answer says failed (a chat bot's errcode), or an expression
			// that cannot judge it: retried like any failed attempt.
			v = verdict{outcome: Retry, reason: ReasonSuccessWhen}
			judged = err
		}
		if v.outcome != Delivered {
			excerpt = strings.ToValidUTF8(string(body[:min(len(body), ExcerptLimit)]), "\uFFFD")
		}
	case resp != nil && v.outcome != Delivered:
		excerpt = readExcerpt(resp.Body) // retryablehttp drains the rest when it retries
	}
	r.releaseSlot() // the answer is read: waiting for the next attempt holds no slot
	now := time.Now()
	failure := attemptError(r.d, status, cmp.Or(err, judged), v)
	if r.sender.observe != nil {
		r.sender.observe(Attempt{Destination: r.d.Name, EventID: r.job.EventID, Number: r.attempt, Result: v.reason,
			Status: status, Started: r.started, Took: now.Sub(r.started), Err: failure})
	}
	r.res = Result{
		Outcome:     v.outcome,
		Reason:      v.reason,
		Status:      status,
		BodyExcerpt: excerpt,
		Attempts:    r.res.Attempts + 1,
		LastAttempt: r.started,
		Gone:        v.gone,
		Err:         failure,
	}
	if r.res.Err != nil {
		r.failure = r.res.Err
	}
	r.res.LastFailure = r.failure
	if v.outcome != Retry || v.reason == ReasonCanceled {
		return false, nil
	}

	p := r.d.Policy
	if r.attempt >= p.MaxAttempts {
		r.res.Outcome, r.res.Reason = Dead, ReasonMaxAttempts
		return false, nil
	}
	wait, quick := p.Wait(r.attempt), p.backoff(r.attempt) <= QuickRetryMax
	if resp != nil {
		if ra, ok := retryAfter(resp.Header, now); ok && ra > wait {
			wait = min(ra, p.Max)
			quick = quick && wait <= QuickRetryMax
		}
	}
	if since := r.job.AttemptsSince(); p.MaxAge > 0 && !since.IsZero() && now.Add(wait).After(since.Add(p.MaxAge)) {
		r.res.Outcome, r.res.Reason = Dead, ReasonMaxAge
		return false, nil
	}
	r.res.Delay = wait
	r.wait = wait
	if quick && r.d.replaced.Load() {
		r.res.Delay = 0 // a reload changed the destination: the next attempt uses the new one
		return false, nil
	}
	return quick && !r.pausedNow(), nil
}

// errPausedRound ends a round whose destination paused between two attempts.
var errPausedRound = errors.New("destination paused")

// pausedNow reports whether the round must not make another attempt now: it is a probe, or
// its destination is paused.
func (r *round) pausedNow() bool {
	if r.probe {
		return true
	}
	if r.breaker == nil {
		return false
	}
	paused, _ := r.breaker.Paused()
	return paused
}

// AskLimit bounds the answer Ask reads: a before-callback answer is a small JSON object.
const AskLimit = 1 << 20

// Ask makes one attempt to deliver job to d and returns the answer: for respond rules,
// whose destination decides a "before" callback synchronously. The request is the one Send
// would make (headers, signature, forwarded and re-signed query) with the original body;
// there is no retry, and ctx bounds the whole exchange, reading the answer included. It does
// not wait for the destination's slots or rate limit: a synchronous answer is never queued
// behind the backlog of asynchronous deliveries.
func (s *Sender) Ask(ctx context.Context, d *Destination, job queue.Job) (status int, answer []byte, err error) {
	if d.target == nil {
		panic("delivery: Ask with a Destination not built by NewDestination")
	}
	r := &round{sender: s, d: d, job: job, body: job.Body, webhookID: webhookID(d, job),
		header: s.baseHeader(d, job), attempt: 1, ask: true}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.target.String(), bytes.NewReader(job.Body))
	if err != nil {
		return 0, nil, fmt.Errorf("destination %q: build request: %w", d.Name, err)
	}
	if host := r.header.Get("Host"); host != "" {
		req.Host = host
	}
	if err := r.prepare(req); err != nil {
		return 0, nil, err
	}
	client := &http.Client{Transport: attemptTimeout{rt: s.transport}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if s.observe != nil {
		v := classify(ctx, statusOf(resp), err)
		var failure error
		if err != nil {
			failure = attemptError(d, 0, err, v)
		}
		s.observe(Attempt{Destination: d.Name, EventID: job.EventID, Number: 1, Result: v.reason, Status: statusOf(resp),
			Started: r.started, Took: time.Since(r.started), Err: failure, Respond: true})
	}
	if err != nil {
		return 0, nil, attemptError(d, 0, err, classify(ctx, 0, err))
	}
	defer drainAndClose(resp.Body)
	answer, err = io.ReadAll(io.LimitReader(resp.Body, AskLimit))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("destination %q: reading the answer: %w", d.Name, err)
	}
	return resp.StatusCode, answer, nil
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}
