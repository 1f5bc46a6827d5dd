package api

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// NodeImages pulls and lists the images of any node: the server's own
// through its agent in the process, the others through their agents (see
// docs/api.md, "Images across the cluster"). The API server consumes it.
type NodeImages interface {
	// PullImage pulls ref (already validated) into node's image store.
	PullImage(ctx context.Context, node, ref string) (ImageInfo, error)
	// ListImages lists node's image store.
	ListImages(ctx context.Context, node string) ([]ImageInfo, error)
}

// ErrNodeUnreachable: the node's agent cannot be reached (not running,
// no address registered, no agent in this process).
var ErrNodeUnreachable = errors.New("node not reachable")

// ImageInfo is one image of a node's store.
type ImageInfo struct {
	// Refs are the normalized references that name it.
	Refs []string `json:"refs"`
	// ID is the digest of the image config.
	ID string `json:"id"`
	// Digest is the digest of the manifest it came with ("" for an
	// image imported without one).
	Digest string `json:"digest,omitempty"`
	// Size is the uncompressed size of its layers in bytes.
	Size int64 `json:"size"`
	// Created is when it entered the node's store.
	Created time.Time `json:"created"`
}

// ImagePullRequest is the body of POST /v1/images/pull.
type ImagePullRequest struct {
	// Ref is the image reference ("registry/repo:tag").
	Ref string `json:"ref"`
	// Nodes are the node names, or "all" (every Ready node).
	Nodes NodeSelector `json:"nodes"`
}

// NodeSelector is a list of node names, or every node: in JSON either a
// list of names or the string "all".
type NodeSelector struct {
	All   bool
	Names []string
}

// MarshalJSON writes "all" or the list.
func (s NodeSelector) MarshalJSON() ([]byte, error) {
	if s.All {
		return json.Marshal("all")
	}
	if s.Names == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(s.Names)
}

// UnmarshalJSON reads "all" or a list of names.
func (s *NodeSelector) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		if one != "all" {
			return errors.New(`want "all" or a list of node names`)
		}
		*s = NodeSelector{All: true}
		return nil
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return errors.New(`want "all" or a list of node names`)
	}
	*s = NodeSelector{Names: names}
	return nil
}

// NodeImageResult is one node's answer to a pull or a list: OK with its
// image(s), or the error of that node alone.
type NodeImageResult struct {
	Node string `json:"node"`
	OK   bool   `json:"ok"`
	// Images: the image pulled (one), or the node's images (list).
	Images []ImageInfo `json:"images,omitempty"`
	// Error says why this node failed: not Ready, not reachable, or the
	// pull's error with the registry's message.
	Error string `json:"error,omitempty"`
}

// NodeImageResults is the answer of POST /v1/images/pull and GET
// /v1/images: one entry per node, by node name.
type NodeImageResults struct {
	Items []NodeImageResult `json:"items"`
}

// NodeImageEnsurer is a NodeImages that can also put an image on a node
// only when it lacks it (the pre-pull before an update): an image the
// node holds is not pulled again, so no registry is asked.
type NodeImageEnsurer interface {
	// EnsureImage makes node hold ref (already validated).
	EnsureImage(ctx context.Context, node, ref string) (ImageInfo, error)
}
