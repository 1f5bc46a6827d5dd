package main

import (
	"log/slog"
	"os"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skiff-edge/skiff/configs"
)

// nodeFlags are the flags that `skiff server` and `skiff agent` share: the
// node config file, the flags that override its keys of the same name, and
// the log level.
type nodeFlags struct {
	configFile string
	logLevel   string
	over       configs.NodeConfig
}

// overrides maps each override flag to the config field it sets and the
// field that holds the flag's value.
func (n *nodeFlags) overrides(cfg *configs.NodeConfig) map[string][2]*string {
	return map[string][2]*string{
		"data-dir":       {&cfg.DataDir, &n.over.DataDir},
		"run-dir":        {&cfg.RunDir, &n.over.RunDir},
		"node-name":      {&cfg.NodeName, &n.over.NodeName},
		"api-addr":       {&cfg.APIAddr, &n.over.APIAddr},
		"advertise-addr": {&cfg.AdvertiseAddr, &n.over.AdvertiseAddr},
		"gossip-addr":    {&cfg.GossipAddr, &n.over.GossipAddr},
	}
}

// bind defines the flags on f; withAPI adds --api-addr (servers only).
func (n *nodeFlags) bind(f *pflag.FlagSet, withAPI bool) {
	f.StringVar(&n.configFile, "config", defaultConfigFile, "node config file (TOML)")
	f.StringVar(&n.over.DataDir, "data-dir", "", "state directory (overrides data_dir)")
	f.StringVar(&n.over.RunDir, "run-dir", "", "runtime directory (overrides run_dir)")
	f.StringVar(&n.over.NodeName, "node-name", "", "this node's name (overrides node_name)")
	if withAPI {
		f.StringVar(&n.over.APIAddr, "api-addr", "", "TCP address of the TLS API (overrides api_addr)")
	}
	f.StringVar(&n.over.AdvertiseAddr, "advertise-addr", "", "this node's IP for gossip, API and routes (overrides advertise_addr)")
	f.StringVar(&n.over.GossipAddr, "gossip-addr", "", "gossip listen address IP:PORT (overrides gossip_addr)")
	f.StringVar(&n.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// load reads the node config (only the default file may be missing: then
// the defaults apply), lets the flags that were given override it,
// validates the result, and makes the process's logger at --log-level.
func (n *nodeFlags) load(cmd *cobra.Command) (configs.NodeConfig, *slog.Logger, error) {
	path := ""
	if cmd.Flags().Changed("config") {
		path = n.configFile
	}
	cfg, err := configs.LoadNodeConfig(path)
	if err != nil {
		return cfg, nil, err
	}
	for name, v := range n.overrides(&cfg) {
		if cmd.Flags().Changed(name) {
			*v[0] = *v[1]
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(n.logLevel)); err != nil {
		return cfg, nil, err
	}
	return cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// sdReady tells systemd the service is ready; without NOTIFY_SOCKET (not
// under systemd) it does nothing.
func sdReady(logger *slog.Logger) func() {
	return func() {
		if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
			logger.Warn("sd_notify failed", "err", err)
		}
	}
}
