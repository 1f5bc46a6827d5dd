package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/cli"
)

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout status|history|undo|restart app NAME",
		Short: "Follow, list, undo or start an app's rolling updates",
		Args:  cobra.NoArgs,
	}
	appArgs := func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(2)(cmd, args); err != nil {
			return err
		}
		return checkKind(args[0], api.KindApp)
	}
	var timeout time.Duration
	status := &cobra.Command{
		Use:   "status app NAME",
		Short: "Wait until the app's pods run its current template and are ready",
		Args:  appArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.RolloutStatus(cmd.Context(), c, os.Stdout, args[1], timeout)
		}),
	}
	status.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait forever)")
	history := &cobra.Command{
		Use:   "history app NAME",
		Short: "List the app's pod template revisions",
		Args:  appArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.RolloutHistory(cmd.Context(), c, os.Stdout, args[1])
		}),
	}
	var toTemplate string
	undo := &cobra.Command{
		Use:   "undo app NAME",
		Short: "Return the app to its previous pod template",
		Args:  appArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.RolloutUndo(cmd.Context(), c, os.Stdout, args[1], toTemplate)
		}),
	}
	undo.Flags().StringVar(&toTemplate, "to-template", "", "template hash to return to (default: the previous one)")
	restart := &cobra.Command{
		Use:   "restart app NAME",
		Short: "Replace every pod of the app through its rolling update",
		Args:  appArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.RolloutRestart(cmd.Context(), c, os.Stdout, args[1])
		}),
	}
	cmd.AddCommand(status, history, undo, restart)
	return cmd
}
