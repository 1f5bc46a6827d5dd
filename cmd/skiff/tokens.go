package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/cli"
)

// newTokenCmd is `skiff token`: alone it prints the join token from the
// server's data directory; its subcommands manage API tokens through the
// API (admin only: the unix socket as root, or an admin token).
func newTokenCmd(g *globals) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "token [create|list|revoke|rotate]",
		Short: "Print the join token (joins only), or manage API tokens",
		Long: "Alone, print the join token of the server's data directory: it lets a node join (once; the node then\n" +
			"uses its own certificate) and nothing else. The subcommands manage tokens through the API.",
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			t, err := pki.ReadToken(filepath.Join(dataDir, orchestrator.PKIDir))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), t)
			return err
		}),
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", configs.DefaultDataDir, "the server's state directory")
	cmd.AddCommand(newTokenCreateCmd(g), newTokenListCmd(g), newTokenRevokeCmd(g), newTokenRotateCmd(g))
	return cmd
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var req api.TokenRequest
	cmd := &cobra.Command{
		Use:   "create --role join|admin|read|server [--ttl D] [--description TEXT]",
		Short: "Make an API token with a role; it is printed this once",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), cli.Escape(resp.Token))
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Role, "role", "", "join (only joins nodes), read (GET only), admin (everything) or server (joins another server: it gets the CA key)")
	f.StringVar(&req.TTL, "ttl", "", "how long the token works, e.g. 12h or 30d (default: until revoked)")
	f.StringVar(&req.Description, "description", "", "what the token is for, shown by token list")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func newTokenListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the API tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			toks, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(toks))
			for _, t := range toks {
				exp := "never"
				if t.Expires != nil {
					exp = t.Expires.UTC().Format(time.RFC3339)
					if !time.Now().Before(*t.Expires) {
						exp += " (expired)"
					}
				}
				rows = append(rows, []string{t.ID, t.Role, t.Created.UTC().Format(time.RFC3339), exp, dash(t.Description)})
			}
			return cli.WriteTable(cmd.OutOrStdout(), []string{"ID", "ROLE", "CREATED", "EXPIRES", "DESCRIPTION"}, rows)
		}),
	}
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token: it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked\n", args[0])
			return err
		}),
	}
}

func newTokenRotateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Replace the join secret and print the new join token (nodes that joined keep working)",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			tok, err := c.RotateJoinToken(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), cli.Escape(tok))
			return err
		}),
	}
}
