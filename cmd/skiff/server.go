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
			// listen_tcp in the config turns cluster mode on (so that a
			// unit reading /etc/skiff/config.toml can); --listen-tcp, when
			// given, overrides it either way.
			if cmd.Flags().Changed("listen-tcp") {
				cfg.ListenTCP = listenTCP
			}
			return orchestrator.RunServer(cmd.Context(), orchestrator.ServerConfig{
				Node:   cfg,
				Agent:  agent,
				TCP:    cfg.ListenTCP,
				Logger: logger,
				Ready:  sdReady(logger),
			})
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&agent, "agent", false, "also run this node's agent (single-node default)")
	nf.bind(f, true)
	f.BoolVar(&listenTCP, "listen-tcp", false, "cluster mode (overrides listen_tcp): serve the API over TLS on api_addr for agents (join with the output of skiff token) and gossip on gossip_addr")
	return cmd
}
