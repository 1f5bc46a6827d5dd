// Package orchestrator is skiff's control plane: RunServer runs the state
// store (store/), the HTTP API (apiserver/), the scheduler and the
// controllers (controller/) in one process, and with ServerConfig.Agent
// also the node agent (agent/), which reaches the API over the unix socket
// and serves the API's logs and exec. Its subpackages hold the object model
// (api/) and the Go client of the API (client/).
//
// In cluster mode (ServerConfig.TCP) the server also serves the API over
// TLS with the CA of cluster/pki and runs this node's gossip member
// (cluster/); gossip.go starts the member and adapts it to what each part
// reads: the node lifecycle (controller.MemberSource: failed members turn
// into NotReady nodes), the agent (agent.Gossip: liveness of the peers, whose
// endpoints leave the load balancer when they fail, and a change signal to
// re-list the server's nodes, which the routes to their pod CIDRs come
// from) and the API (apiserver.Membership: GET /v1/members, /v1/cluster).
// RunAgent is the other side: it joins a node to a server with a join
// token, which gives the node its own certificate (identity.go; renewed
// without a restart), and runs its agent with the gossip (join.go).
//
// Both run as a node (node.go): start phases, each registering its stop,
// and one shutdown path that stops them in reverse.
package orchestrator
