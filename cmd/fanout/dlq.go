package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fanout-gw/fanout/gateway/httpapi"
)

const (
	dlqUsage = `usage:
  fanout dlq list   [--destination D] [--reason R] [--since T] [--until T] [--limit N] [--after ID]
  fanout dlq show   ID
  fanout dlq replay ID... | --destination D | --reason R | --since T | --until T | --all  [--dry-run]
  fanout dlq purge  ID... | --destination D | --reason R | --since T | --until T | --all  [--dry-run]

Every command takes --admin URL (default $FANOUT_ADMIN_URL, then http://127.0.0.1:9090),
--token TOKEN (default $FANOUT_ADMIN_TOKEN) and --json (print the API's JSON answer).
` + dlqTimes + `
Run "fanout dlq COMMAND -h" for a command's flags.
`
	dlqTimes        = "--since and --until take an RFC 3339 time or a duration back from now (90m, 2h, 7d)."
	defaultAdminURL = "http://127.0.0.1:9090"
	// dlqTimeout bounds one call to the admin API: a replay of many dead letters takes a while.
	dlqTimeout = 5 * time.Minute
)

// dlqOptions are the flags of fanout dlq.
type dlqOptions struct {
	admin, token                      string
	json                              bool
	destination, reason, since, until string
	limit                             int
	after                             uint64
	dryRun, all                       bool

	set                  map[string]bool // the flags given
	sinceTime, untilTime string          // since and until as RFC 3339
	filterGiven          bool
	now                  func() time.Time
}

// dlqSubcommands are the usage line and what each subcommand of fanout dlq does.
var dlqSubcommands = map[string]struct{ usage, does string }{
	"list":   {"[--destination D] [--reason R] [--since T] [--until T] [--limit N] [--after ID]", "Lists dead letters, oldest first, a page at a time."},
	"show":   {"ID", "Shows one dead letter with the callback it carries."},
	"replay": {"ID... | --destination D | --reason R | --since T | --until T | --all  [--dry-run]", "Queues dead letters again for their destination."},
	"purge":  {"ID... | --destination D | --reason R | --since T | --until T | --all  [--dry-run]", "Deletes dead letters."},
}

// commonFlags are the flags of every dlq subcommand, also accepted before it.
func (o *dlqOptions) commonFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.admin, "admin", "", "admin API base URL (default $FANOUT_ADMIN_URL, then "+defaultAdminURL+")")
	fs.StringVar(&o.token, "token", "", "admin bearer token (default $FANOUT_ADMIN_TOKEN)")
	fs.BoolVar(&o.json, "json", false, "print the API's JSON answer, for scripts")
}

// flags returns the flag set of subcommand sub: the common flags and its own. It is nil
// for a subcommand that does not exist.
func (o *dlqOptions) flags(sub string) *flag.FlagSet {
	help, ok := dlqSubcommands[sub]
	if !ok {
		return nil
	}
	fs := newFlagSet("dlq "+sub, help.usage, help.does+"\n"+dlqTimes)
	o.commonFlags(fs)
	if sub == "show" {
		return fs
	}
	fs.StringVar(&o.destination, "destination", "", "only dead letters of this destination")
	fs.StringVar(&o.reason, "reason", "", "only dead letters whose reason contains this")
	fs.StringVar(&o.since, "since", "", "only dead letters dead at or after this (RFC 3339, or a duration back from now: 2h)")
	fs.StringVar(&o.until, "until", "", "only dead letters dead before this (RFC 3339, or a duration back from now)")
	if sub == "list" {
		fs.IntVar(&o.limit, "limit", httpapi.DefaultListLimit, fmt.Sprintf("at most this many (1 to %d)", httpapi.MaxListLimit))
		fs.Uint64Var(&o.after, "after", 0, "start after this id (the next page's cursor)")
		return fs
	}
	fs.BoolVar(&o.dryRun, "dry-run", false, "say what would be done, do nothing")
	fs.BoolVar(&o.all, "all", false, "every dead letter, when no id or filter is given")
	return fs
}

