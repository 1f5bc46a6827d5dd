package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// PullImage pulls ref on the nodes (POST /v1/images/pull): one result per
// node. It waits as long as the pulls take (no client timeout; ctx bounds
// it).
func (c *Client) PullImage(ctx context.Context, ref string, nodes api.NodeSelector) (api.NodeImageResults, error) {
	var out api.NodeImageResults
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/images/pull",
		body: api.ImagePullRequest{Ref: ref, Nodes: nodes}, stream: true}, &out)
	return out, err
}

// ListImages lists the images of the nodes (GET /v1/images?nodes=).
func (c *Client) ListImages(ctx context.Context, nodes api.NodeSelector) (api.NodeImageResults, error) {
	q := url.Values{}
	if nodes.All {
		q.Set("nodes", "all")
	} else {
		q.Set("nodes", strings.Join(nodes.Names, ","))
	}
	var out api.NodeImageResults
	// No client timeout: the server bounds each node's answer.
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/images", query: q, stream: true}, &out)
	return out, err
}
