package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/cli"
)

func newApplyCmd(g *globals) *cobra.Command {
	var files []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR [-f ...]",
		Short: "Create or update the apps and services of manifests (whole or nothing)",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.Apply(cmd.Context(), c, os.Stdout, files, dryRun)
		}),
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory of *.toml (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate on the server and print what would change, without changing it")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var files []string
	var ignoreNotFound bool
	cmd := &cobra.Command{
		Use:   "delete (-f FILE|DIR | app|service|pod|node NAME)",
		Short: "Delete the apps and services of manifests, or one object (a node: revoke its certificate)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(files) > 0 {
				return cobra.NoArgs(cmd, args)
			}
			if len(args) != 2 {
				return fmt.Errorf("delete wants -f FILE or KIND NAME, got %d arguments", len(args))
			}
			return checkKind(args[0], api.KindApp, api.KindService, api.KindPod, api.KindNode)
		},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if len(files) > 0 {
				return cli.DeleteManifests(cmd.Context(), c, os.Stdout, files, ignoreNotFound)
			}
			kind, _ := cli.ParseKind(args[0])
			return cli.Delete(cmd.Context(), c, os.Stdout, kind, args[1])
		}),
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory of *.toml (repeatable)")
	cmd.Flags().BoolVar(&ignoreNotFound, "ignore-not-found", false, "with -f: an object that is already gone is no error")
	return cmd
}

// checkKind checks that s names one of kinds.
func checkKind(s string, kinds ...string) error {
	k, err := cli.ParseKind(s)
	if err != nil {
		return err
	}
	for _, want := range kinds {
		if k == want {
			return nil
		}
	}
	return fmt.Errorf("cannot use %q here", s)
}

func newGetCmd(g *globals) *cobra.Command {
	var o cli.GetOptions
	cmd := &cobra.Command{
		Use:   "get nodes|apps|pods|services|endpoints|events|configs|secrets [NAME]",
		Short: "List objects as a table or JSON; -w follows changes",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.RangeArgs(1, 2)(cmd, args); err != nil {
				return err
			}
			_, err := cli.ParseKind(args[0])
			return err
		},
		PreRunE: func(*cobra.Command, []string) error {
			_, err := cli.ParseFormat(o.Format)
			return err
		},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			o.Kind, _ = cli.ParseKind(args[0])
			if len(args) == 2 {
				o.Name = args[1]
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.Get(cmd.Context(), c, os.Stdout, o)
		}),
	}
	cmd.Flags().StringVarP(&o.Format, "output", "o", cli.FormatTable, "output format: table, wide or json")
	cmd.Flags().BoolVarP(&o.Watch, "watch", "w", false, "after the list, print a row per change")
	return cmd
}

func newDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe node|app|pod|service NAME",
		Short: "Describe one object with its recent events",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(2)(cmd, args); err != nil {
				return err
			}
			return checkKind(args[0], api.KindNode, api.KindApp, api.KindPod, api.KindService)
		},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			kind, _ := cli.ParseKind(args[0])
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.Describe(cmd.Context(), c, os.Stdout, kind, args[1])
		}),
	}
}

func newScaleCmd(g *globals) *cobra.Command {
	var replicas int
	cmd := &cobra.Command{
		Use:   "scale app NAME --replicas N",
		Short: "Set the number of an app's pods",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(2)(cmd, args); err != nil {
				return err
			}
			if err := checkKind(args[0], api.KindApp); err != nil {
				return err
			}
			if replicas < 0 {
				return fmt.Errorf("--replicas must be >= 0, not %d", replicas)
			}
			return nil
		},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return cli.Scale(cmd.Context(), c, os.Stdout, args[1], replicas)
		}),
	}
	cmd.Flags().IntVar(&replicas, "replicas", 0, "number of pods")
	_ = cmd.MarkFlagRequired("replicas")
	return cmd
}
