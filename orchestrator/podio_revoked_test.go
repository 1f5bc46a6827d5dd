package orchestrator

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestPodIORefusesRevokedNodeCert: the server dials a node's agent for
// logs, exec and images and accepts that node's certificate only; one the
// store records as revoked (the node was deleted; whoever kept its key
// still has a certificate the CA signed for that name) is refused in the
// handshake, before any request is sent. No root needed.
func TestPodIORefusesRevokedNodeCert(t *testing.T) {
	// An agent's pod IO listener holding the old key of node edge-1, with
	// the certificate it was issued.
	asked := make(chan string, 4)
	f := newAgentFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("[]"))
	}))
	st, p, cert := f.st, f.pki, f.cert

	put := func(n *api.Node, c *api.NodeCert) {
		t.Helper()
		if _, err := st.Update(func(tx *store.Tx) error {
			if n != nil {
				if err := tx.Put(api.KindNode, n); err != nil {
					return err
				}
			}
			return tx.Put(api.KindNodeCert, c)
		}); err != nil {
			t.Fatal(err)
		}
	}
	serial := api.CertSerial{Serial: pki.SerialHex(cert), NotAfter: cert.NotAfter}
	node := &api.Node{Meta: api.Meta{Name: "edge-1"}, Status: api.NodeStatus{APIAddr: f.addr, Addresses: []string{"127.0.0.1"}}}
	put(node, &api.NodeCert{Meta: api.Meta{Name: "edge-1"}, Serials: []api.CertSerial{serial}})

	r := &imagesRouter{st: st, pki: p}
	ctx := context.Background()
	if _, err := r.ListImages(ctx, "edge-1"); err != nil {
		t.Fatalf("list images of edge-1 with its current certificate: %v", err)
	}
	<-asked

	// edge-1 is deleted (its certificate revoked) and a node joins again
	// under its name; the old key's holder answers at its address.
	put(nil, &api.NodeCert{Meta: api.Meta{Name: "edge-1"}, Revoked: []api.CertSerial{serial}})
	_, err := r.ListImages(ctx, "edge-1")
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("list images answered by a revoked certificate: err %v, want a refusal naming the revocation", err)
	}
	pr := &podIORouter{st: st, pki: p}
	pod := &api.Pod{Meta: api.Meta{Name: "web-a"}}
	pod.Spec.Node = "edge-1"
	if _, err := pr.Exec(ctx, pod, "", []string{"true"}, nil); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("exec answered by a revoked certificate: err %v, want a refusal naming the revocation", err)
	}
	select {
	case path := <-asked:
		t.Fatalf("the holder of the revoked certificate got a request: %s", path)
	default:
	}
}
