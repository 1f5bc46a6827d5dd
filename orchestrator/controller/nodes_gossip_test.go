package controller_test

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/controller"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// fakeGossip models a server's gossip view: members whose states change
// over time, with a change notification on each. The server's own member
// is "s".
type fakeGossip struct {
	t       *testing.T
	changed chan struct{}
	// mu protects states.
	mu     sync.Mutex
	states map[string]controller.MemberState
}

func newFakeGossip(t *testing.T, states map[string]controller.MemberState) *fakeGossip {
	// Unbuffered, unlike a real source: a send completes only when the
	// lifecycle waits for the next change, which is what settle needs.
	return &fakeGossip{t: t, changed: make(chan struct{}), states: maps.Clone(states)}
}

func (f *fakeGossip) Members() []controller.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ms []controller.Member
	for _, name := range slices.Sorted(maps.Keys(f.states)) {
		ms = append(ms, controller.Member{Name: name, State: f.states[name], Self: name == "s"})
	}
	return ms
}

func (f *fakeGossip) Changed() <-chan struct{} { return f.changed }

// set changes the members' states, says so, and returns once the
// lifecycle has acted on them: the first send is taken when it waits for
// a change (then it re-lists the members), the second when that pass is
// over.
func (f *fakeGossip) set(states map[string]controller.MemberState) {
	f.t.Helper()
	f.mu.Lock()
	maps.Copy(f.states, states)
	f.mu.Unlock()
	for range 2 {
		select {
		case f.changed <- struct{}{}:
		case <-time.After(10 * time.Second):
			f.t.Fatal("the node lifecycle does not follow the gossip")
		}
	}
}

var _ controller.MemberSource = (*fakeGossip)(nil)

const (
	alive   = controller.MemberAlive
	suspect = controller.MemberSuspect
	failed  = controller.MemberFailed
	left    = controller.MemberLeft
)

// view is the states of s, a, b and c.
func view(s, a, b, c controller.MemberState) map[string]controller.MemberState {
	return map[string]controller.MemberState{"s": s, "a": a, "b": b, "c": c}
}

// TestGossipLifecycle drives the gossip side of the node lifecycle with a
// server "s" and nodes a, b, c, all Ready at first (reason AgentReady),
// through timelines of gossip views. After each step it checks every
// node's Ready condition as "ready/reason". No agent runs, so nothing makes
// a node Ready but the lifecycle's own undo.
func TestGossipLifecycle(t *testing.T) {
	const (
		up       = "true/AgentReady"
		gFailed  = "false/NodeGossipFailed"
		gLeft    = "false/NodeLeft"
		minority = "true/GossipMinority"
	)
	type step struct {
		name string
		view map[string]controller.MemberState
		want map[string]string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "majority marks, minority undoes, leave stays",
			steps: []step{
				{"all alive", view(alive, alive, alive, alive), map[string]string{"s": up, "a": up, "b": up, "c": up}},
				{"a fails, 3 of 4 alive", view(alive, failed, alive, alive), map[string]string{"s": up, "a": gFailed, "b": up, "c": up}},
				{"b and c fail too: minority, undo", view(alive, failed, failed, failed), map[string]string{"s": up, "a": minority, "b": up, "c": up}},
				{"b and c back: a marked again", view(alive, failed, alive, alive), map[string]string{"s": up, "a": gFailed, "b": up, "c": up}},
				{"c leaves", view(alive, failed, alive, left), map[string]string{"s": up, "a": gFailed, "b": up, "c": gLeft}},
				{"b fails too, s alone among 3: undo a; c stays", view(alive, failed, failed, left), map[string]string{"s": up, "a": minority, "b": up, "c": gLeft}},
			},
		},
		{
			name: "a leave is acted on at once, even in a minority",
			steps: []step{
				{"all alive", view(alive, alive, alive, alive), map[string]string{"a": up, "b": up, "c": up}},
				{"a and b fail, c leaves: 1 of 3 alive", view(alive, failed, failed, left), map[string]string{"a": up, "b": up, "c": gLeft}},
			},
		},
		{
			name: "suspects count as alive",
			steps: []step{
				{"a fails, b suspect: 3 of 4 alive", view(alive, failed, suspect, alive), map[string]string{"a": gFailed, "b": up, "c": up}},
				{"c fails too: 2 of 4 alive, minority", view(alive, failed, suspect, failed), map[string]string{"a": minority, "b": up, "c": up}},
				{"b refutes, c back: a marked again", view(alive, failed, alive, alive), map[string]string{"a": gFailed, "b": up, "c": up}},
			},
		},
		{
			name: "a member that comes back is left to its heartbeat",
			steps: []step{
				{"a fails", view(alive, failed, alive, alive), map[string]string{"a": gFailed}},
				{"a alive again: still NotReady until its agent reports", view(alive, alive, alive, alive), map[string]string{"a": gFailed}},
				{"b and c fail: minority, but a's mark is no longer this server's to undo", view(alive, alive, failed, failed), map[string]string{"a": gFailed, "b": up, "c": up}},
			},
		},
		{
			name: "its own member is never marked",
			steps: []step{
				{"s failed in its own view", view(failed, alive, alive, alive), map[string]string{"s": up}},
				{"s left", view(left, alive, alive, alive), map[string]string{"s": up}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGossip(t, view(alive, alive, alive, alive))
			e := start(t, func(c *controller.Config) {
				c.Members = g
				c.NodeGrace = time.Hour // no eviction here; see TestGossipFailureEvicts
			})
			for _, name := range []string{"s", "a", "b", "c"} {
				e.putReadyNode(name)
			}
			for _, s := range tt.steps {
				g.set(s.view)
				for _, name := range slices.Sorted(maps.Keys(s.want)) {
					if got := e.readyState(name); got != s.want[name] {
						t.Errorf("%s: node %s is %s, want %s", s.name, name, got, s.want[name])
					}
				}
			}
		})
	}
}

