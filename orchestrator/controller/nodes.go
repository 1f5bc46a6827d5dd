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

// heartbeatStale reports whether a node that says it is Ready has not
// reported for longer than timeout. A node that never sent a heartbeat (a
// zero LastHeartbeat, as tests register nodes) is never stale; a timeout of
// 0 turns the check off.
func heartbeatStale(n *api.Node, now time.Time, timeout time.Duration) bool {
	c := readyCondition(n)
	if c == nil || !c.Status || timeout <= 0 || c.LastHeartbeat.IsZero() {
		return false
	}
	return now.Sub(c.LastHeartbeat) > timeout
}

// nodeUp reports whether the node takes pods and serves endpoints: its
// Ready condition is true and its heartbeat is fresh.
func nodeUp(n *api.Node, now time.Time, timeout time.Duration) bool {
	return n.Ready() && !heartbeatStale(n, now, timeout)
}

// downSince returns when a node that is not up went down: the last change
// of its Ready condition, or the heartbeat deadline it missed. It returns
// the zero time when the node does not say (the caller then uses the time
// it first saw the node down).
func downSince(n *api.Node, timeout time.Duration) time.Time {
	c := readyCondition(n)
	switch {
	case c == nil:
		return time.Time{}
	case c.Status: // stale heartbeat
		return c.LastHeartbeat.Add(timeout)
	default:
		return c.LastChange
	}
}

// nodeView is the controllers' view of the nodes at one moment.
type nodeView struct {
	byName map[string]*api.Node
	up     map[string]bool
}

func newNodeView(nodes []*api.Node, now time.Time, timeout time.Duration) *nodeView {
	v := &nodeView{byName: map[string]*api.Node{}, up: map[string]bool{}}
	for _, n := range nodes {
		v.byName[n.Name] = n
		v.up[n.Name] = nodeUp(n, now, timeout)
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
