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

// failure is an error that was already reported to the user: exit code 1, nothing more printed.
var errReported = errors.New("reported")

type command func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error

var commands = map[string]command{
	"serve":   runServe,
	"check":   runCheck,
	"route":   runRoute,
	"dlq":     runDLQ,
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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

// parseFlags parses flags that may come before, between or after positional arguments
// (fanout route PAYLOAD --expect a), returning the positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(os.Stderr)
				fs.Usage()
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
