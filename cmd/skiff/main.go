// Command skiff is the one binary of skiff: the server, the node agent and
// the CLI that drives them through the HTTP API. It only wires flags to the
// orchestrator packages; the logic lives there.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/skiff-edge/skiff/orchestrator/cli"
)

func main() {
	// The containers library re-executes this binary as the container's
	// init process (os.Args[1] == "init"); containers.Init() must run here,
	// before cobra parses anything. The containers engineer adds that call.

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	os.Exit(exitCode(err))
}

// failure marks an error of a command that parsed its arguments and then
// failed: exit code 1. Every other error cobra returns is a usage error.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// exitCode prints err to stderr and returns the process exit code: 0 ok, 1
// failure, 2 usage.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var exit *cli.ExitError
	if errors.As(err, &exit) {
		return exit.Code
	}
	var f *failure
	if errors.As(err, &f) {
		printError(os.Stderr, f.err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "skiff: %v\n", err)
	fmt.Fprintln(os.Stderr, "Run 'skiff --help' for usage.")
	return 2
}
