package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator"
	"github.com/skiff-edge/skiff/orchestrator/agent"
)

func newAgentCmd() *cobra.Command {
	var (
		nf      nodeFlags
		server  string
		cleanup bool
	)
	cmd := &cobra.Command{
		Use:   "agent --server HOST:PORT --token TOKEN | agent --cleanup",
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
			token, _ := cmd.Flags().GetString("token")
			if token == "" && cfg.TokenFile != "" {
				b, err := os.ReadFile(cfg.TokenFile)
				if err != nil {
					return fmt.Errorf("agent: token_file: %w", err)
				}
				token = strings.TrimSpace(string(b))
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
