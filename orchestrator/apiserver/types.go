package apiserver

import (
	"encoding/json"

	"github.com/skiff-edge/skiff/configs"
)

// List is the answer to GET on a collection: the objects, sorted by name,
// and the store revision they were read at, from which a client watches
// (?watch=1&since=Revision) to miss nothing.
type List struct {
	Revision int64           `json:"revision"`
	Items    json.RawMessage `json:"items"`
}

// ApplyRequest is the body of POST /v1/apply: a manifest (apps and services
// keyed by name) and an optional dry run that validates and reports without
// writing.
type ApplyRequest struct {
	configs.Manifest
	DryRun bool `json:"dry_run,omitempty"`
}

// Apply actions, per object.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
)

// ApplyResult says what an apply did to one object.
type ApplyResult struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"`
}

// ApplyResponse is the answer to POST /v1/apply. Revision is the store
// revision of the write (the current one if nothing changed or on a dry
// run).
type ApplyResponse struct {
	Revision int64         `json:"revision"`
	DryRun   bool          `json:"dry_run,omitempty"`
	Results  []ApplyResult `json:"results"`
}

// ScaleRequest is the body of POST /v1/apps/{name}/scale. A non-zero
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

// DeleteResponse is the answer to a DELETE: the object as it was last
// written, and, for an app, how many of its pods were deleted at once and
// how many were marked for their agent to stop.
type DeleteResponse struct {
	Object      json.RawMessage `json:"object"`
	PodsDeleted int             `json:"pods_deleted,omitempty"`
	PodsMarked  int             `json:"pods_marked,omitempty"`
}