// TestGossipFailureEvicts: a failed member's node is NotReady at once,
// with an event from the gossip, and its pods are replaced on the other
// nodes after the node grace.
func TestGossipFailureEvicts(t *testing.T) {
	g := newFakeGossip(t, view(alive, alive, alive, alive))
	e := start(t, func(c *controller.Config) { c.Members = g })
	for _, name := range []string{"s", "a", "b", "c"} {
		e.putReadyNode(name)
	}
	e.update(func(tx *store.Tx) error {
		return tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: "web"}, Spec: appSpec(4, "echo:1")})
	})
	e.eventually("a pod per node", 5*time.Second, func() string {
		return wantPerNode(e.perNode("web"), map[string]int{"s": 1, "a": 1, "b": 1, "c": 1})
	})
	g.set(view(alive, failed, alive, alive))
	if got := e.readyState("a"); got != "false/NodeGossipFailed" {
		t.Fatalf("node a is %s right after its member failed", got)
	}
	if evs := e.events("nodes/a"); !hasReason(evs, "NodeNotReady") || evs[len(evs)-1].Source != "gossip" {
		t.Errorf("events of node a: %+v", evs)
	}
	e.eventually("the pod of a replaced after the grace", 10*time.Second, func() string {
		perNode := e.perNode("web")
		if perNode["a"] != 0 || perNode["s"]+perNode["b"]+perNode["c"] != 4 {
			return fmt.Sprintf("pods per node %v", perNode)
		}
		return ""
	})
}

// putReadyNode registers a Ready node, as its agent would.
func (e *env) putReadyNode(name string) {
	e.t.Helper()
	now := time.Now().UTC()
	e.update(func(tx *store.Tx) error {
		return tx.Put(api.KindNode, &api.Node{Meta: api.Meta{Name: name}, Status: api.NodeStatus{
			Allocatable: api.Resources{MilliCPU: 4000, Memory: 4 << 30},
			Conditions:  []api.Condition{{Type: api.NodeReady, Status: true, Reason: "AgentReady", LastHeartbeat: now, LastChange: now}}}})
	})
}

// readyState is node name's Ready condition as "ready/reason".
func (e *env) readyState(name string) string {
	e.t.Helper()
	var n api.Node
	if err := e.st.Get(api.KindNode, name, &n); err != nil {
		e.t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == api.NodeReady {
			return fmt.Sprintf("%v/%s", c.Status, c.Reason)
		}
	}
	return "no Ready condition"
}
