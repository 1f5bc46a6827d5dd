package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator/client"
)

func newMembersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the cluster's gossip members as the server sees them",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ms, err := c.Members(cmd.Context())
			if client.IsNotFound(err) {
				return errors.New("this server runs no gossip: start it with --listen-tcp (cluster mode)")
			}
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATUS\tROLE\tGOSSIP\tIP\tPOD CIDR\tAPI")
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Status, m.Role, m.Addr, dash(m.IP), dash(m.PodCIDR), dash(m.API))
			}
			return tw.Flush()
		}),
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
