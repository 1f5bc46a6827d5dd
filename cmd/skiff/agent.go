package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator"
	"github.com/skiff-edge/skiff/orchestrator/agent"
)

func newAgentCmd(g *globals) *cobra.Command {
	var (
		nf      nodeFlags
		server  string
		cleanup bool
	)
	cmd := &cobra.Command{
		Use: "agent --server HOST:PORT | agent --cleanup",
		Long: "Run this node's agent, joined to a server. The join token comes from SKIFF_TOKEN, --token-stdin,\n" +
			"--token-file or token_file in the node config, never from argv. It is used once: the node then holds\n" +
			"its own certificate in <data_dir>/pki and needs no token to start again.",
		Short: "Run this node's agent, joined to a server (or remove all skiff made here)",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			cfg, logger, err := nf.load(cmd)
			if err != nil {
				return err
			}
			if cleanup {
				return agent.Cleanup(cfg, logger)
			}
			if server == "" && len(cfg.Servers) > 0 {
				server = cfg.Servers[0]
			}
			if server == "" {
				return errors.New("agent: --server HOST:PORT (or servers in the config) is required (or --cleanup)")
			}
			// A node that joined holds a certificate and needs no token:
			// a token file removed after the join is no error (RunAgent
			// says so if the node has no certificate either).
			token, err := g.token.read(g.in, cfg.TokenFile)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("agent: %w", err)
			}
			return orchestrator.RunAgent(cmd.Context(), orchestrator.AgentConfig{
				Node:   cfg,
				Server: server,
				Token:  token,
				Logger: logger,
				Ready:  sdReady(logger),
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "server API address HOST:PORT")
	nf.bind(f, false)
	f.BoolVar(&cleanup, "cleanup", false, "remove every container, mount, cgroup, link, route and rule skiff made on this node")
	return cmd
}
