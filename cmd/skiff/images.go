package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/agent"
	"github.com/skiff-edge/skiff/orchestrator/cli"
)

// newImagesCmd is `skiff images pull|import|ls|rm`: this node's image store,
// worked on directly (as root, no server needed).
func newImagesCmd(g *globals) *cobra.Command {
	var configFile, dataDir, runDir string
	var force bool
	var nodes string
	// cluster is the API's images of --nodes (images pull|ls --nodes).
	cluster := func(cmd *cobra.Command) (*cli.ClusterImages, error) {
		c, err := g.client()
		if err != nil {
			return nil, err
		}
		return &cli.ClusterImages{API: c, Out: cmd.OutOrStdout(), Err: cmd.ErrOrStderr()}, nil
	}
	// images builds the options from the node config and the flags.
	images := func(cmd *cobra.Command) (*cli.Images, error) {
		path := ""
		if cmd.Flags().Changed("config") {
			path = configFile
		}
		cfg, err := configs.LoadNodeConfig(path)
		if err != nil {
			return nil, err
		}
		if dataDir != "" {
			cfg.DataDir = dataDir
		}
		if runDir != "" {
			cfg.RunDir = runDir
		}
		o := &cli.Images{
			DataDir:  cfg.DataDir,
			StateDir: agent.RuntimeConfig(cfg, nil).StateDir,
			Insecure: cfg.InsecureRegistries,
			Node:     cfg.NodeName,
			Out:      cmd.OutOrStdout(),
			Err:      cmd.ErrOrStderr(),
			TTY:      isTerminal(os.Stderr) && cmd.ErrOrStderr() == os.Stderr,
		}
		if c, err := g.client(); err == nil {
			o.API = c
		}
		return o, nil
	}
	cmd := &cobra.Command{
		Use:   "images pull|import|ls|rm",
		Short: "Manage this node's images (run on the node, as root), or any node's with --nodes (through the API)",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&configFile, "config", defaultConfigFile, "node config file (TOML): data_dir, insecure_registries, node_name")
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "", "the node's state directory (overrides data_dir)")
	cmd.PersistentFlags().StringVar(&runDir, "run-dir", "", "the node's runtime directory, where rm learns which images containers use (overrides run_dir)")
	rm := &cobra.Command{
		Use:   "rm REF",
		Short: "Remove an image (refused while a container or pod of this node uses it)",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			o, err := images(cmd)
			if err != nil {
				return err
			}
			return o.Remove(cmd.Context(), args[0], force)
		}),
	}
	rm.Flags().BoolVar(&force, "force", false, "remove it even if a container or pod of this node uses it")
	pull := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry (on this node; with --nodes on those nodes, through the API)",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("nodes") {
				o, err := cluster(cmd)
				if err != nil {
					return err
				}
				return o.Pull(cmd.Context(), args[0], nodes)
			}
			o, err := images(cmd)
			if err != nil {
				return err
			}
			return o.Pull(cmd.Context(), args[0])
		}),
	}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images (of this node; with --nodes of those nodes, through the API)",
		Args:    cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("nodes") {
				o, err := cluster(cmd)
				if err != nil {
					return err
				}
				return o.List(cmd.Context(), nodes)
			}
			o, err := images(cmd)
			if err != nil {
				return err
			}
			return o.List(cmd.Context(), time.Now())
		}),
	}
	for _, c := range []*cobra.Command{pull, ls} {
		c.Flags().StringVar(&nodes, "nodes", "", `"all" (every Ready node) or node names separated by commas: work through the API (--api) on those nodes' agents`)
	}
	cmd.AddCommand(
		pull,
		&cobra.Command{
			Use:   "import FILE",
			Short: "Import an OCI-layout or docker-save archive",
			Args:  cobra.ExactArgs(1),
			RunE: run(func(cmd *cobra.Command, args []string) error {
				o, err := images(cmd)
				if err != nil {
					return err
				}
				return o.Import(cmd.Context(), args[0])
			}),
		},
		ls,
		rm,
	)
	return cmd
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
