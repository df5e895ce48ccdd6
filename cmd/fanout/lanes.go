package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/fanout-gw/fanout/gateway/dryrun"
	"github.com/fanout-gw/fanout/gateway/httpapi"
)

// printLane shows a delivery's lane in fanout route's text output.
func printLane(w io.Writer, d dryrun.Delivery) {
	switch {
	case d.Key == nil:
	case d.KeyError != "":
		fmt.Fprintf(w, "     lane: %s, the fallback lane (%s)\n", strconv.Quote(*d.Key), d.KeyError)
	default:
		fmt.Fprintf(w, "     lane: %s\n", strconv.Quote(*d.Key))
	}
}

const lanesUsage = `usage:
  fanout lanes list  [--destination D]
  fanout lanes retry DESTINATION KEY
  fanout lanes skip  DESTINATION KEY

The lanes of destinations with order_by and on_exhausted: block, over the admin API. A lane
whose delivery gave up waits for an operator: retry starts a new series of attempts of that
delivery, skip dead-letters it and the lane moves on. KEY is the lane's key as list shows
it, unquoted ("" for the fallback lane).

Every command takes --admin URL (default $FANOUT_ADMIN_URL, then http://127.0.0.1:9090),
--token TOKEN (default $FANOUT_ADMIN_TOKEN) and --json (print the API's JSON answer).
`

// runLanes lists the blocked lanes, or retries or skips one.
func runLanes(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	var o struct {
		admin, token, destination string
		json                      bool
	}
	if len(args) == 0 {
		return usagef("no subcommand: want list, retry or skip\n\n%s", lanesUsage)
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		fmt.Fprint(stdout, lanesUsage)
		return flag.ErrHelp
	}
	sub := args[0]
	does := map[string]string{
		"list":  "Lists the blocked lanes, and the lane partitions the replica consumes.",
		"retry": "Starts a new series of attempts of the delivery a blocked lane waits with.",
		"skip":  "Dead-letters the delivery a blocked lane waits with; the lane moves on.",
	}[sub]
	if does == "" {
		return usagef("unknown subcommand %q: want list, retry or skip", sub)
	}
	usage := "DESTINATION KEY"
	if sub == "list" {
		usage = "[--destination D]"
	}
	fs := newFlagSet("lanes "+sub, usage, does)
	fs.StringVar(&o.admin, "admin", "", "admin API base URL (default $FANOUT_ADMIN_URL, then "+defaultAdminURL+")")
	fs.StringVar(&o.token, "token", "", "admin bearer token (default $FANOUT_ADMIN_TOKEN)")
	fs.BoolVar(&o.json, "json", false, "print the API's JSON answer, for scripts")
	if sub == "list" {
		fs.StringVar(&o.destination, "destination", "", "only the lanes of this destination")
	}
	pos, err := parseFlags(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	tokenSet := false
	fs.Visit(func(f *flag.Flag) { tokenSet = tokenSet || f.Name == "token" })
	if o.admin == "" {
		o.admin = os.Getenv("FANOUT_ADMIN_URL")
	}
	if o.admin == "" {
		o.admin = defaultAdminURL
	}
	if !tokenSet {
		o.token = os.Getenv("FANOUT_ADMIN_TOKEN")
	}
	c, err := newAdminClient(o.admin, o.token)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dlqTimeout)
	defer cancel()

	if sub == "list" {
		if len(pos) > 0 {
			return usagef("list takes no argument (got %q): filter with --destination", pos[0])
		}
		return lanesList(ctx, c, o.destination, o.json, stdout)
	}
	if len(pos) != 2 {
		return usagef("%s takes a destination and a key (\"\" for the fallback lane)", sub)
	}
	var r httpapi.LaneRelease
	path := "/api/v1/lanes/" + url.PathEscape(pos[0]) + "/" + url.PathEscape(pos[1]) + "/" + sub
	raw, err := c.call(ctx, http.MethodPost, path, nil, map[string]any{}, &r)
	if err != nil {
		return err
	}
	if o.json {
		return writeRaw(stdout, raw)
	}
	if r.Applied {
		fmt.Fprintf(stdout, "lane %s of %s: %s applied (event %s)\n", strconv.Quote(r.Key), r.Destination, r.Action, r.Lane.EventID)
		return nil
	}
	fmt.Fprintf(stdout, "lane %s of %s: %s asked (event %s); the replica consuming the lane applies it when it next looks\n",
		strconv.Quote(r.Key), r.Destination, r.Action, r.Lane.EventID)
	return nil
}

func lanesList(ctx context.Context, c *adminClient, destination string, asJSON bool, stdout io.Writer) error {
	q := url.Values{}
	if destination != "" {
		q.Set("destination", destination)
	}
	var l httpapi.Lanes
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/lanes", q, nil, &l)
	if err != nil {
		return err
	}
	if asJSON {
		return writeRaw(stdout, raw)
	}
	if len(l.Blocked) == 0 {
		fmt.Fprintln(stdout, "no blocked lanes")
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DESTINATION\tKEY\tBLOCKED AT\tREASON\tSTATUS\tATTEMPTS\tEVENT\tACTION\tLAST ERROR")
		for _, b := range l.Blocked {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", b.Destination, strconv.Quote(b.Key),
				b.BlockedAt.UTC().Format(time.RFC3339), oneLine(b.Reason), status(b.LastStatus), b.Attempts, dash(b.EventID), dash(b.Action),
				dash(oneLine(b.LastError)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, p := range l.Consuming {
		fmt.Fprintf(stdout, "%s (order_by: %s, on_exhausted: %s): this replica consumes %d of its %d partitions\n",
			p.Destination, p.OrderBy, p.OnExhausted, len(p.Partitions), p.Of)
	}
	return nil
}
