package apiserver

import (
	"context"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// TestNodeLease, over TLS with real node certificates: a node renews its
// own lease (kept in memory: the store's revision does not move) and reads
// whether it is Ready as stored; it may not renew another's; an unknown
// node gets a 404; a Node sent again unchanged writes nothing.
func TestNodeLease(t *testing.T) {
	e := newTLSEnv(t, time.Hour)
	ctx := context.Background()
	c1, _ := e.node("edge-01")
	if _, err := c1.PutNode(ctx, &api.Node{Meta: api.Meta{Name: "edge-01"}}); err != nil {
		t.Fatal(err)
	}
	c2, _ := e.node("edge-02")
	if _, err := c2.PutNode(ctx, &api.Node{Meta: api.Meta{Name: "edge-02"}}); err != nil {
		t.Fatal(err)
	}
	rev := e.st.Rev()
	if !e.s.Leases().Renewed("edge-01").IsZero() {
		t.Fatal("a lease before any renewal")
	}
	l, err := c1.RenewLease(ctx, "edge-01")
	if err != nil || l.Node != "edge-01" || l.Ready || l.Renewed.IsZero() {
		t.Fatalf("renew own lease (node not ready yet): %+v %v", l, err)
	}
	if got := e.s.Leases().Renewed("edge-01"); !got.Equal(l.Renewed) {
		t.Fatalf("lease kept %v, answered %v", got, l.Renewed)
	}
	if e.st.Rev() != rev {
		t.Fatalf("a lease renewal wrote to the store: revision %d -> %d", rev, e.st.Rev())
	}
	if _, err := c1.RenewLease(ctx, "edge-02"); !client.IsForbidden(err) {
		t.Fatalf("renew another node's lease: %v, want 403", err)
	}
	if _, err := e.client(e.token(api.RoleAdmin, "")).RenewLease(ctx, "nope"); !client.IsNotFound(err) {
		t.Fatalf("renew the lease of an unknown node: %v, want 404", err)
	}

	// Ready as stored, and a Node sent unchanged writes nothing.
	n, err := c1.GetNode(ctx, "edge-01")
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions = []api.Condition{{Type: api.NodeReady, Status: true, LastHeartbeat: time.Now().UTC()}}
	if n, err = c1.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	l, err = c1.RenewLease(ctx, "edge-01")
	if err != nil || !l.Ready {
		t.Fatalf("renew after Ready: %+v %v", l, err)
	}
	// Reads show the lease as the Ready condition's last heartbeat; the
	// stored object keeps the one the node wrote.
	got, err := c1.GetNode(ctx, "edge-01")
	if err != nil || !got.Status.Conditions[0].LastHeartbeat.Equal(l.Renewed) {
		t.Fatalf("GET node after a renewal: heartbeat %v (err %v), want the lease's %v", got.Status.Conditions, err, l.Renewed)
	}
	nodes, err := c1.ListNodes(ctx)
	if err != nil || len(nodes.Items) != 2 || !nodes.Items[0].Status.Conditions[0].LastHeartbeat.Equal(l.Renewed) {
		t.Fatalf("list nodes after a renewal: %+v %v", nodes.Items, err)
	}
	var stored api.Node
	if err := e.st.Get(api.KindNode, "edge-01", &stored); err != nil || !stored.Status.Conditions[0].LastHeartbeat.Equal(n.Status.Conditions[0].LastHeartbeat) {
		t.Fatalf("stored heartbeat %v, want the one written %v", stored.Status.Conditions, n.Status.Conditions)
	}
	rev = e.st.Rev()
	again := *n
	again.Revision = 0
	out, err := c1.PutNode(ctx, &again)
	if err != nil || e.st.Rev() != rev || out.Revision != n.Revision {
		t.Fatalf("unchanged node: err %v, store %d -> %d, answered revision %d (was %d)", err, rev, e.st.Rev(), out.Revision, n.Revision)
	}
}
