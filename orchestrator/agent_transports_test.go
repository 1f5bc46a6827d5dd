package orchestrator

import (
	"slices"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// A deleted node's transport (and its kept-alive connections) is dropped
// when the next transport is made: the map does not grow with every node
// that ever joined.
func TestAgentTransportsDropDeletedNodes(t *testing.T) {
	st := storetest.Open(t)
	p := testPKI(t)
	put := func(names ...string) {
		t.Helper()
		if _, err := st.Update(func(tx *store.Tx) error {
			for _, n := range names {
				if err := tx.Put(api.KindNode, &api.Node{Meta: api.Meta{Name: n}}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var ts agentTransports
	put("edge-1", "edge-2")
	ts.client(st, p, "edge-1", "192.0.2.1:7443", 0)
	ts.client(st, p, "edge-2", "192.0.2.2:7443", 0)
	if _, err := st.Update(func(tx *store.Tx) error { return tx.Delete(api.KindNode, "edge-1", 0) }); err != nil {
		t.Fatal(err)
	}
	put("edge-3")
	ts.client(st, p, "edge-3", "192.0.2.3:7443", 0)
	var got []string
	for n := range ts.byNode {
		got = append(got, n)
	}
	slices.Sort(got)
	if want := []string{"edge-2", "edge-3"}; !slices.Equal(got, want) {
		t.Errorf("transports kept for %v, want %v", got, want)
	}
}
