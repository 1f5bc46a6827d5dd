package client

import (
	"context"
	"net/http"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Members returns the cluster's gossip members as the server sees them.
func (c *Client) Members(ctx context.Context) ([]api.Member, error) {
	var l api.List[api.Member]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/members"}, &l)
	return l.Items, err
}

// Cluster returns where the cluster's servers gossip and serve the API.
func (c *Client) Cluster(ctx context.Context) (api.ClusterInfo, error) {
	var ci api.ClusterInfo
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/cluster"}, &ci)
	return ci, err
}
