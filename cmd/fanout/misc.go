package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and commit are set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

func buildInfo() (v, c string) {
	v, c = version, commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}

func runVersion(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := newFlagSet("version", "", "Prints the version, the commit and the Go version it was built with.")
	if _, err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	v, c := buildInfo()
	fmt.Fprintf(stdout, "fanout %s (commit %s, %s, %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// runSecret prints a new Standard Webhooks signing secret: whsec_ + base64 of 32 random bytes.
func runSecret(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := newFlagSet("secret", "", "Prints a new Standard Webhooks signing secret (whsec_ and 32 random bytes) for a\ndestination's signing_secret.")
	if _, err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "whsec_"+base64.StdEncoding.EncodeToString(key))
	return nil
}
