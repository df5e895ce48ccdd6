package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

// healthTimeout bounds the whole check: connecting, the request and the answer.
const healthTimeout = 2 * time.Second

// defaultHealthURL is /healthz on the default admin.listen; $FANOUT_HEALTH_URL replaces it
// for a gateway whose admin port is elsewhere.
const defaultHealthURL = "http://127.0.0.1:9090/healthz"

// runHealth asks a running gateway whether it is alive: GET --url, exit 0 on 200 and 1
// otherwise. It is the container image's HEALTHCHECK, which has no shell and no curl.
func runHealth(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("health", "[--url URL]",
		"Exits 0 when a running gateway's admin port answers GET /healthz with 200, 1 otherwise:\nthe container image's HEALTHCHECK.")
	// The default is resolved after parsing: a flag default would be printed a second time
	// by -h, after the text that explains it.
	target := fs.String("url", "", "the URL to GET (default $FANOUT_HEALTH_URL, then "+defaultHealthURL+")")
	if err := noArguments(fs, args, stdout); err != nil {
		return err
	}
	if *target == "" {
		*target = cmp.Or(os.Getenv("FANOUT_HEALTH_URL"), defaultHealthURL)
	}
	u, err := url.Parse(*target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--url %q: want an http:// or https:// URL", *target)
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	// Straight to the gateway: no proxy from the environment, no connection kept.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "fanout health: GET %s: %v\n", u.Redacted(), unwrapURLError(err))
		return errReported
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "fanout health: GET %s: %s\n", u.Redacted(), resp.Status)
		return errReported
	}
	fmt.Fprintf(stdout, "fanout health: GET %s: %s\n", u.Redacted(), resp.Status)
	return nil
}

// unwrapURLError drops the url.Error wrapper, whose text repeats the method and URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		if ue.Timeout() {
			return fmt.Errorf("no answer within %s", healthTimeout)
		}
		return ue.Err
	}
	return err
}