// runDLQ is the dead-letter queue over the admin API: the same endpoints an operator's
// script would call, with a table for people.
func runDLQ(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	o := dlqOptions{now: time.Now, limit: httpapi.DefaultListLimit, set: map[string]bool{}}
	// The common flags may come before the subcommand: fanout dlq --admin URL list.
	lead := newFlagSet("dlq", "list|show|replay|purge [flags]", dlqUsage)
	lead.Usage = func() { fmt.Fprint(lead.Output(), dlqUsage) }
	o.commonFlags(lead)
	lead.SetOutput(io.Discard)
	if err := lead.Parse(args); err != nil {
		return flagError(lead, err, stdout)
	}
	if lead.NArg() == 0 {
		return usagef("no subcommand: want list, show, replay or purge\n\n%s", dlqUsage)
	}
	given := map[string]string{} // defining the subcommand's flags resets them to their defaults
	lead.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	sub := lead.Arg(0)
	fs := o.flags(sub)
	if fs == nil {
		return usagef("unknown subcommand %q: want list, show, replay or purge", sub)
	}
	for name, v := range given {
		_ = fs.Set(name, v)
	}
	ids, err := parseFlags(fs, lead.Args()[1:], stdout)
	if err != nil {
		return err
	}
	for _, set := range []*flag.FlagSet{lead, fs} {
		set.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	}
	if err := o.resolve(); err != nil {
		return err
	}
	c, err := newAdminClient(o.admin, o.token)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dlqTimeout)
	defer cancel()
	return o.run(ctx, c, sub, ids, stdout, stderr)
}

// run runs subcommand sub with its positional arguments.
func (o *dlqOptions) run(ctx context.Context, c *adminClient, sub string, args []string, stdout, stderr io.Writer) error {
	switch sub {
	case "list":
		if len(args) > 0 {
			return usagef("list takes no argument (got %q): filter with --destination, --reason, --since, --until", args[0])
		}
		return dlqList(ctx, c, *o, stdout, stderr)
	case "show":
		if len(args) != 1 {
			return usagef("show takes one dead-letter id")
		}
		id, err := parseID(args[0])
		if err != nil {
			return err
		}
		return dlqShow(ctx, c, *o, id, stdout)
	}
	ids := make([]uint64, 0, len(args))
	for _, s := range args {
		id, err := parseID(s)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	switch {
	case len(ids) > 0 && (o.filterGiven || o.all):
		return usagef("%s: give ids or a filter (or --all), not both", sub)
	case len(ids) == 0 && !o.filterGiven && !o.all:
		return usagef("%s: give ids, a filter (--destination, --reason, --since, --until), or --all for every dead letter", sub)
	}
	if sub == "replay" {
		return dlqReplay(ctx, c, *o, ids, stdout, stderr)
	}
	return dlqPurge(ctx, c, *o, ids, stdout, stderr)
}

// resolve fills the defaults from the environment and turns since and until into times.
func (o *dlqOptions) resolve() error {
	if o.admin == "" {
		o.admin = os.Getenv("FANOUT_ADMIN_URL")
	}
	if o.admin == "" {
		o.admin = defaultAdminURL
	}
	if !o.set["token"] {
		o.token = os.Getenv("FANOUT_ADMIN_TOKEN")
	}
	if o.set["limit"] && (o.limit < 1 || o.limit > httpapi.MaxListLimit) {
		return usagef("--limit %d: want 1 to %d", o.limit, httpapi.MaxListLimit)
	}
	var err error
	if o.sinceTime, err = o.when("since", o.since); err != nil {
		return err
	}
	if o.untilTime, err = o.when("until", o.until); err != nil {
		return err
	}
	o.filterGiven = o.destination != "" || o.reason != "" || o.since != "" || o.until != ""
	return nil
}

// when reads an RFC 3339 time, or a duration back from now ("2h", "90m", "7d").
func (o *dlqOptions) when(flagName, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.Format(time.RFC3339Nano), nil
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok && err != nil {
		if n, nerr := strconv.Atoi(days); nerr == nil {
			d, err = time.Duration(n)*24*time.Hour, nil
		}
	}
	if err != nil || d < 0 {
		return "", usagef("--%s %q: want an RFC 3339 time (2025-01-02T15:04:05Z) or a duration back from now (2h, 7d)", flagName, v)
	}
	return o.now().Add(-d).UTC().Format(time.RFC3339Nano), nil
}

// filter is the dead-letter filter as query parameters.
func (o *dlqOptions) filter() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"destination": o.destination, "reason": o.reason, "since": o.sinceTime, "until": o.untilTime} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("%q is not a dead-letter id (a positive integer, the ID column of dlq list)", s)
	}
	return id, nil
}

