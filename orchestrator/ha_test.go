package orchestrator

import (
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestReconcilerRemovesGoneServers: a server that left is removed at
// once, a failed or unknown one only after the timeout, an alive one and
// this server never; an agent's member of the same name does not count.
func TestReconcilerRemovesGoneServers(t *testing.T) {
	svs := []store.RaftServer{{ID: "self"}, {ID: "left"}, {ID: "failed"}, {ID: "alive"}, {ID: "unknown"}, {ID: "agentname"}}
	members := []cluster.MemberInfo{
		{Name: "self", Tags: cluster.Tags{Role: cluster.RoleServer}, Status: cluster.StatusAlive},
		{Name: "left", Tags: cluster.Tags{Role: cluster.RoleServer}, Status: cluster.StatusLeft},
		{Name: "failed", Tags: cluster.Tags{Role: cluster.RoleServer}, Status: cluster.StatusFailed},
		{Name: "alive", Tags: cluster.Tags{Role: cluster.RoleServer}, Status: cluster.StatusAlive},
		{Name: "agentname", Tags: cluster.Tags{Role: cluster.RoleAgent}, Status: cluster.StatusAlive},
	}
	r := &reconciler{self: "self", after: time.Minute}
	t0 := time.Unix(1000, 0)
	if got := r.step(t0, svs, members); len(got) != 1 || got[0] != "left" {
		t.Fatalf("first step removes %v, want [left]", got)
	}
	if got := r.step(t0.Add(59*time.Second), svs, members); len(got) != 1 || got[0] != "left" {
		t.Fatalf("before the timeout removes %v, want [left]", got)
	}
	got := r.step(t0.Add(61*time.Second), svs, members)
	want := map[string]bool{"left": true, "failed": true, "unknown": true, "agentname": true}
	if len(got) != len(want) {
		t.Fatalf("after the timeout removes %v, want %v", got, want)
	}
	for _, id := range got {
		if !want[id] {
			t.Fatalf("after the timeout removes %v, want %v", got, want)
		}
	}
	// A failed server that comes back is forgiven.
	members[2].Status = cluster.StatusAlive
	r2 := &reconciler{self: "self", after: time.Minute}
	r2.step(t0, svs[:3], members)
	if got := r2.step(t0.Add(2*time.Minute), svs[:3], members); len(got) != 1 || got[0] != "left" {
		t.Fatalf("a failed server back alive: removes %v, want [left]", got)
	}
}
