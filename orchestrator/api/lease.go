package api

import "time"

// NodeLease is the answer to a node's lease renewal (POST
// /v1/nodes/{name}/lease): the agent's "I am alive", which the server
// keeps in memory only. Ready is the node's Ready condition as stored: an
// agent that reads false (the node was marked down while it was away)
// writes its Node again to turn it true.
type NodeLease struct {
	Node    string    `json:"node"`
	Ready   bool      `json:"ready"`
	Renewed time.Time `json:"renewed"`
}
