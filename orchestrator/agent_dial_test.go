package orchestrator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// agentFixture is a store, the cluster PKI and a fake agent of node
// "edge-1" serving h on a TLS listener with edge-1's real certificate, as
// an agent's pod IO listener does. No root needed.
type agentFixture struct {
	st    *store.Store
	pki   *pki.PKI
	cert  *x509.Certificate // edge-1's certificate, which the listener presents
	addr  string            // the listener's host:port
	conns atomic.Int32      // connections the listener accepted
}

func newAgentFixture(t testing.TB, h http.Handler) *agentFixture {
	t.Helper()
	st := storetest.Open(t)
	p := testPKI(t)
	cert, id := issueNode(t, p, "edge-1")
	var holder pki.Holder
	holder.Set(id)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.AgentPodIOTLS(&holder))
	if err != nil {
		t.Fatal(err)
	}
	f := &agentFixture{st: st, pki: p, cert: cert, addr: ln.Addr().String()}
	hs := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	return f
}

// node registers node name with addresses and api_addr.
func (f *agentFixture) node(t testing.TB, name, apiAddr string, addresses ...string) {
	t.Helper()
	if _, err := f.st.Update(func(tx *store.Tx) error {
		return tx.Put(api.KindNode, &api.Node{Meta: api.Meta{Name: name},
			Status: api.NodeStatus{Addresses: addresses, APIAddr: apiAddr}})
	}); err != nil {
		t.Fatal(err)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func imageListHandler(imgs []api.ImageInfo) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(imgs)
	})
}

// TestAgentAddrMustBeNodesOwn: the server dials a node's agent only at an
// api_addr whose host is one of the node's own registered addresses; any
// other host (here another loopback address, where a listener waits) is
// refused with an error that says so, and nothing is dialled there. A
// dial that fails tells the caller only that the node is unreachable,
// never the network error. No root needed.
func TestAgentAddrMustBeNodesOwn(t *testing.T) {
	f := newAgentFixture(t, imageListHandler(nil))
	// A host the node does not claim, with a listener that counts dials.
	other, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	var dialled atomic.Int32
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			dialled.Add(1)
			c.Close()
		}
	}()
	ctx := context.Background()
	ir := &imagesRouter{st: f.st, pki: f.pki, log: quietLog()}
	pr := &podIORouter{st: f.st, pki: f.pki, log: quietLog()}
	pod := &api.Pod{Meta: api.Meta{Name: "web-a"}}
	pod.Spec.Node = "edge-1"

	f.node(t, "edge-1", other.Addr().String(), "127.0.0.1")
	_, err = ir.ListImages(ctx, "edge-1")
	if err == nil || !strings.Contains(err.Error(), "is not on one of the node's own addresses (127.0.0.1); refused") {
		t.Fatalf("images at an address the node does not own: err %v, want a refusal", err)
	}
	if _, err := pr.Exec(ctx, pod, "", []string{"true"}, io.Discard); err == nil || !strings.Contains(err.Error(), "not on one of the node's own addresses") {
		t.Fatalf("exec at an address the node does not own: err %v, want a refusal", err)
	}
	if _, err := pr.Logs(ctx, pod, "", -1, false); err == nil || !strings.Contains(err.Error(), "not on one of the node's own addresses") {
		t.Fatalf("logs at an address the node does not own: err %v, want a refusal", err)
	}
	f.node(t, "edge-1", "agent.example:7443", "127.0.0.1")
	if _, err = ir.ListImages(ctx, "edge-1"); err == nil || !strings.Contains(err.Error(), "is not an IP:port; refused") {
		t.Fatalf("images at a host name: err %v, want a refusal", err)
	}
	if n := dialled.Load(); n != 0 {
		t.Fatalf("the server dialled a host the node does not own %d times", n)
	}

	// Its own address: served.
	f.node(t, "edge-1", f.addr, "10.9.9.9", "127.0.0.1")
	if _, err := ir.ListImages(ctx, "edge-1"); err != nil {
		t.Fatalf("images at the node's own address: %v", err)
	}

	// Its own address, nothing listening: "unreachable", no dial error.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()
	f.node(t, "edge-1", dead, "127.0.0.1")
	for _, call := range []struct {
		name string
		do   func() error
	}{
		{"images", func() error { _, err := ir.ListImages(ctx, "edge-1"); return err }},
		{"exec", func() error { _, err := pr.Exec(ctx, pod, "", []string{"true"}, io.Discard); return err }},
	} {
		err := call.do()
		if err == nil || !strings.HasPrefix(err.Error(), "node edge-1 unreachable") ||
			strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), dead) {
			t.Errorf("%s with nothing listening: err %v, want only \"node edge-1 unreachable\"", call.name, err)
		}
	}
}

