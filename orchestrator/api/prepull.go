package api

import (
	"fmt"
	"strings"
	"time"
)

// PrepullStatus is where the pre-pull of a template's images stands, for an
// app whose update asks for it (configs.UpdateSpec.Prepull). The app
// controller keeps it in the app's status, so that a restart of the server
// forgets none of it: while Done is zero the update has not started (the
// app keeps the template its pods run, From), and once set it never goes
// back.
type PrepullStatus struct {
	// TemplateHash is the template whose images are pulled.
	TemplateHash string `json:"template_hash"`
	// From is the template the app keeps while the pull lasts: the newest
	// one that had pods when TemplateHash came.
	From string `json:"from"`
	// Images are the template's image references, sorted.
	Images []string `json:"images"`
	// Started is when the pre-pull began (when the template came).
	Started time.Time `json:"started"`
	// Done is when every eligible node had the images: the update started
	// then. Zero while it waits.
	Done time.Time `json:"done,omitzero"`
	// Nodes are the eligible nodes (Ready, schedulable, matching the
	// template's node selector) at the controller's last pass, by name.
	// Frozen once Done.
	Nodes []PrepullNode `json:"nodes,omitempty"`
}

// PrepullNode is one eligible node's part of a pre-pull.
type PrepullNode struct {
	Name string `json:"name"`
	// Pulled: the node has every image of the template.
	Pulled bool `json:"pulled,omitempty"`
	// Error is the last failure's message ("" after a success).
	Error string `json:"error,omitempty"`
	// Failures counts the failed tries; the next waits for RetryAt.
	Failures int       `json:"failures,omitempty"`
	RetryAt  time.Time `json:"retry_at,omitzero"`
}

// Pending reports whether the pre-pull of template hash still holds the
// update back.
func (s *PrepullStatus) Pending(hash string) bool {
	return s != nil && s.TemplateHash == hash && s.Done.IsZero()
}

// PulledNodes counts the nodes that have the images.
func (s *PrepullStatus) PulledNodes() int {
	n := 0
	for _, nd := range s.Nodes {
		if nd.Pulled {
			n++
		}
	}
	return n
}

// Summary is the pre-pull on one line: "pre-pulling 1/2 nodes; node b:
// pull ...: ... (retry 12:00:05, 2 failures)" or "pre-pulled on 2/2 nodes
// in 1.2s".
func (s *PrepullStatus) Summary() string {
	if !s.Done.IsZero() {
		return fmt.Sprintf("pre-pulled on %d/%d nodes in %s", s.PulledNodes(), len(s.Nodes), s.Done.Sub(s.Started).Round(100*time.Millisecond))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pre-pulling %d/%d nodes", s.PulledNodes(), len(s.Nodes))
	for _, nd := range s.Nodes {
		if nd.Error != "" && !nd.Pulled {
			fmt.Fprintf(&b, "; node %s: %s (%d failures, retry at %s)", nd.Name, nd.Error, nd.Failures, nd.RetryAt.UTC().Format(time.TimeOnly))
		}
	}
	return b.String()
}
