package controller

import (
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// readyCondition returns the node's Ready condition, or nil.
func readyCondition(n *api.Node) *api.Condition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == api.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// downSince returns when a node that is not Ready went down: the last
// change of its Ready condition, or the zero time when it has none.
func downSince(n *api.Node) time.Time {
	c := readyCondition(n)
	if c == nil || c.Status {
		return time.Time{}
	}
	return c.LastChange
}

// heartbeats remembers when the controller saw each node's heartbeat
// change. Staleness is judged by the controller's own clock from that
// moment, never by the heartbeat's timestamp: an agent's clock may be off,
// and a server that restarts gives every node a full timeout to report
// before it counts it gone (an edge site's nodes outlive their server's
// restarts).
type heartbeats map[string]observed

type observed struct {
	hb time.Time // the heartbeat value seen
	at time.Time // when it was first seen, by the controller's clock
}

// deadline notes the node's heartbeat and returns when it goes stale. It
// returns the zero time for a node that sends no heartbeats.
func (h heartbeats) deadline(node string, hb, now time.Time, timeout time.Duration) time.Time {
	if timeout <= 0 || hb.IsZero() {
		delete(h, node)
		return time.Time{}
	}
	o, ok := h[node]
	if !ok || !o.hb.Equal(hb) {
		o = observed{hb: hb, at: now}
		h[node] = o
	}
	return o.at.Add(timeout)
}

// nodeView is the controllers' view of the nodes at one moment. A node is
// up when its Ready condition is true; the node lifecycle controller turns
// it false when heartbeats stop.
type nodeView struct {
	byName map[string]*api.Node
	up     map[string]bool
}

func newNodeView(nodes []*api.Node) *nodeView {
	v := &nodeView{byName: map[string]*api.Node{}, up: map[string]bool{}}
	for _, n := range nodes {
		v.byName[n.Name] = n
		v.up[n.Name] = n.Ready()
	}
	return v
}

// podNodeUp reports whether the pod is bound to a node that is up.
func (v *nodeView) podNodeUp(p *api.Pod) bool {
	return p.Spec.Node != "" && v.up[p.Spec.Node]
}

// podReady reports whether a pod serves: not being deleted, ready by its
// agent's report, and on a node that is up (a pod on a failed node may
// still say ready; we no longer believe it).
func (v *nodeView) podReady(p *api.Pod) bool {
	return p.Spec.Deleting == nil && p.Status.Ready && v.podNodeUp(p)
}
