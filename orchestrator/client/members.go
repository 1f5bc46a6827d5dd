package client

import (
	"context"
	"net/http"
	"net/url"

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

// JoinServer fetches the cluster's server material (a token of role
// server; see docs/ha.md).
func (c *Client) JoinServer(ctx context.Context, req api.ServerJoinRequest) (*api.ServerJoinResponse, error) {
	return call[api.ServerJoinResponse](ctx, c, request{method: http.MethodPost, path: "/v1/join/server", body: req})
}

// AddServer asks the leader to make a server a voter.
func (c *Client) AddServer(ctx context.Context, req api.ServerAddRequest) error {
	return c.do(ctx, request{method: http.MethodPost, path: "/v1/servers", body: req}, nil)
}

// RemoveServer removes a server from the raft configuration.
func (c *Client) RemoveServer(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/v1/servers/" + url.PathEscape(name)}, nil)
}

// Servers lists the raft configuration.
func (c *Client) Servers(ctx context.Context) ([]api.RaftServer, error) {
	var out struct {
		Items []api.RaftServer `json:"items"`
	}
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/servers"}, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}
