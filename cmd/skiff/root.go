package main

import (
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/cli"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// globals are the flags every command has.
type globals struct {
	api   string
	token tokenFlags
	in    io.Reader // standard input, for --token-stdin
}

func newRootCmd() *cobra.Command {
	g := &globals{in: os.Stdin}
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "skiff is a lightweight edge orchestrator",
		SilenceUsage:  true,
		SilenceErrors: true,
		// The root alone is a usage error, not a help page on stdout.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.token.check(cmd)
		},
	}
	root.PersistentFlags().StringVar(&g.api, "api", cli.DefaultAPI(), "API address: unix:///PATH or https://HOST:PORT (env SKIFF_API)")
	g.token.bind(root.PersistentFlags())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })

	root.AddCommand(
		newServerCmd(g),
		newAgentCmd(g),
		newApplyCmd(g),
		newDeleteCmd(g),
		newGetCmd(g),
		newDescribeCmd(g),
		newScaleCmd(g),
		newRolloutCmd(g),
		newLogsCmd(g),
		newExecCmd(g),
		newImagesCmd(g),
		newMembersCmd(g),
		newTokenCmd(g),
		newSnapshotCmd(g),
		newVersionCmd(),
		newConfigCmd(),
	)
	return root
}

// run wraps a command's work so that its errors exit 1 (see failure).
func run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return &failure{err}
		}
		return nil
	}
}

// client returns a client of the API the global flags name, with the token
// of SKIFF_TOKEN, --token-stdin or --token-file. A token of the form K10<CA
// hash>::<secret> (from `skiff token create`, or the join token) pins the
// server's CA and sends its secret as the bearer token; what it may do is
// its role's (docs/security.md).
func (g *globals) client() (*client.Client, error) {
	token, err := g.token.read(g.in, "")
	if err != nil {
		return nil, err
	}
	if tok, err := pki.ParseToken(token); err == nil {
		return client.NewWithConfig(client.Config{Addr: g.api, Token: tok.Secret, TLS: pki.ClientTLSConfig(tok)})
	}
	return client.New(g.api, token)
}

// printError writes err the way the CLI reports failures.
func printError(w io.Writer, err error) { cli.PrintError(w, err) }
