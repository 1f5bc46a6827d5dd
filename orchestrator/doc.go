// Package orchestrator is skiff's control plane: RunServer runs the state
// store (store/), the HTTP API (apiserver/), the scheduler and the
// controllers (controller/) in one process, and with ServerConfig.Agent
// also the node agent (agent/), which reaches the API over the unix socket
// and serves the API's logs and exec. Its subpackages hold the object model
// (api/) and the Go client of the API (client/).
//
// In cluster mode (ServerConfig.TCP) the server also serves the API over
// TLS with the CA of cluster/pki, runs this node's gossip member
// (cluster/) and turns member failures into NotReady nodes (cluster.go);
// RunAgent is the other side: it joins a node to a server with a join
// token and runs its agent, with routes to every peer's pod CIDR from the
// gossip (join.go).
package orchestrator
