package orchestrator

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestLifecycle drives the server's node lifecycle with gossip views: a
// failed member seen by a majority is NotReady at once; when this server
// then sees most members fail (it is the one cut off) it undoes that mark;
// a member that leaves is NotReady even without a majority; the server's
// own member is never touched.
func TestLifecycle(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now()
	for _, name := range []string{"s", "a", "b", "c"} {
		if _, err := st.Update(func(tx *store.Tx) error {
			return tx.Put(api.KindNode, &api.Node{Meta: api.Meta{Name: name}, Status: api.NodeStatus{
				Conditions: []api.Condition{{Type: api.NodeReady, Status: true, Reason: "AgentReady", LastHeartbeat: now, LastChange: now}}}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	l := &lifecycle{st: st, self: "s", log: slog.Default(), last: map[string]cluster.Status{}}
	view := func(statuses ...cluster.Status) []cluster.MemberInfo {
		var ms []cluster.MemberInfo
		for i, name := range []string{"s", "a", "b", "c"} {
			ms = append(ms, cluster.MemberInfo{Name: name, Status: statuses[i]})
		}
		return ms
	}
	const (
		alive  = cluster.StatusAlive
		failed = cluster.StatusFailed
		left   = cluster.StatusLeft
	)
	steps := []struct {
		name  string
		view  []cluster.MemberInfo
		ready map[string]bool
	}{
		{"all alive", view(alive, alive, alive, alive), map[string]bool{"s": true, "a": true, "b": true, "c": true}},
		{"a fails, 3 of 4 alive", view(alive, failed, alive, alive), map[string]bool{"s": true, "a": false, "b": true, "c": true}},
		{"b and c fail too: minority, undo", view(alive, failed, failed, failed), map[string]bool{"s": true, "a": true, "b": true, "c": true}},
		{"b and c back: a marked again", view(alive, failed, alive, alive), map[string]bool{"s": true, "a": false, "b": true, "c": true}},
		{"c leaves", view(alive, failed, alive, left), map[string]bool{"s": true, "a": false, "b": true, "c": false}},
		{"only b alive besides s: minority, undo a; c stays NotReady", view(alive, failed, failed, left), map[string]bool{"s": true, "a": true, "b": true, "c": false}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			l.update(s.view)
			for name, want := range s.ready {
				var n api.Node
				if err := st.Get(api.KindNode, name, &n); err != nil {
					t.Fatal(err)
				}
				if n.Ready() != want {
					t.Errorf("node %s ready %v, want %v (%+v)", name, n.Ready(), want, n.Status.Conditions)
				}
			}
		})
	}
}
