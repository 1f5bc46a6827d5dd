package controller

import (
	"errors"
	"fmt"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// nodePlan is what the node lifecycle controller has to write.
type nodePlan struct {
	// stale nodes say Ready but missed their heartbeat: node → the
	// heartbeat value that went stale and when it did.
	stale map[string]observed
	// lost nodes have been down longer than the grace.
	lost map[string]bool
	// evict: some pod is bound to a lost node or to no known node.
	evict bool
}

func (p nodePlan) writes() bool { return len(p.stale) > 0 || p.evict }

// planNodes is the node lifecycle controller's decision. A Ready node
// needs nothing but a fresh heartbeat (when it sends them): one that misses
// HeartbeatTimeout gets its Ready condition set false. A node down for
// longer than the grace has its pods deleted outright, so that the app
// controller replaces them elsewhere; pods bound to a node that no longer
// exists go at once. (Their endpoints left already: the endpoints
// controller only lists pods on Ready nodes.) When such a node returns, its
// agent finds its pods' objects gone and stops them, so one copy of each
// replica runs. Times before the controller started count from its start,
// so that a server restart never evicts at once. It returns when a grace or
// heartbeat deadline ends next.
func (c *controller) planNodes(nodes []*api.Node, pods []*api.Pod, now time.Time) (time.Time, nodePlan) {
	hb := c.cfg.HeartbeatTimeout
	var next time.Time
	plan := nodePlan{stale: map[string]observed{}, lost: map[string]bool{}}
	known := map[string]bool{}
	for _, n := range nodes {
		known[n.Name] = true
		if n.Ready() {
			delete(c.downSeen, n.Name)
			beat := c.lastBeat(n)
			dl := c.heartbeats.deadline(n.Name, beat, now, hb)
			switch {
			case dl.IsZero():
			case now.Before(dl):
				next = earliest(next, dl)
			default:
				plan.stale[n.Name] = observed{hb: beat, at: dl}
				// The grace runs from the missed deadline.
				next = earliest(next, dl.Add(c.cfg.NodeGrace))
			}
			continue
		}
		since := downSince(n)
		if since.IsZero() {
			s, ok := c.downSeen[n.Name]
			if !ok {
				s = now
				c.downSeen[n.Name] = s
			}
			since = s
		}
		since = later(since, c.started)
		if end := since.Add(c.cfg.NodeGrace); now.Before(end) {
			next = earliest(next, end)
			continue
		}
		plan.lost[n.Name] = true
	}
	for name := range c.downSeen {
		if !known[name] {
			delete(c.downSeen, name)
		}
	}
	for name := range c.heartbeats {
		if !known[name] {
			delete(c.heartbeats, name)
		}
	}
	for _, p := range pods {
		if p.Spec.Node != "" && (plan.lost[p.Spec.Node] || !known[p.Spec.Node]) {
			plan.evict = true
			break
		}
	}
	return next, plan
}

// lastBeat is a Ready node's latest sign of life: its lease (in the
// server's memory) once it renewed one since the server started, else its
// Ready condition's LastHeartbeat (in the store, by the agent's clock).
// Only whether it changes counts (see heartbeats), so the two clocks are
// never compared.
func (c *controller) lastBeat(n *api.Node) time.Time {
	if c.cfg.Leases != nil {
		if l := c.cfg.Leases.Renewed(n.Name); !l.IsZero() {
			return l
		}
	}
	if cond := readyCondition(n); cond != nil {
		return cond.LastHeartbeat
	}
	return time.Time{}
}

// applyNodes writes a node plan.
func (c *controller) applyNodes(plan nodePlan, now time.Time) error {
	for name, o := range plan.stale {
		if err := c.markNodeDown(name, o, now); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
	}
	if plan.evict {
		return c.evict(plan.lost, now)
	}
	return nil
}

// markNodeDown writes a stale node's Ready condition false, unless a new
// heartbeat came in the meantime.
func (c *controller) markNodeDown(name string, stale observed, now time.Time) error {
	return c.update(func(tx *store.Tx) error {
		var n api.Node
		if err := tx.Get(api.KindNode, name, &n); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		cond := readyCondition(&n)
		if cond == nil || !cond.Status || !c.lastBeat(&n).Equal(stale.hb) {
			return nil
		}
		cond.Status = false
		cond.Reason = "NodeStatusUnknown"
		cond.Message = fmt.Sprintf("no heartbeat for %s", now.Sub(stale.at.Add(-c.cfg.HeartbeatTimeout)).Round(time.Second))
		cond.LastChange = stale.at
		if err := tx.Put(api.KindNode, &n); err != nil {
			return err
		}
		c.nodeLog.Warn("node not ready", "node", name, "reason", cond.Message)
		return tx.RecordEvent("nodes/"+name, api.EventWarning, "NodeNotReady", cond.Message, sourceNodes)
	})
}

// evict deletes the pods of lost nodes and of nodes that no longer exist,
// checking again inside the transaction that each node is still down.
func (c *controller) evict(lost map[string]bool, now time.Time) error {
	return c.update(func(tx *store.Tx) error {
		var nodes []*api.Node
		if err := tx.List(api.KindNode, &nodes); err != nil {
			return err
		}
		nv := newNodeView(nodes)
		var pods []*api.Pod
		if err := tx.List(api.KindPod, &pods); err != nil {
			return err
		}
		gone := map[string][]string{}
		for _, p := range pods {
			node := p.Spec.Node
			if node == "" {
				continue
			}
			_, exists := nv.byName[node]
			if exists && (!lost[node] || nv.up[node]) {
				continue
			}
			if err := tx.Delete(api.KindPod, p.Name, p.Revision); err != nil {
				return err
			}
			why := fmt.Sprintf("node %s is gone", node)
			if exists {
				why = fmt.Sprintf("node %s not ready for longer than %s", node, c.cfg.NodeGrace)
			}
			if err := tx.RecordEvent("pods/"+p.Name, api.EventWarning, "NodeLost", "deleted: "+why, sourceNodes); err != nil {
				return err
			}
			gone[node] = append(gone[node], p.Name)
		}
		for node, names := range gone {
			if _, exists := nv.byName[node]; !exists {
				continue
			}
			msg := fmt.Sprintf("not ready for longer than %s: deleted %d pods (%s)", c.cfg.NodeGrace, len(names), someNames(names))
			if err := tx.RecordEvent("nodes/"+node, api.EventWarning, "NodeLost", msg, sourceNodes); err != nil {
				return err
			}
			c.nodeLog.Warn("node lost; pods deleted", "node", node, "pods", len(names))
		}
		return nil
	})
}
