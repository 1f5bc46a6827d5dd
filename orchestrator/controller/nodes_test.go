package controller

import (
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestHeartbeatDeadline(t *testing.T) {
	const timeout = 40 * time.Second
	h := heartbeats{}
	hb := t0.Add(-time.Hour) // an agent whose clock is an hour behind
	if got := h.deadline("n", hb, t0, timeout); !got.Equal(t0.Add(timeout)) {
		t.Fatalf("first sight: deadline %v, want %v (by the controller's clock)", got, t0.Add(timeout))
	}
	if got := h.deadline("n", hb, t0.Add(30*time.Second), timeout); !got.Equal(t0.Add(timeout)) {
		t.Fatalf("same heartbeat: deadline %v, want unchanged", got)
	}
	later := t0.Add(30 * time.Second)
	if got := h.deadline("n", hb.Add(time.Second), later, timeout); !got.Equal(later.Add(timeout)) {
		t.Fatalf("new heartbeat: deadline %v, want %v", got, later.Add(timeout))
	}
	if got := h.deadline("n", time.Time{}, later, timeout); !got.IsZero() {
		t.Fatalf("no heartbeats: deadline %v, want none", got)
	}
	if got := h.deadline("n", hb, later, 0); !got.IsZero() {
		t.Fatalf("timeout off: deadline %v, want none", got)
	}
}

func TestPlanNodes(t *testing.T) {
	const grace = 10 * time.Second
	const timeout = 40 * time.Second
	down := func(name string, since time.Time) *api.Node {
		n := mkNode(name, false, 1, 1, nil)
		n.Status.Conditions[0].LastChange = since
		return n
	}
	withHB := func(name string, hb time.Time) *api.Node {
		n := mkNode(name, true, 1, 1, nil)
		n.Status.Conditions[0].LastHeartbeat = hb
		return n
	}
	tests := []struct {
		name    string
		started time.Time // default t0 - 1h
		nodes   []*api.Node
		pods    []*api.Pod
		seen    heartbeats
		leases  fakeLeases
		stale   []string
		lost    []string
		evict   bool
		next    time.Time
	}{
		{
			name:  "ready nodes without heartbeats",
			nodes: []*api.Node{mkNode("a", true, 1, 1, nil)},
			pods:  []*api.Pod{mkPod("p", "web", onNode("a"))},
		},
		{
			name:  "down within the grace",
			nodes: []*api.Node{down("a", t0.Add(-4*time.Second))},
			pods:  []*api.Pod{mkPod("p", "web", onNode("a"))},
			next:  t0.Add(6 * time.Second),
		},
		{
			name:  "down past the grace",
			nodes: []*api.Node{down("a", t0.Add(-11*time.Second)), mkNode("b", true, 1, 1, nil)},
			pods:  []*api.Pod{mkPod("p", "web", onNode("a")), mkPod("q", "web", onNode("b"))},
			lost:  []string{"a"},
			evict: true,
		},
		{
			name:  "lost node without pods",
			nodes: []*api.Node{down("a", t0.Add(-time.Hour))},
			pods:  []*api.Pod{mkPod("p", "web")},
			lost:  []string{"a"},
		},
		{
			name:    "a restarted controller gives a long-down node a new grace",
			started: t0.Add(-2 * time.Second),
			nodes:   []*api.Node{down("a", t0.Add(-time.Hour))},
			pods:    []*api.Pod{mkPod("p", "web", onNode("a"))},
			next:    t0.Add(8 * time.Second),
		},
		{
			name:  "pod on a node that is gone",
			pods:  []*api.Pod{mkPod("p", "web", onNode("gone"))},
			evict: true,
		},
		{
			name:  "first heartbeat seen now",
			nodes: []*api.Node{withHB("a", t0.Add(-time.Hour))},
			next:  t0.Add(timeout),
		},
		{
			name:  "heartbeat missed",
			nodes: []*api.Node{withHB("a", t0.Add(-time.Hour))},
			seen:  heartbeats{"a": {hb: t0.Add(-time.Hour), at: t0.Add(-41 * time.Second)}},
			stale: []string{"a"},
			next:  t0.Add(-time.Second + grace),
		},
		{
			// The agent renews its lease in memory: its stored heartbeat
			// is old and never changes, yet the node is alive.
			name:   "heartbeat in the store old, lease renewed",
			nodes:  []*api.Node{withHB("a", t0.Add(-time.Hour))},
			seen:   heartbeats{"a": {hb: t0.Add(-time.Hour), at: t0.Add(-41 * time.Second)}},
			leases: fakeLeases{"a": t0.Add(-2 * time.Second)},
			next:   t0.Add(timeout),
		},
		{
			name:   "lease not renewed for the timeout",
			nodes:  []*api.Node{withHB("a", t0.Add(-time.Hour))},
			seen:   heartbeats{"a": {hb: t0.Add(-50 * time.Second), at: t0.Add(-41 * time.Second)}},
			leases: fakeLeases{"a": t0.Add(-50 * time.Second)},
			stale:  []string{"a"},
			next:   t0.Add(-time.Second + grace),
		},
		{
			// A lease by the server's clock while the stored heartbeat
			// (the agent's clock) is ahead: only a change counts.
			name:   "agent clock ahead of the server's",
			nodes:  []*api.Node{withHB("a", t0.Add(time.Hour))},
			seen:   heartbeats{"a": {hb: t0.Add(-6 * time.Second), at: t0.Add(-6 * time.Second)}},
			leases: fakeLeases{"a": t0.Add(-time.Second)},
			next:   t0.Add(timeout),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Logger = slog.New(slog.DiscardHandler)
			cfg.NodeGrace, cfg.HeartbeatTimeout = grace, timeout
			if tt.leases != nil {
				cfg.Leases = tt.leases
			}
			c := newController(nil, cfg)
			c.started = t0.Add(-time.Hour)
			if !tt.started.IsZero() {
				c.started = tt.started
			}
			if tt.seen != nil {
				c.heartbeats = tt.seen
			}
			next, plan := c.planNodes(tt.nodes, tt.pods, t0)
			var stale []string
			for n := range plan.stale {
				stale = append(stale, n)
			}
			if !reflect.DeepEqual(stale, tt.stale) || !reflect.DeepEqual(nonNil(sortedKeys(plan.lost)), nonNil(tt.lost)) || plan.evict != tt.evict {
				t.Fatalf("plan = stale %v lost %v evict %v; want %v %v %v", stale, sortedKeys(plan.lost), plan.evict, tt.stale, tt.lost, tt.evict)
			}
			if !next.Equal(tt.next) {
				t.Fatalf("next = %v, want %v", next, tt.next)
			}
		})
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func TestConfigFromNode(t *testing.T) {
	nc := configs.NodeConfig{NodeGrace: configs.Duration(3 * time.Second)}
	if c := ConfigFromNode(&nc, nil); c.NodeGrace != 3*time.Second || c.Validate() != nil {
		t.Fatalf("node grace %v, validate %v", c.NodeGrace, c.Validate())
	}
	if c := ConfigFromNode(&configs.NodeConfig{}, nil); c.NodeGrace != DefaultConfig().NodeGrace {
		t.Fatalf("unset node grace gave %v", c.NodeGrace)
	}
}

// fakeLeases are leases renewed at fixed times.
type fakeLeases map[string]time.Time

func (f fakeLeases) Renewed(node string) time.Time { return f[node] }
