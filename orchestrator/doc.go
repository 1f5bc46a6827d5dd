// Package orchestrator is skiff's control plane: RunServer runs the state
// store (store/), the HTTP API (apiserver/), the scheduler and the
// controllers (controller/) in one process. Its subpackages hold the object
// model (api/), the Go client of the API (client/) and the node agent.
package orchestrator
