package main

import (
	"log/slog"
	"os"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator"
)

// defaultConfigFile is read when --config is not given; it may be missing.
const defaultConfigFile = configs.DefaultConfigPath

func newServerCmd() *cobra.Command {
	var (
		configFile string
		agent      bool
		listenTCP  bool
		logLevel   string
		over       configs.NodeConfig
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a skiff server (with --agent: also this node's agent)",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			// Only the default file may be missing: LoadNodeConfig("")
			// then gives the defaults.
			path := ""
			if cmd.Flags().Changed("config") {
				path = configFile
			}
			cfg, err := configs.LoadNodeConfig(path)
			if err != nil {
				return err
			}
			// Flags of the same name override the file.
			for name, v := range map[string][2]*string{
				"data-dir":       {&cfg.DataDir, &over.DataDir},
				"run-dir":        {&cfg.RunDir, &over.RunDir},
				"node-name":      {&cfg.NodeName, &over.NodeName},
				"api-addr":       {&cfg.APIAddr, &over.APIAddr},
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
			return orchestrator.RunServer(cmd.Context(), orchestrator.ServerConfig{
				Node:   cfg,
				Agent:  agent,
				TCP:    listenTCP,
				Logger: logger,
				Ready: func() {
					// Not under systemd (no NOTIFY_SOCKET) this does nothing.
					if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
						logger.Warn("sd_notify failed", "err", err)
					}
				},
			})
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&agent, "agent", false, "also run this node's agent (single-node default)")
	f.StringVar(&configFile, "config", defaultConfigFile, "node config file (TOML)")
	f.StringVar(&over.DataDir, "data-dir", "", "state directory (overrides data_dir)")
	f.StringVar(&over.RunDir, "run-dir", "", "runtime directory (overrides run_dir)")
	f.StringVar(&over.NodeName, "node-name", "", "this node's name (overrides node_name)")
	f.StringVar(&over.APIAddr, "api-addr", "", "TCP address of the TLS API (overrides api_addr)")
	f.StringVar(&over.AdvertiseAddr, "advertise-addr", "", "this node's IP for gossip, API and routes (overrides advertise_addr)")
	f.StringVar(&over.GossipAddr, "gossip-addr", "", "gossip listen address IP:PORT (overrides gossip_addr)")
	f.BoolVar(&listenTCP, "listen-tcp", false, "cluster mode: serve the API over TLS on api_addr for agents (join with `skiff token`) and gossip on gossip_addr")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}
