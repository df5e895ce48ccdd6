// Command fanout is the Fanout gateway and its tools. main translates the OS and nothing
// else: arguments become options, signals become a context and reload triggers, and the
// error a command returns becomes the exit code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

// Exit codes of every command.
const (
	exitOK      = 0
	exitFailed  = 1 // validation or expectation failure, or the server failed
	exitUsage   = 2
	usageHeader = `fanout: a webhook fan-out gateway for Tencent Cloud IM callbacks

usage:
  fanout serve --config FILE        run the gateway (the default command)
  fanout check FILE...              validate config files (--format json)
  fanout route --config FILE PAYLOAD.json|-|DIR [--query Q] [--expect a,b]
                                    which routes and destinations a callback reaches
  fanout dlq list|show|replay|purge the dead-letter queue (--admin URL --token T)
  fanout trace ID|MSGKEY            a callback's timeline: routes, every attempt, where it stands
  fanout events [filters]           callbacks from the event log, newest first
  fanout replay --since T (--to DEST | --reroute) [filters] [--dry-run]
                                    queue callbacks from the event log again (a backfill)
  fanout tail [filters]             callbacks and attempts as they happen
  fanout lanes list|retry|skip      the blocked lanes of ordered destinations (--admin URL)
  fanout echo --listen ADDR         print every request received (for trying configs)
  fanout secret                     print a new Standard Webhooks signing secret
  fanout version                    version, commit and Go version
  fanout health [--url URL]         exit 0 if the admin port answers /healthz with 200

Run "fanout COMMAND -h" for a command's flags.
`
)

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errReported is an error that was already reported to the user: exit code 1, nothing
// more printed.
var errReported = errors.New("reported")

type command func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error

var commands = map[string]command{
	"serve":   runServe,
	"check":   runCheck,
	"route":   runRoute,
	"dlq":     runDLQ,
	"trace":   runTrace,
	"events":  runEvents,
	"replay":  runReplay,
	"tail":    runTail,
	"lanes":   runLanes,
	"echo":    runEcho,
	"secret":  runSecret,
	"version": runVersion,
	"health":  runHealth,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := "serve"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, usageHeader)
		return exitOK
	}
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "fanout: unknown command %q\n\n%s", name, usageHeader)
		return exitUsage
	}
	ctx, stop := stopOnSignal()
	defer stop()
	err := cmd(ctx, args, stdin, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "fanout %s: %s\n", name, ue.msg)
		return exitUsage
	case errors.Is(err, errReported):
		return exitFailed
	default:
		fmt.Fprintf(stderr, "fanout %s: %v\n", name, err)
		return exitFailed
	}
}

// newFlagSet returns the flag set of one command (name may be "dlq list"), whose -h
// prints the usage line, what the command does, and its flags.
func newFlagSet(name, usage, does string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n\n%s\n", strings.TrimSpace("fanout "+name+" "+usage), does)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses flags that may come before, between or after positional arguments
// (fanout route PAYLOAD --expect a), returning the positional ones. -h prints the
// command's usage to help.
func parseFlags(fs *flag.FlagSet, args []string, help io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, flagError(fs, err, help)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// noArguments parses the flags of a command that takes no positional argument.
func noArguments(fs *flag.FlagSet, args []string, help io.Writer) error {
	rest, err := parseFlags(fs, args, help)
	if err == nil && len(rest) > 0 {
		err = usagef("unexpected argument %q", rest[0])
	}
	return err
}

// flagError turns an error of fs.Parse into what run reports: the usage for -h, a usage
// error otherwise, naming the command that does not take a flag.
func flagError(fs *flag.FlagSet, err error, help io.Writer) error {
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(help)
		fs.Usage()
		return err
	}
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		return usagef("%s does not take --%s (see fanout %s -h)", fs.Name(), strings.TrimPrefix(name, "-"), fs.Name())
	}
	return usagef("%v", err)
}

// stopOnSignal returns a context that the first SIGINT or SIGTERM cancels, for a graceful
// stop. Before canceling it, it gives the signals their default effect back, so that a
// second one ends the process at once, whatever the stop is doing (what was in flight is
// delivered again later, as after a crash). stop releases the signals.
func stopOnSignal() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			signal.Stop(sigs)
			cancel()
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			cancel()
		})
	}
}
