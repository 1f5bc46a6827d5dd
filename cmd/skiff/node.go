package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator/cli"
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
			// cli.WriteTable escapes the cells: a member's name and
			// tags come from gossip, which any node can set.
			rows := make([][]string, 0, len(ms))
			for _, m := range ms {
				leader := "-"
				if m.Leader {
					leader = "leader"
				}
				rows = append(rows, []string{m.Name, m.Status, m.Role, dash(m.Raft), leader, m.Addr, dash(m.IP), dash(m.PodCIDR), dash(m.API)})
			}
			return cli.WriteTable(cmd.OutOrStdout(), []string{"NAME", "STATUS", "ROLE", "RAFT", "LEADER", "GOSSIP", "IP", "POD CIDR", "API"}, rows)
		}),
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
