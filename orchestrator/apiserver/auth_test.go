package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestTokens: tokens made through the API work for their role until they
// are revoked or expire; an unknown id, a wrong secret, a revoked or an
// expired token is a 401 that says which; a rotated join secret stops
// joining at once.
func TestTokens(t *testing.T) {
	e := newTLSEnv(t, time.Hour)
	ctx := context.Background()
	admin := e.token(api.RoleAdmin, "30d")
	ac := e.client(admin)
	if who, err := ac.Whoami(ctx); err != nil || who.Role != api.RoleAdmin || !strings.HasPrefix(admin, who.Token+".") {
		t.Fatalf("whoami: %+v %v", who, err)
	}
	resp, err := ac.CreateToken(ctx, api.TokenRequest{Role: api.RoleRead, TTL: "1h", Description: "dashboard"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Info == nil || resp.Info.Role != api.RoleRead || resp.Info.Expires == nil || time.Until(*resp.Info.Expires) < 59*time.Minute {
		t.Fatalf("created %+v", resp)
	}
	read, err := pki.ParseToken(resp.Token)
	if err != nil || read.CAHash != e.p.CAHash() {
		t.Fatalf("token %q: %v", resp.Token, err)
	}
	rc := e.client(read.Secret)
	if _, err := rc.ListPods(ctx, "", ""); err != nil {
		t.Fatalf("read token lists pods: %v", err)
	}
	toks, err := ac.ListTokens(ctx)
	if err != nil || len(toks) != 2 {
		t.Fatalf("tokens: %+v %v", toks, err)
	}
	raw := serve(e.s, "GET", "/v1/tokens", "").Body.String()
	if strings.Contains(raw, "secret") || strings.Contains(raw, strings.SplitN(read.Secret, ".", 2)[1]) {
		t.Errorf("the token list shows secrets or their hashes: %s", raw)
	}

	// An expired token, written as the API would have a day ago.
	past := time.Now().Add(-time.Minute)
	_, err = e.st.Update(func(tx *store.Tx) error {
		return tx.Create(api.KindToken, &api.Token{Meta: api.Meta{Name: "0ld0ld0ld0ld"},
			Spec: api.TokenSpec{Role: api.RoleAdmin, SecretHash: hashSecret("s3cr3t"), Expires: &past}})
	})
	if err != nil {
		t.Fatal(err)
	}
	id, secret, _ := strings.Cut(read.Secret, ".")
	tests := []struct {
		name, secret, msg string
	}{
		{"unknown id", "ffffffffffff." + secret, "unknown token or wrong secret"},
		{"wrong secret", id + ".0000", "unknown token or wrong secret"},
		{"expired", "0ld0ld0ld0ld.s3cr3t", "token 0ld0ld0ld0ld expired at"},
		{"not a token", "hello", "missing or wrong bearer token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.client(tc.secret).ListNodes(ctx)
			if !client.IsUnauthorized(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want 401 with %q", err, tc.msg)
			}
		})
	}

	if err := ac.RevokeToken(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.ListPods(ctx, "", ""); !client.IsUnauthorized(err) {
		t.Errorf("a revoked token: %v, want 401", err)
	}
	if err := ac.RevokeToken(ctx, id); !client.IsNotFound(err) {
		t.Errorf("revoke twice: %v, want 404", err)
	}

	// Rotation: the old join secret no longer joins; the new one does.
	old := e.p.Token()
	newTok, err := ac.RotateJoinToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client(old.Secret).Whoami(ctx); !client.IsUnauthorized(err) {
		t.Errorf("the rotated join secret: %v, want 401", err)
	}
	nt, err := pki.ParseToken(newTok)
	if err != nil || nt.CAHash != old.CAHash || nt.Secret == old.Secret {
		t.Fatalf("rotated token %q: %v", newTok, err)
	}
	if _, err := e.join("edge-07"); err != nil {
		t.Errorf("join with the new join token: %v", err)
	}

	for _, bad := range []api.TokenRequest{{Role: "node"}, {Role: "root"}, {Role: "read", TTL: "soon"}, {Role: "read", TTL: "-1h"}} {
		if _, err := ac.CreateToken(ctx, bad); err == nil || !strings.Contains(err.Error(), bad.Role) && !strings.Contains(err.Error(), "ttl") {
			t.Errorf("create %+v: %v, want 400", bad, err)
		}
	}
}

// TestNodeRevocation: `skiff delete node` refuses the node's certificate at
// the next request, on the connection it already has; the Node and its pod
// CIDR go; the name may join again with the join token and gets a fresh
// certificate; a name whose certificate is current may not be taken.
func TestNodeRevocation(t *testing.T) {
	e := newTLSEnv(t, time.Hour)
	ctx := context.Background()
	c1, _ := e.node("edge-01")
	n1, err := c1.PutNode(ctx, &api.Node{Meta: api.Meta{Name: "edge-01"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Whoami(ctx); err != nil { // the connection stays open
		t.Fatal(err)
	}

	if _, err := e.join("edge-01"); err == nil || !strings.Contains(err.Error(), "already has a current certificate") {
		t.Fatalf("join as a node whose certificate is current: %v, want 409", err)
	}
	if _, err := e.join("server-1"); err == nil || !strings.Contains(err.Error(), "this server's own node") {
		t.Fatalf("join as the server's node: %v, want 409", err)
	}

	if rec := serve(e.s, "DELETE", "/v1/nodes/edge-01", ""); rec.Code != 200 {
		t.Fatalf("delete node: %d %s", rec.Code, rec.Body)
	}
	_, err = c1.Whoami(ctx)
	if !client.IsRevoked(err) || !strings.Contains(err.Error(), "node:edge-01 was deleted at") || !strings.Contains(err.Error(), "skiff delete node") {
		t.Fatalf("the revoked certificate, next request: %v", err)
	}
	if _, err := c1.PutNode(ctx, &api.Node{Meta: api.Meta{Name: "edge-01"}}); !client.IsRevoked(err) {
		t.Fatalf("the revoked node registers again: %v", err)
	}
	if rec := serve(e.s, "GET", "/v1/nodes/edge-01", ""); rec.Code != 404 {
		t.Fatalf("the Node after delete: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(e.s, "DELETE", "/v1/nodes/edge-01", ""); rec.Code != 404 {
		t.Errorf("delete again: %d %s", rec.Code, rec.Body)
	}

	// The freed pod CIDR goes to the next node.
	c3, _ := e.node("edge-03")
	n3, err := c3.PutNode(ctx, &api.Node{Meta: api.Meta{Name: "edge-03"}})
	if err != nil || n3.Spec.PodCIDR != n1.Spec.PodCIDR {
		t.Fatalf("edge-03 got %q (%v), want the freed %s", n3.Spec.PodCIDR, err, n1.Spec.PodCIDR)
	}

	// Joining again with the join token is allowed: a fresh certificate.
	again, _ := e.node("edge-01")
	if who, err := again.Whoami(ctx); err != nil || who.Node != "edge-01" {
		t.Fatalf("edge-01 joined again: %+v %v", who, err)
	}
	if _, err := c1.Whoami(ctx); !client.IsRevoked(err) {
		t.Errorf("the old certificate after the new join: %v", err)
	}
}

// TestRenew: a node renews with its certificate for a new key; both work
// until the old one ends, then only the new one; a certificate past its
// end is refused on a connection opened before; a renewal asks for the
// caller's own name only.
func TestRenew(t *testing.T) {
	e := newTLSEnv(t, 3*time.Second)
	ctx := context.Background()
	c, h := e.node("edge-01")
	first := h.Load()
	if _, err := c.Whoami(ctx); err != nil {
		t.Fatal(err)
	}

	key, _ := pki.NewNodeKey()
	csr, _ := pki.NewNodeCSR(key, "edge-02")
	if _, err := c.Renew(ctx, csr); err == nil || !strings.Contains(err.Error(), `want "node:edge-01"`) {
		t.Fatalf("renew for another name: %v", err)
	}
	// Renew when an agent would: two thirds into the first one's life, so
	// that the second one outlives it.
	time.Sleep(time.Until(first.RenewAt()))
	csr, _ = pki.NewNodeCSR(key, "edge-01")
	certPEM, err := c.Renew(ctx, csr)
	if err != nil {
		t.Fatal(err)
	}
	second, err := pki.NewIdentity(key, []byte(certPEM), e.p.CACertPEM())
	if err != nil || pki.SerialHex(second.Leaf) == pki.SerialHex(first.Leaf) {
		t.Fatalf("renewed: %v", err)
	}
	// The old certificate still works on its connection until it ends,
	// then gets 401 there too.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Whoami(ctx)
		if client.IsUnauthorized(err) {
			if !strings.Contains(err.Error(), "expired") {
				t.Fatalf("after its end: %v", err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first certificate still works %s after its end", time.Since(first.Leaf.NotAfter))
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	if time.Now().Before(first.Leaf.NotAfter) {
		t.Errorf("refused before its end")
	}
	h2 := &pki.Holder{}
	h2.Set(second)
	if resp, err := e.tlsClient(h2).Get(e.srv.URL + "/v1/whoami"); err != nil || resp.StatusCode != 200 {
		t.Errorf("the renewed certificate after the first one's end: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// A new handshake with an expired certificate fails in TLS already.
	if _, err := e.tlsClient(h).Get(e.srv.URL + "/v1/whoami"); err == nil {
		t.Errorf("a handshake with an expired certificate succeeded")
	}
}

// TestCertificateOfAnotherCA: a client certificate of another CA fails the
// handshake; a server that runs without a CA (no --listen-tcp) answers 503
// to joins and tokens.
func TestCertificateOfAnotherCA(t *testing.T) {
	e := newTLSEnv(t, time.Hour)
	other, err := pki.Load(filepath.Join(t.TempDir(), "other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewNodeKey()
	csrPEM, _ := pki.NewNodeCSR(key, "edge-01")
	csr, _ := pki.ParseNodeCSR(csrPEM, "edge-01")
	cert, err := other.SignNode(csr, "edge-01", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := pki.ClientTLSConfig(pki.Token{CAHash: e.p.CAHash()})
	cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := hc.Get(e.srv.URL + "/v1/whoami")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a certificate of another CA got %d", resp.StatusCode)
	}
	var netErr interface{ Timeout() bool }
	if errors.As(err, &netErr) && netErr.Timeout() {
		t.Fatalf("timeout, not a refusal: %v", err)
	}

	plain, _ := newTestServer(t, "10.96.0.0/16")
	for _, path := range []string{"/v1/join", "/v1/tokens"} {
		if rec := serve(plain, "POST", path, `{}`); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "--listen-tcp") {
			t.Errorf("%s without a CA: %d %s", path, rec.Code, rec.Body)
		}
	}
}
