package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator/cli"
)

// defaultDataDir is where a server keeps its state unless told otherwise.
const defaultDataDir = "/var/lib/skiff"

func notImplemented(*cobra.Command, []string) error { return cli.ErrNotImplemented }

func newMembersCmd(_ *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the cluster's serf members",
		Args:  cobra.NoArgs,
		RunE:  run(notImplemented),
	}
}

func newTokenCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print the join token for agents",
		Args:  cobra.NoArgs,
		RunE: run(func(*cobra.Command, []string) error {
			t, err := cli.ReadToken(dataDir)
			if err != nil {
				return err
			}
			_, err = fmt.Println(t)
			return err
		}),
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the server's state directory")
	return cmd
}
