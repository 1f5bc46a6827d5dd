package main

import (
	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator"
)

// defaultConfigFile is read when --config is not given; it may be missing.
const defaultConfigFile = configs.DefaultConfigPath

func newServerCmd() *cobra.Command {
	var (
		nf        nodeFlags
		agent     bool
		listenTCP bool
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a skiff server (with --agent: also this node's agent)",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			cfg, logger, err := nf.load(cmd)
			if err != nil {
				return err
			}
			return orchestrator.RunServer(cmd.Context(), orchestrator.ServerConfig{
				Node:   cfg,
				Agent:  agent,
				TCP:    listenTCP,
				Logger: logger,
				Ready:  sdReady(logger),
			})
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&agent, "agent", false, "also run this node's agent (single-node default)")
	nf.bind(f, true)
	f.BoolVar(&listenTCP, "listen-tcp", false, "cluster mode: serve the API over TLS on api_addr for agents (join with the output of skiff token) and gossip on gossip_addr")
	return cmd
}
