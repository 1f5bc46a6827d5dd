package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator"
)

// defaultConfigFile is read when --config is not given; it may be missing.
const defaultConfigFile = configs.DefaultConfigPath

func newServerCmd(g *globals) *cobra.Command {
	var (
		nf        nodeFlags
		agent     bool
		listenTCP bool
		join      []string
		witness   bool
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
			if len(join) > 0 {
				cfg.Servers = join
			}
			if witness {
				cfg.Witness = true
			}
			if (len(cfg.Servers) > 0 || cfg.Witness) && !cfg.ListenTCP {
				return errors.New("server: --server and --witness need cluster mode (--listen-tcp or listen_tcp = true)")
			}
			// A joining server's token of role server: SKIFF_TOKEN,
			// --token-stdin, --token-file or token_file, never argv. It
			// is needed only until the server holds the cluster's CA.
			token, err := g.token.read(g.in, cfg.TokenFile)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("server: %w", err)
			}
			return orchestrator.RunServer(cmd.Context(), orchestrator.ServerConfig{
				Node:   cfg,
				Agent:  agent,
				TCP:    cfg.ListenTCP,
				Token:  token,
				Logger: logger,
				Ready:  sdReady(logger),
			})
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&agent, "agent", false, "also run this node's agent (single-node default)")
	nf.bind(f, true)
	f.StringSliceVar(&join, "server", nil, "join the cluster of the server at HOST:PORT as another server (overrides servers; with a token of role server from token_file, SKIFF_TOKEN or --token-stdin)")
	f.BoolVar(&witness, "witness", false, "run as a witness (as witness = true): a raft voter that runs no controllers and serves no writes")
	cmd.AddCommand(newServerRemoveCmd(g))
	f.BoolVar(&listenTCP, "listen-tcp", false, "cluster mode (overrides listen_tcp): serve the API over TLS on api_addr for agents (join with the output of skiff token) and gossip on gossip_addr")
	return cmd
}

// newServerRemoveCmd removes a server from the raft configuration.
func newServerRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a server (a dead one) from the raft configuration; on the leader, or followed to it",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RemoveServer(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "server %s removed\n", args[0])
			return err
		}),
	}
}