func dlqList(ctx context.Context, c *adminClient, o dlqOptions, stdout, stderr io.Writer) error {
	q := o.filter()
	q.Set("limit", strconv.Itoa(o.limit))
	if o.after > 0 {
		q.Set("after", strconv.FormatUint(o.after, 10))
	}
	var page httpapi.DeadLetterPage
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/dlq", q, nil, &page)
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(stdout, raw)
	}
	if len(page.Items) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEAD AT\tDESTINATION\tREASON\tSTATUS\tATTEMPTS\tCOMMAND\tLAST ERROR")
	for _, d := range page.Items {
		// The destination has its column: the error need not repeat it.
		lastError := strings.TrimPrefix(d.LastError, fmt.Sprintf("destination %q: ", d.Destination))
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.DeadAt.UTC().Format(time.RFC3339), d.Destination,
			cell(d.Reason, reasonWidth), status(d.LastStatus), d.Attempts, dash(d.Command), dash(cell(lastError, errorWidth)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.Next != 0 {
		fmt.Fprintf(stderr, "more dead letters: add --after %d for the next page\n", page.Next)
	}
	return nil
}

func dlqShow(ctx context.Context, c *adminClient, o dlqOptions, id uint64, stdout io.Writer) error {
	var d httpapi.DeadLetterDetail
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/dlq/"+strconv.FormatUint(id, 10), nil, nil, &d)
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(stdout, raw)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, row := range [][2]string{
		{"id", strconv.FormatUint(d.ID, 10)},
		{"destination", d.Destination},
		{"routes", dash(strings.Join(d.Routes, ", "))},
		{"reason", oneLine(d.Reason)},
		{"last status", status(d.LastStatus)},
		{"last error", dash(oneLine(d.LastError))},
		{"answer excerpt", dash(oneLine(d.BodyExcerpt))},
		{"attempts", strconv.Itoa(d.Attempts)},
		{"first attempt", ts(d.FirstAttempt)},
		{"last attempt", ts(d.LastAttempt)},
		{"dead at", ts(d.DeadAt)},
		{"received at", ts(d.ReceivedAt)},
		{"event id", dash(d.EventID)},
		{"request id", dash(d.RequestID)},
		{"sdkappid", dash(d.SdkAppID)},
		{"command", dash(d.Command)},
		{"query", dash(d.Query)},
		{"body", fmt.Sprintf("%d bytes, %s", d.BodySize, d.BodyEncoding)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var body bytes.Buffer
	if d.BodyEncoding != "json" || json.Indent(&body, d.Body, "", "  ") != nil {
		body.Reset()
		body.Write(d.Body)
	}
	body.WriteByte('\n')
	_, err = stdout.Write(body.Bytes())
	return err
}

func dlqReplay(ctx context.Context, c *adminClient, o dlqOptions, ids []uint64, stdout, stderr io.Writer) error {
	req := map[string]any{"dry_run": o.dryRun}
	if len(ids) > 0 {
		req["ids"] = ids
	} else {
		f := map[string]string{}
		for k, v := range o.filter() {
			f[k] = v[0]
		}
		req["filter"] = f
		req["all"] = o.all
	}
	var r httpapi.ReplayResult
	raw, err := c.call(ctx, http.MethodPost, "/api/v1/dlq/replay", nil, req, &r)
	if err != nil {
		return err
	}
	if o.json {
		if err := writeRaw(stdout, raw); err != nil {
			return err
		}
	} else {
		if o.dryRun {
			fmt.Fprintf(stdout, "dry run: %d matched, would replay %d%s\n", r.Matched, len(r.WouldReplay), idList(r.WouldReplay))
		} else {
			fmt.Fprintf(stdout, "%d matched, replayed %d%s\n", r.Matched, len(r.Replayed), idList(r.Replayed))
		}
		for _, e := range r.Errors {
			fmt.Fprintf(stderr, "fanout dlq replay: %d: %s\n", e.ID, e.Error)
		}
	}
	if len(r.Errors) > 0 {
		return errReported
	}
	return nil
}

func dlqPurge(ctx context.Context, c *adminClient, o dlqOptions, ids []uint64, stdout, stderr io.Writer) error {
	q := o.filter()
	for _, id := range ids {
		q.Add("id", strconv.FormatUint(id, 10))
	}
	if o.all {
		q.Set("all", "true")
	}
	if o.dryRun {
		q.Set("dry_run", "true")
	}
	var r httpapi.PurgeResult
	raw, err := c.call(ctx, http.MethodDelete, "/api/v1/dlq", q, nil, &r)
	if err != nil {
		return err
	}
	if o.json {
		if err := writeRaw(stdout, raw); err != nil {
			return err
		}
	} else {
		if o.dryRun {
			fmt.Fprintf(stdout, "dry run: %d matched, would delete %d\n", r.Matched, r.Matched)
		} else {
			fmt.Fprintf(stdout, "%d matched, deleted %d\n", r.Matched, r.Deleted)
		}
		for _, e := range r.Errors {
			fmt.Fprintf(stderr, "fanout dlq purge: %d: %s\n", e.ID, e.Error)
		}
	}
	if len(r.Errors) > 0 {
		return errReported
	}
	return nil
}

func idList(ids []uint64) string {
	if len(ids) == 0 {
		return ""
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return ": " + strings.Join(s, " ")
}

func status(code int) string {
	if code == 0 {
		return "-"
	}
	return strconv.Itoa(code)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line: a reason or excerpt may hold newlines and tabs.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// The widths of the list's free-text columns, in characters: a long reason (a transform's
// error) or error text must not make a row wrap. dlq show prints them whole.
const (
	reasonWidth = 40
	errorWidth  = 60
)

// cell is s on one line and at most width characters, cut with "...".
func cell(s string, width int) string {
	s = oneLine(s)
	if r := []rune(s); len(r) > width {
		return string(r[:width-3]) + "..."
	}
	return s
}

func writeRaw(w io.Writer, raw []byte) error {
	raw = bytes.TrimRight(raw, "\n")
	_, err := w.Write(append(raw, '\n'))
	return err
}

// adminClient calls Fanout's admin API.
type adminClient struct {
	base  string // scheme://host[:port][/prefix], without a trailing slash
	token string
	http  *http.Client
}

func newAdminClient(base, token string) (*adminClient, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, usagef("--admin %q: want the admin port's URL, e.g. %s", base, defaultAdminURL)
	}
	return &adminClient{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{}}, nil
}

// call makes one request and decodes a 200 answer into out; it returns the answer's bytes.
// Any other status is an error naming the URL and the API's error text.
func (c *adminClient) call(ctx context.Context, method, path string, q url.Values, body, out any) ([]byte, error) {
	target := c.base + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		return nil, fmt.Errorf("%s %s: %w (is fanout serve running there? see --admin)", method, target, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, target, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 500 {
			msg = msg[:500] + "..."
		}
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			hint = " (give the admin token with --token or $FANOUT_ADMIN_TOKEN)"
		}
		return nil, fmt.Errorf("%s %s: %s: %s%s", method, target, resp.Status, msg, hint)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("%s %s: the answer is not what the API answers (%w): is --admin Fanout's admin port?", method, target, err)
	}
	return raw, nil
}
