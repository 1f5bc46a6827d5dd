package api

import (
	"bytes"
	"encoding/json"

	"github.com/skiff-edge/skiff/configs"
)

// The request and answer bodies of the HTTP API beyond the objects
// themselves. The server (apiserver) and the client (client) both use these,
// so that the wire has one definition.

// List is the answer to GET on a collection: the objects, sorted by name,
// and the store revision they were read at, from which a client watches
// (?watch=1&since=Revision) to miss nothing. The server sends
// List[json.RawMessage]; a client decodes into List[Pod] and so on.
type List[T any] struct {
	Revision int64 `json:"revision"`
	Items    []T   `json:"items"`
}

// UnmarshalJSON takes {"revision":N,"items":[...]} and also a bare array.
func (l *List[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		return json.Unmarshal(b, &l.Items)
	}
	type plain List[T]
	return json.Unmarshal(b, (*plain)(l))
}

// ApplyRequest is the body of POST /v1/apply: a manifest (apps and services
// keyed by name) and an optional dry run that validates and reports without
// writing.
type ApplyRequest struct {
	configs.Manifest
	DryRun bool `json:"dry_run,omitempty"`
}

// Apply actions, one per object of an apply.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
)

// ApplyResult says what an apply did to one object.
type ApplyResult struct {
	Kind   string `json:"kind"` // KindApp or KindService
	Name   string `json:"name"`
	Action string `json:"action"` // one of the Action* constants
}

// ApplyResponse is the answer to POST /v1/apply. Revision is the store
// revision of the write (the current one if nothing changed or on a dry
// run).
type ApplyResponse struct {
	Revision int64         `json:"revision"`
	DryRun   bool          `json:"dry_run,omitempty"`
	Results  []ApplyResult `json:"results"`
}

// ScaleRequest is the body of POST /v1/apps/{name}/scale. Replicas is
// required (a pointer, so that a missing field is told from 0). A non-zero
// Revision makes the write conditional on the app's revision.
type ScaleRequest struct {
	Replicas *int  `json:"replicas"`
	Revision int64 `json:"revision,omitempty"`
}

// RollbackRequest is the body of POST /v1/apps/{name}/rollback (it may be
// empty). TemplateHash picks a revision of the app's history; empty means
// the newest one before the current template.
type RollbackRequest struct {
	TemplateHash string `json:"template_hash,omitempty"`
}

// RestartRequest is the body of POST /v1/apps/{name}/restart (it may be
// empty): a new restart stamp in the app's pod template (see Restart), so
// that every pod is replaced through the app's rolling update. A non-zero
// Revision makes the write conditional on the app's revision.
type RestartRequest struct {
	Revision int64 `json:"revision,omitempty"`
}

// DeleteResponse is the answer to a DELETE: the object as it was last
// written, and, for an app, how many of its pods were deleted at once and
// how many were marked for their agent to stop.
type DeleteResponse struct {
	Object      json.RawMessage `json:"object"`
	PodsDeleted int             `json:"pods_deleted,omitempty"`
	PodsMarked  int             `json:"pods_marked,omitempty"`
}

// ExecRequest is the body of POST /v1/pods/{name}/exec.
type ExecRequest struct {
	Container string   `json:"container,omitempty"`
	Command   []string `json:"command"`
}

// ExecExitHeader is the HTTP trailer (or, when the command could not start,
// the header) that carries the exit code of an exec after its output.
const ExecExitHeader = "Skiff-Exit-Code"

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
	// Raft is what a server's raft configuration says of it: voter,
	// witness (a voter that runs no controllers), nonvoter, or "" when it
	// is not in the configuration (agents; a server not added yet).
	Raft string `json:"raft,omitempty"`
	// Leader: this server is the raft leader.
	Leader bool `json:"leader,omitempty"`
}

// ClusterInfo is what a joining node learns from GET /v1/cluster.
type ClusterInfo struct {
	// Gossip are the alive servers' gossip addresses (host:port).
	Gossip []string `json:"gossip"`
	// Servers are their API addresses (host:port).
	Servers []string `json:"servers"`
}
