package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/dryrun"
)

// routeResult is what `fanout route` says about one payload: the dry run the admin port's
// rules playground makes too.
type routeResult = dryrun.Result

// runRoute is a dry run of the rules serve evaluates: which routes match a payload, which
// destinations get it and the exact body each receives.
func runRoute(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("route", "--config FILE [--query Q] [--expect a,b] [--format text|json] PAYLOAD.json|-|DIR...",
		"Which routes match a callback, which destinations get it, what a respond rule would do, and\nthe exact body each destination would receive: the rules serve runs, without sending.\n- reads the payload from stdin; a folder runs every *.json in it.")
	cfgPath := fs.String("config", os.Getenv("FANOUT_CONFIG"), "config file (default $FANOUT_CONFIG, then config.yaml)")
	query := fs.String("query", "", "query string of the callback, e.g. 'SdkAppid=1400000000&CallbackCommand=...' (default: the first app and the body's CallbackCommand)")
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
		*cfgPath = "config.yaml"
	}
	q, err := url.ParseQuery(*query)
	if err != nil {
		return usagef("invalid --query: %v", err)
	}
	cfg, probs := config.Load(*cfgPath)
	if cfg == nil {
		fmt.Fprintln(stderr, probs.Error())
		return errReported
	}

	var inputs []payloadInput
	for _, p := range payloads {
		in, err := readPayloads(p, stdin)
		if err != nil {
			return err
		}
		inputs = append(inputs, in...)
	}
	results, failed := explainAll(cfg, inputs, q, expected(fs, *expect))
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

// explainAll explains every input; failed is set when one could not be evaluated or did
// not match exactly the routes of want (when want is not nil).
func explainAll(cfg *config.Config, inputs []payloadInput, q url.Values, want []string) (results []routeResult, failed bool) {
	for _, in := range inputs {
		r := explain(cfg, in, q)
		if r.Error != "" {
			failed = true
		} else if want != nil && !slices.Equal(sorted(r.Routes), sorted(want)) {
			r.Error = fmt.Sprintf("expected routes [%s], matched [%s]", strings.Join(want, ","), strings.Join(r.Routes, ","))
			failed = true
		}
		results = append(results, r)
	}
	return results, failed
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

// explain evaluates one payload exactly as the receiver would after its checks.
func explain(cfg *config.Config, in payloadInput, extra url.Values) routeResult {
	return dryrun.Route(cfg, in.name, in.body, extra)
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func printRoute(w io.Writer, r routeResult) {
	fmt.Fprintf(w, "%s  (%s, SdkAppid %s)\n", r.Payload, r.Command, r.App)
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
