package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fanout-gw/fanout/gateway"
	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/dryrun"
	"github.com/fanout-gw/fanout/gateway/httpapi"
	"github.com/fanout-gw/fanout/gateway/intake"
	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// routeResult is what `fanout route` says about one payload: the dry run the admin port's
// rules playground makes too, after the checks serve makes.
type routeResult = dryrun.Result

// runRoute is a dry run of the rules serve evaluates: which routes match a payload, which
// destinations get it and the exact body each receives.
func runRoute(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("route", "--config FILE [--query Q] [--remote-addr IP] [--expect a,b] [--format text|json] PAYLOAD.json|-|DIR...",
		"Which routes match a callback, which destinations get it, what a respond rule would do, and\nthe exact body each destination would receive: the rules serve runs, without sending.\nThe callback is first checked as serve checks it (SdkAppid, Sign and RequestTime when --query\nhas them, body size and JSON); a refused one is shown with serve's answer, and exits 1.\n- reads the payload from stdin; a folder runs every *.json in it.")
	cfgPath := fs.String("config", "", "config file (default $FANOUT_CONFIG, then config.yaml)")
	query := fs.String("query", "", "query string of the callback, e.g. 'SdkAppid=1400000000&CallbackCommand=...' (default: the first app and the body's CallbackCommand)")
	remote := fs.String("remote-addr", "", "the caller's IP address, for tencent.allow_ips (default: that check is not made)")
	expect := fs.String("expect", "", "comma-separated route names: exit 1 unless exactly these match (--expect= for none)")
	format := formatFlag(fs)
	payloads, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(payloads) == 0 {
		return usagef("no payload given: fanout route --config FILE PAYLOAD.json|-|DIR")
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	if *cfgPath == "" {
		*cfgPath = cmp.Or(os.Getenv("FANOUT_CONFIG"), "config.yaml")
	}
	q, err := url.ParseQuery(*query)
	if err != nil {
		return usagef("invalid --query: %v", err)
	}
	var addr netip.Addr
	if *remote != "" {
		if addr, err = netip.ParseAddr(*remote); err != nil {
			return usagef("invalid --remote-addr %q: want an IP address", *remote)
		}
	}
	cfg, probs := config.Load(*cfgPath)
	if cfg == nil {
		fmt.Fprintln(stderr, probs.Error())
		return errReported
	}
	want := expected(fs, *expect)
	if err := knownRoutes(cfg, want); err != nil {
		return err
	}

	var inputs []payloadInput
	for _, p := range payloads {
		in, err := readPayloads(p, stdin)
		if err != nil {
			return err
		}
		inputs = append(inputs, in...)
	}
	results, failed, err := explainAll(cfg, inputs, q, addr, want)
	if err != nil {
		return err
	}
	if *format == "json" {
		if err := writeIndented(stdout, results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			printRoute(stdout, r)
		}
	}
	if failed {
		return errReported
	}
	return nil
}

// expected is what --expect asks for: nil when it is not given (no expectation), empty
// for --expect= (no route may match).
func expected(fs *flag.FlagSet, expect string) []string {
	var want []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "expect" {
			want = []string{}
			if expect != "" {
				want = strings.Split(expect, ",")
			}
		}
	})
	return want
}

// knownRoutes refuses an --expect that names a route the config does not have: it could
// never be met, and the likely cause is a typo.
func knownRoutes(cfg *config.Config, want []string) error {
	var names []string
	for _, r := range cfg.Routes {
		names = append(names, r.Name)
	}
	for _, w := range want {
		if !slices.Contains(names, w) {
			return fmt.Errorf("--expect names route %q, which %s does not have (its routes: %s)", w, cfg.File, strings.Join(names, ", "))
		}
	}
	return nil
}

// explainAll explains every input; failed is set when one was refused, could not be
// evaluated, or did not match exactly the routes of want (when want is not nil).
func explainAll(cfg *config.Config, inputs []payloadInput, q url.Values, remote netip.Addr, want []string) (results []routeResult, failed bool, err error) {
	for _, in := range inputs {
		r, err := explain(cfg, in, q, remote)
		if err != nil {
			return nil, false, err
		}
		if r.Error != "" {
			failed = true
		} else if want != nil && !slices.Equal(sorted(r.Routes), sorted(want)) {
			r.Error = fmt.Sprintf("expected routes [%s], matched [%s]", strings.Join(want, ","), strings.Join(r.Routes, ","))
			failed = true
		}
		results = append(results, r)
	}
	return results, failed, nil
}

type payloadInput struct {
	name string
	body []byte
}

// readPayloads reads a file, stdin ("-") or every *.json in a folder (sorted).
func readPayloads(p string, stdin io.Reader) ([]payloadInput, error) {
	if p == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return []payloadInput{{"-", b}}, nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	files := []string{p}
	if st.IsDir() {
		files, err = filepath.Glob(filepath.Join(p, "*.json"))
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: no *.json payloads in this folder", p)
		}
	}
	var out []payloadInput
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, payloadInput{f, b})
	}
	return out, nil
}

