package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// ClusterImages runs `skiff images pull|ls --nodes ...`: the images of
// any node, through the API (the server asks each node's agent).
type ClusterImages struct {
	API *client.Client
	// Out receives the table, Err the progress line and the nodes' errors.
	Out, Err io.Writer
}

// ParseNodes reads --nodes: "all" or names separated by commas.
func ParseNodes(s string) (api.NodeSelector, error) {
	if s == "all" {
		return api.NodeSelector{All: true}, nil
	}
	var names []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			return api.NodeSelector{}, fmt.Errorf(`--nodes %q: want "all" or node names separated by commas`, s)
		}
		names = append(names, n)
	}
	return api.NodeSelector{Names: names}, nil
}

// Pull pulls ref on the nodes and writes one row per node that has it;
// it fails if any node failed, after naming each with its error.
func (o *ClusterImages) Pull(ctx context.Context, ref, nodes string) error {
	sel, err := ParseNodes(nodes)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Err, "pulling %s on %s\n", Escape(ref), Escape(nodes))
	res, err := o.API.PullImage(ctx, ref, sel)
	if err != nil {
		return err
	}
	return o.write(res, "pull")
}

// List writes the images of the nodes, one row per node and reference.
func (o *ClusterImages) List(ctx context.Context, nodes string) error {
	sel, err := ParseNodes(nodes)
	if err != nil {
		return err
	}
	res, err := o.API.ListImages(ctx, sel)
	if err != nil {
		return err
	}
	return o.write(res, "list")
}

// write prints the table NODE IMAGE DIGEST SIZE of the nodes that
// answered (no table when none did), then each failed node and its error
// on Err.
func (o *ClusterImages) write(res api.NodeImageResults, what string) error {
	var rows [][]string
	failed := 0
	for _, r := range res.Items {
		if !r.OK {
			failed++
			continue
		}
		for _, img := range r.Images {
			refs := img.Refs
			if len(refs) == 0 {
				refs = []string{"<none>"}
			}
			d := img.Digest
			if d == "" {
				d = img.ID
			}
			for _, ref := range refs {
				rows = append(rows, []string{r.Node, ref, shortDigest(d), FormatBytes(img.Size)})
			}
		}
	}
	if len(rows) > 0 || failed == 0 {
		if err := WriteTable(o.Out, []string{"NODE", "IMAGE", "DIGEST", "SIZE"}, rows); err != nil {
			return err
		}
	}
	for _, r := range res.Items {
		if !r.OK {
			fmt.Fprintf(o.Err, "%s: %s\n", Escape(r.Node), Escape(r.Error))
		}
	}
	if failed > 0 {
		return fmt.Errorf("images %s failed on %d of %d nodes", what, failed, len(res.Items))
	}
	return nil
}
