package main

import (
	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/configs"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Node config helpers",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the default node config, every key commented (what the .deb installs as /etc/skiff/config.toml)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(configs.DefaultNodeConfigFile())
			return err
		},
	})
	return cmd
}
