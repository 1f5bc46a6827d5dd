package client

import (
	"context"
	"net/http"
)

// Member is one gossip member as the server sees it (GET /v1/members).
type Member struct {
	Name string `json:"name"`
	// Addr is the member's gossip address, host:port.
	Addr string `json:"addr"`
	// Status is alive, suspect, leaving, left or failed.
	Status string `json:"status"`
	// Role is server or agent.
	Role string `json:"role"`
	// API is a server's API address.
	API     string            `json:"api,omitempty"`
	IP      string            `json:"ip,omitempty"`
	PodCIDR string            `json:"pod_cidr,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Members returns the cluster's gossip members as the server sees them.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var l List[Member]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/members"}, &l)
	return l.Items, err
}

// ClusterInfo is what a joining agent learns from GET /v1/cluster.
type ClusterInfo struct {
	// Gossip are the alive servers' gossip addresses (host:port).
	Gossip []string `json:"gossip"`
	// Servers are their API addresses (host:port).
	Servers []string `json:"servers"`
}

// Cluster returns where the cluster's servers gossip and serve the API.
func (c *Client) Cluster(ctx context.Context) (ClusterInfo, error) {
	var ci ClusterInfo
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/cluster"}, &ci)
	return ci, err
}
