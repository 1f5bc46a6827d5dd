package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator"
	"github.com/skiff-edge/skiff/orchestrator/agent"
)

func newAgentCmd() *cobra.Command {
	var (
		server, configFile, logLevel string
		cleanup                      bool
		over                         configs.NodeConfig
	)
	cmd := &cobra.Command{
		Use:   "agent --server HOST:PORT --token TOKEN | agent --cleanup",
		Short: "Run this node's agent, joined to a server (or remove all skiff made here)",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			path := ""
			if cmd.Flags().Changed("config") {
				path = configFile
			}
			cfg, err := configs.LoadNodeConfig(path)
			if err != nil {
				return err
			}
			for name, v := range map[string][2]*string{
				"data-dir":       {&cfg.DataDir, &over.DataDir},
				"run-dir":        {&cfg.RunDir, &over.RunDir},
				"node-name":      {&cfg.NodeName, &over.NodeName},
				"advertise-addr": {&cfg.AdvertiseAddr, &over.AdvertiseAddr},
				"gossip-addr":    {&cfg.GossipAddr, &over.GossipAddr},
			} {
				if cmd.Flags().Changed(name) {
					*v[0] = *v[1]
				}
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
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
				Ready: func() {
					if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
						logger.Warn("sd_notify failed", "err", err)
					}
				},
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "server API address HOST:PORT")
	f.StringVar(&configFile, "config", defaultConfigFile, "node config file (TOML)")
	f.StringVar(&over.DataDir, "data-dir", "", "state directory (overrides data_dir)")
	f.StringVar(&over.RunDir, "run-dir", "", "runtime directory (overrides run_dir)")
	f.StringVar(&over.NodeName, "node-name", "", "this node's name (overrides node_name)")
	f.StringVar(&over.AdvertiseAddr, "advertise-addr", "", "this node's IP (overrides advertise_addr)")
	f.StringVar(&over.GossipAddr, "gossip-addr", "", "gossip listen address IP:PORT (overrides gossip_addr)")
	f.BoolVar(&cleanup, "cleanup", false, "remove every container, mount, cgroup, link, route and rule skiff made on this node")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}
