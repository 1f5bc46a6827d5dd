package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "skiff is a lightweight edge orchestrator",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.AddCommand(newServerCmd())
	return root
}

// run wraps a command's work so that its errors exit 1 (see failure).
func run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return &failure{err}
		}
		return nil
	}
}

// printError writes err the way the CLI reports failures.
func printError(w io.Writer, err error) { fmt.Fprintf(w, "skiff: %v\n", err) }
