package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// RenewLease renews node's lease (its agent's heartbeat, kept in the
// server's memory: no disk write) and returns it with the node's Ready
// condition as stored.
func (c *Client) RenewLease(ctx context.Context, node string) (api.NodeLease, error) {
	var out api.NodeLease
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/nodes/" + url.PathEscape(node) + "/lease"}, &out)
	return out, err
}
