package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/fanout-gw/fanout/gateway/config"
)

// runCheck loads each file as serve would and prints every problem.
func runCheck(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := newFlagSet("check", "[--strict] [--format text|json] FILE...",
		"Loads each config file as serve does and prints every problem as FILE:LINE:COL: PATH: message,\nwarnings marked. Exits 1 when a file has an error (with --strict, a warning too).")
	format := formatFlag(fs)
	strict := fs.Bool("strict", false, "fail on warnings too")
	files, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usagef("no config file given: fanout check FILE...")
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	type result struct {
		File     string          `json:"file"`
		Valid    bool            `json:"valid"`
		Problems config.Problems `json:"problems"`
	}
	var results []result
	failed := false
	for _, f := range files {
		_, probs := config.Load(f)
		ok := probs.Err() == nil && (!*strict || len(probs.Warnings()) == 0)
		failed = failed || !ok
		if probs == nil {
			probs = config.Problems{}
		}
		results = append(results, result{File: f, Valid: ok, Problems: probs})
	}
	if *format == "json" {
		if err := writeIndented(stdout, results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			for _, p := range r.Problems {
				fmt.Fprintln(stdout, p)
			}
			errs, warns := len(r.Problems.Errors()), len(r.Problems.Warnings())
			status := "ok"
			switch {
			case errs > 0:
				status = "invalid"
			case !r.Valid:
				status = "refused by --strict"
			}
			fmt.Fprintf(stdout, "%s: %s (%s, %s)\n", r.File, status, count(errs, "error"), count(warns, "warning"))
		}
	}
	if failed {
		return errReported
	}
	return nil
}

// count writes n things: "1 error", "2 errors".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// formatFlag adds --format, the output format of check and route.
func formatFlag(fs *flag.FlagSet) *string {
	return fs.String("format", "text", "output format: text or json")
}

func checkFormat(format string) error {
	if format != "text" && format != "json" {
		return usagef("unknown --format %q: want text or json", format)
	}
	return nil
}

// writeIndented writes v as indented JSON, for --format json.
func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