// TestImagesAnswerBound: a node's image list is read up to 1 MiB: a big
// real list (1000 images of three long references, measured here) fits,
// a longer answer is refused with an error naming the bound.
func TestImagesAnswerBound(t *testing.T) {
	var big []api.ImageInfo
	for i := range 1000 {
		d := fmt.Sprintf("sha256:%064x", i)
		big = append(big, api.ImageInfo{
			Refs: []string{
				fmt.Sprintf("registry.shop-floor.example.com:5000/line-automation/vision-inspection-service-%04d:v12.34.%d-arm64", i, i),
				fmt.Sprintf("registry.shop-floor.example.com:5000/line-automation/vision-inspection-service-%04d@%s", i, d),
				"docker.io/library/" + strings.Repeat("x", 40) + ":latest"},
			ID: d, Digest: d, Size: 1 << 34, Created: time.Now()})
	}
	data, _ := json.Marshal(big)
	t.Logf("1000 images: %d bytes of JSON (%d per image)", len(data), len(data)/1000)
	var answer atomic.Pointer[[]byte]
	answer.Store(&data)
	f := newAgentFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*answer.Load())
	}))
	f.node(t, "edge-1", f.addr, "127.0.0.1")
	ir := &imagesRouter{st: f.st, pki: f.pki, log: quietLog()}
	got, err := ir.ListImages(context.Background(), "edge-1")
	if err != nil || len(got) != 1000 {
		t.Fatalf("a list of 1000 images: %d images, err %v", len(got), err)
	}
	huge := append([]byte(`[{"id":"`), bytes.Repeat([]byte("a"), 1<<20)...)
	huge = append(huge, `"}]`...)
	answer.Store(&huge)
	if _, err := ir.ListImages(context.Background(), "edge-1"); err == nil || !strings.Contains(err.Error(), "is over 1024 KiB") {
		t.Fatalf("an answer over 1 MiB: err %v, want a refusal naming the bound", err)
	}
}

// TestAgentConnReuse: calls to one node's agent reuse one kept-alive
// connection (GET /v1/images asks every node on every request), and a
// connection verified for one node never carries a request for another
// node that registered the same address: that one dials anew and is
// refused (the agent there has the first node's certificate).
func TestAgentConnReuse(t *testing.T) {
	var asked atomic.Int32
	f := newAgentFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("[]\n"))
	}))
	f.node(t, "edge-1", f.addr, "127.0.0.1")
	ir := &imagesRouter{st: f.st, pki: f.pki, log: quietLog()}
	ctx := context.Background()
	for i := range 5 {
		if _, err := ir.ListImages(ctx, "edge-1"); err != nil {
			t.Fatalf("list %d: %v", i, err)
		}
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("5 lists of one node opened %d connections, want 1", n)
	}
	f.node(t, "edge-2", f.addr, "127.0.0.1")
	before := asked.Load()
	if _, err := ir.ListImages(ctx, "edge-2"); err == nil || !strings.Contains(err.Error(), `answered with the certificate of "node:edge-1"`) {
		t.Fatalf("edge-2 at edge-1's address: err %v, want a refusal of edge-1's certificate", err)
	}
	if asked.Load() != before {
		t.Fatal("a request for edge-2 reached edge-1's agent over edge-1's connection")
	}
}

// BenchmarkAgentListImages: one node's image list (20 images) through the
// server's router, over a kept-alive connection (now) and with a new
// connection and TLS handshake for every call (before: the baseline, a
// fresh router per call).
func BenchmarkAgentListImages(b *testing.B) {
	imgs := make([]api.ImageInfo, 20)
	for i := range imgs {
		imgs[i] = api.ImageInfo{Refs: []string{fmt.Sprintf("registry.local:5000/app-%d:v1", i)}, ID: fmt.Sprintf("sha256:%064x", i)}
	}
	f := newAgentFixture(b, imageListHandler(imgs))
	f.node(b, "edge-1", f.addr, "127.0.0.1")
	ctx := context.Background()
	b.Run("kept-alive", func(b *testing.B) {
		ir := &imagesRouter{st: f.st, pki: f.pki, log: quietLog()}
		for b.Loop() {
			if _, err := ir.ListImages(ctx, "edge-1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("new-connection-each", func(b *testing.B) {
		for b.Loop() {
			ir := &imagesRouter{st: f.st, pki: f.pki, log: quietLog()}
			if _, err := ir.ListImages(ctx, "edge-1"); err != nil {
				b.Fatal(err)
			}
			ir.agents.byNode["edge-1"].tr.CloseIdleConnections()
		}
	})
}

// issueNode makes a key for node name, has p sign its certificate as a
// join does, and returns the certificate and the identity holding both.
func issueNode(t testing.TB, p *pki.PKI, name string) (*x509.Certificate, *pki.Identity) {
	t.Helper()
	key, err := pki.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.NewNodeCSR(key, name)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseNodeCSR(der, name)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := p.SignNode(csr, name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.NewIdentity(key, pki.CertPEM(cert.Raw), p.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return cert, id
}

// testPKI makes a cluster PKI (a fresh CA) in t's temp dir.
func testPKI(t testing.TB) *pki.PKI {
	t.Helper()
	p, err := pki.Load(filepath.Join(t.TempDir(), "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
