// Command skiff is the one binary of skiff: the server, the node agent and
// the CLI that drives them through the HTTP API. It only wires flags to the
// orchestrator packages; the logic lives there.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/orchestrator/cli"
)

func main() {
	// The containers library re-executes this binary as the container's
	// init process (os.Args[1] == "init") and as the Go parts of a
	// container's shim (containers-shim, containers-destroy; the C part,
	// containers-shim-c, never gets here); Init runs those and never
	// returns for them, so it must come before cobra parses anything.
	containers.Init()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd, err := newRootCmd().ExecuteContextC(ctx)
	interrupted := ctx.Err() != nil
	stop()
	os.Exit(exitCode(os.Stderr, cmd, err, interrupted))
}

// failure marks an error of a command that parsed its arguments and then
// failed: exit code 1. Every other error cobra returns is a usage error.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// exitCode prints err to w and returns the process exit code: 0 ok, 1
// failure, 2 usage, 130 interrupted by a signal, or the exit code of the
// command that skiff exec ran.
func exitCode(w io.Writer, cmd *cobra.Command, err error, interrupted bool) int {
	if err == nil {
		return 0
	}
	var exit *cli.ExitError
	if errors.As(err, &exit) {
		return exit.Code
	}
	var f *failure
	if errors.As(err, &f) {
		if interrupted && errors.Is(err, context.Canceled) {
			fmt.Fprintln(w, "skiff: interrupted")
			return 130
		}
		printError(w, f.err)
		return 1
	}
	fmt.Fprintf(w, "skiff: %s\n", cli.Escape(err.Error()))
	name := "skiff"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	fmt.Fprintf(w, "Run '%s --help' for usage.\n", name)
	return 2
}
