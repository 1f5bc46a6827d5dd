package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator/cli"
)

// defaultDataDir is where a server keeps its state unless told otherwise.
const defaultDataDir = "/var/lib/skiff"

func notImplemented(*cobra.Command, []string) error { return cli.ErrNotImplemented }

func newAgentCmd() *cobra.Command {
	var server, configFile, dataDir, runDir, nodeName, advertise string
	var cleanup bool
	cmd := &cobra.Command{
		Use:   "agent --server HOST:PORT --token TOKEN | agent --cleanup",
		Short: "Run this node's agent, joined to a server (or remove all skiff made here)",
		Args:  cobra.NoArgs,
		RunE:  run(notImplemented),
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "server API address HOST:PORT")
	f.StringVar(&configFile, "config", defaultConfigFile, "node config file (TOML)")
	f.StringVar(&dataDir, "data-dir", "", "state directory (overrides data_dir)")
	f.StringVar(&runDir, "run-dir", "", "runtime directory (overrides run_dir)")
	f.StringVar(&nodeName, "node-name", "", "this node's name (overrides node_name)")
	f.StringVar(&advertise, "advertise-addr", "", "this node's IP (overrides advertise_addr)")
	f.BoolVar(&cleanup, "cleanup", false, "remove every link, route, rule and cgroup skiff made on this node")
	return cmd
}

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