// explain checks one payload as serve's intake does, then evaluates the rules on it. The
// query is the one serve would get: by default the first app and the body's
// CallbackCommand, then every key of extra.
func explain(cfg *config.Config, in payloadInput, extra url.Values, remote netip.Addr) (routeResult, error) {
	r := routeResult{Payload: in.name, Routes: []string{}, Deliveries: []dryrun.Delivery{}}
	q := url.Values{}
	if len(cfg.Tencent.Apps) > 0 {
		q.Set("SdkAppid", cfg.Tencent.Apps[0].SdkAppID)
	}
	var body struct{ CallbackCommand string }
	if json.Unmarshal(in.body, &body) == nil && body.CallbackCommand != "" {
		q.Set("CallbackCommand", body.CallbackCommand)
	}
	q.Set("contenttype", "json")
	for k, v := range extra {
		q[k] = v
	}
	view, unchecked := checkable(cfg, q, remote)
	r.Unchecked = unchecked
	live, err := gateway.CallbackConfig(view)
	if err != nil {
		return r, err
	}
	cb := &httpapi.Callback{RawQuery: q.Encode(), Body: in.body, ClientIP: remote,
		TooLarge: int64(len(in.body)) > cfg.Server.MaxBodyBytes}
	query, ev, rejected := intake.Check(live, cb)
	r.App, r.Command = query.SdkAppID, query.CallbackCommand
	if rejected != nil {
		r.Status, r.Reason, r.Answer = rejected.Status, rejected.Reason, tencentim.Fail(rejected.Info)
		r.Error = fmt.Sprintf("serve refuses it: %d %s: %s", rejected.Status, rejected.Reason, rejected.Info)
		return r, nil
	}
	r.Status = http.StatusOK
	return dryrun.Evaluate(cfg, r, ev, q, in.body), nil
}

// checkable is cfg without the checks route cannot make, and what they are: Sign when the
// query carries neither Sign nor RequestTime (a dry run of an unsigned payload is the
// common case), the source address when no --remote-addr is given.
func checkable(cfg *config.Config, q url.Values, remote netip.Addr) (*config.Config, []string) {
	view := *cfg
	var unchecked []string
	if q.Get("Sign") == "" && q.Get("RequestTime") == "" {
		view.Tencent.Apps = slices.Clone(cfg.Tencent.Apps)
		for i, a := range view.Tencent.Apps {
			if a.Token != "" && a.SdkAppID == q.Get("SdkAppid") {
				unchecked = append(unchecked, "Sign and RequestTime (the app has a token; give them in --query to check them)")
			}
			view.Tencent.Apps[i].Token = ""
		}
	}
	if !remote.IsValid() && len(cfg.Tencent.AllowIPs) > 0 {
		view.Tencent.AllowIPs = nil
		unchecked = append(unchecked, "the source address (tencent.allow_ips; give --remote-addr to check it)")
	}
	return &view, unchecked
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func printRoute(w io.Writer, r routeResult) {
	fmt.Fprintf(w, "%s  (%s, SdkAppid %s)\n", r.Payload, r.Command, r.App)
	for _, u := range r.Unchecked {
		fmt.Fprintf(w, "  not checked: %s\n", u)
	}
	if r.Status != http.StatusOK {
		fmt.Fprintf(w, "  refused: serve answers %d %s\n\n", r.Status, r.Answer)
		return
	}
	if r.Error != "" && len(r.Routes) == 0 && len(r.Deliveries) == 0 {
		fmt.Fprintf(w, "  error: %s\n\n", r.Error)
		return
	}
	for _, e := range r.RuleErrors {
		fmt.Fprintf(w, "  rule error: %s\n", e)
	}
	if len(r.Routes) == 0 {
		fmt.Fprintln(w, "  routes: none match")
	} else {
		fmt.Fprintf(w, "  routes: %s\n", strings.Join(r.Routes, ", "))
	}
	if r.Respond != nil {
		fmt.Fprintf(w, "  respond: answered synchronously by %s (timeout %s, on failure %s)\n", r.Respond.From, r.Respond.Timeout, r.Respond.OnFailure)
	}
	for _, d := range r.Deliveries {
		fmt.Fprintf(w, "  -> %s  (routes: %s)\n     POST %s\n", d.Destination, strings.Join(d.Routes, ", "), d.URL)
		switch {
		case d.BodyError != "":
			fmt.Fprintf(w, "     body error: %s (the delivery would be dead-lettered)\n", d.BodyError)
		case d.Transformed:
			fmt.Fprintf(w, "     body (transformed): %s\n", d.Body)
		default:
			fmt.Fprintf(w, "     body (original, %d bytes): %s\n", len(d.Body), compact(d.Body))
		}
		printLane(w, d)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
	fmt.Fprintln(w)
}

// compact prints a JSON body on one line (it is sent as is; this is only the display).
func compact(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return string(b)
	}
	return buf.String()
}
