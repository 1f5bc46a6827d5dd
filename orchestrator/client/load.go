package client

import (
	"context"
	"net/http"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// PutNodeLoad sends node's load report (an agent, for its own node).
func (c *Client) PutNodeLoad(ctx context.Context, node string, l *api.NodeLoad) error {
	return c.do(ctx, request{method: http.MethodPut, path: objPath(api.KindNode, node) + "/load", body: l}, nil)
}

// ServiceStats reads a service's load summed over the nodes.
func (c *Client) ServiceStats(ctx context.Context, name string) (*api.ServiceStats, error) {
	return call[api.ServiceStats](ctx, c, request{method: http.MethodGet, path: objPath(api.KindService, name) + "/stats"})
}

// Stats reads the load of every service and app.
func (c *Client) Stats(ctx context.Context) (*api.StatsList, error) {
	return call[api.StatsList](ctx, c, request{method: http.MethodGet, path: "/v1/stats"})
}

// WakeService asks the server to wake the app of a service that scaled to
// zero (a node's activator): 0 -> 1 replica. It reports whether this call
// woke it.
func (c *Client) WakeService(ctx context.Context, name string) (bool, error) {
	var out struct {
		Woken bool `json:"woken"`
	}
	err := c.do(ctx, request{method: http.MethodPost, path: objPath(api.KindService, name) + "/wake", body: struct{}{}}, &out)
	return out.Woken, err
}
