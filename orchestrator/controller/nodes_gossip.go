package controller

import (
	"context"
	"errors"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// MemberState is a gossip member's state as this server sees it.
type MemberState string

// Member states, after serf's (and memberlist's suspicion).
const (
	MemberAlive MemberState = "alive"
	// MemberSuspect missed probes and has not refuted yet; it turns failed
	// or alive shortly, and counts as alive meanwhile.
	MemberSuspect MemberState = "suspect"
	MemberLeaving MemberState = "leaving"
	// MemberLeft left gracefully: it is not counted among the members.
	MemberLeft MemberState = "left"
	// MemberFailed stopped answering probes.
	MemberFailed MemberState = "failed"
)

// Member is one gossip member as the node lifecycle reads it. Its name is
// its node's name.
type Member struct {
	Name  string
	State MemberState
	// Self is this server's own member, which it never marks.
	Self bool
}

// MemberSource is the gossip view the node lifecycle follows. The server's
// serf member satisfies it through orchestrator's gossip adapter.
type MemberSource interface {
	// Members lists every member the gossip knows, this server's own
	// included, with the state it sees each in now.
	Members() []Member
	// Changed receives a value when Members may have changed. It returns
	// the same channel on every call, which is never closed. A source must
	// not block on it: a channel of one, sent to only if empty, coalesces a
	// burst of changes into one pass, which re-lists the members.
	Changed() <-chan struct{}
}

// Ready condition reasons the gossip side writes.
const (
	reasonGossipFailed   = "NodeGossipFailed"
	reasonNodeLeft       = "NodeLeft"
	reasonGossipMinority = "GossipMinority"
	// sourceGossip is the source of the events it records.
	sourceGossip = "gossip"
)

// followGossip runs the gossip side of the node lifecycle until ctx ends:
// a pass on every change of src's members (level-triggered: each pass
// re-lists them) and on every resync, which retries a mark that failed.
// It shares nothing with the loop goroutine but the store and the config.
func (c *controller) followGossip(ctx context.Context, src MemberSource) {
	l := &gossipLifecycle{c: c, last: map[string]MemberState{}, marked: map[string]bool{}}
	t := time.NewTicker(c.cfg.Resync)
	defer t.Stop()
	for {
		l.pass(src.Members())
		select {
		case <-ctx.Done():
			return
		case <-src.Changed():
		case <-t.C:
		}
	}
}

// gossipLifecycle turns the gossip view into node conditions: a member
// that fails or leaves is NotReady at once (the node controller then drops
// its endpoints and, after NodeGrace, replaces its pods). A member that
// comes back is made Ready by its agent's heartbeat, not here.
type gossipLifecycle struct {
	c *controller
	// last is each member's state at the last pass that acted on it.
	last map[string]MemberState
	// marked are the nodes this server marked NotReady for a failed member.
	marked map[string]bool
}

// pass acts on the members whose state changed since the last pass. A
// server that sees most members failed is more likely the one cut off: it
// then marks nobody failed, undoes the marks it made for failed members
// (the first failure of a partition is seen while the others still look
// alive), and acts again once most members are back. A graceful leave is
// no failure and is acted on regardless.
func (l *gossipLifecycle) pass(ms []Member) {
	log := l.c.nodeLog
	alive, total := 0, 0
	for _, m := range ms {
		if m.State == MemberLeft {
			continue
		}
		total++
		if m.State == MemberAlive || m.State == MemberSuspect {
			alive++
		}
	}
	quorum := 2*alive > total
	if !quorum {
		for name := range l.marked {
			if err := l.undo(name); err != nil {
				log.Warn("undo not ready", "node", name, "err", err)
				continue
			}
			log.Warn("this server sees only a minority of members alive: undid its NotReady mark", "node", name, "alive", alive, "members", total)
			delete(l.marked, name)
			delete(l.last, name)
		}
	}
	for _, m := range ms {
		if m.Self {
			continue
		}
		if prev, seen := l.last[m.Name]; seen && prev == m.State {
			continue
		}
		var reason, msg string
		switch m.State {
		case MemberFailed:
			if !quorum {
				log.Warn("member failed, but this server sees only a minority alive: not marking it", "member", m.Name, "alive", alive, "members", total)
				delete(l.last, m.Name)
				continue
			}
			reason, msg = reasonGossipFailed, "gossip: the node stopped answering probes"
		case MemberAlive:
			delete(l.marked, m.Name) // its heartbeat makes it Ready
		case MemberLeft:
			reason, msg = reasonNodeLeft, "gossip: the node left the cluster"
		}
		l.last[m.Name] = m.State
		if reason == "" {
			continue
		}
		if err := l.mark(m.Name, reason, msg); err != nil {
			log.Warn("mark node not ready", "node", m.Name, "err", err)
			delete(l.last, m.Name) // again on the next pass
			continue
		}
		if m.State == MemberFailed {
			l.marked[m.Name] = true
		}
	}
}

// mark writes node name's Ready condition false (in one transaction, so
// that it cannot undo a write it did not read). A node that is not
// registered or already not ready is left alone.
func (l *gossipLifecycle) mark(name, reason, msg string) error {
	now := l.c.cfg.Now()
	return l.c.update(func(tx *store.Tx) error {
		var n api.Node
		if err := tx.Get(api.KindNode, name, &n); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		cond := readyCondition(&n)
		if cond == nil || !cond.Status {
			return nil
		}
		cond.Status, cond.Reason, cond.Message, cond.LastChange = false, reason, msg, now
		if err := tx.Put(api.KindNode, &n); err != nil {
			return err
		}
		return tx.RecordEvent("nodes/"+name, api.EventWarning, "NodeNotReady", msg, sourceGossip)
	})
}

// undo sets node name's Ready condition true again if it is still false
// for a failed member.
func (l *gossipLifecycle) undo(name string) error {
	now := l.c.cfg.Now()
	return l.c.update(func(tx *store.Tx) error {
		var n api.Node
		if err := tx.Get(api.KindNode, name, &n); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		cond := readyCondition(&n)
		if cond == nil || cond.Status || cond.Reason != reasonGossipFailed {
			return nil
		}
		cond.Status, cond.Reason, cond.Message, cond.LastChange = true, reasonGossipMinority, "gossip: this server saw most members fail, so it trusts no failure it saw", now
		return tx.Put(api.KindNode, &n)
	})
}
