package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator/cli"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

func newLogsCmd(g *globals) *cobra.Command {
	var o client.LogOptions
	cmd := &cobra.Command{
		Use:   "logs POD [-c CONTAINER] [-f] [--tail N]",
		Short: "Print a pod container's log",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.Logs(cmd.Context(), c, os.Stdout, args[0], o)
		}),
	}
	cmd.Flags().StringVarP(&o.Container, "container", "c", "", "container (needed when the pod has several)")
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVar(&o.Tail, "tail", 0, "start with the last N lines (0: all)")
	return cmd
}

func newExecCmd(g *globals) *cobra.Command {
	var container string
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] -- CMD [ARG...]",
		Short: "Run a command in a pod's container",
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return errors.New("exec wants POD -- CMD [ARG...]")
			}
			return nil
		},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.Exec(cmd.Context(), c, os.Stdout, args[0], container, args[1:])
		}),
	}
	cmd.Flags().StringVarP(&container, "container", "c", "", "container (needed when the pod has several)")
	return cmd
}
