// Package orchestrator is skiff's control plane: RunServer runs the state
// store (store/), the HTTP API (apiserver/), the scheduler and the
// controllers (controller/) in one process, and with ServerConfig.Agent
// also the node agent (agent/), which reaches the API over the unix socket
// and serves the API's logs and exec. Its subpackages hold the object model
// (api/) and the Go client of the API (client/).
package orchestrator
