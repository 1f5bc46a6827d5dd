package apiserver

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// tlsEnv is an API served as on the TCP listener: TLS with the cluster
// CA's serving certificate, client certificates verified against the CA,
// every request authenticated (TCPHandler). Nothing here needs root.
type tlsEnv struct {
	t   testing.TB
	s   *Server
	st  *store.Store
	p   *pki.PKI
	srv *httptest.Server
}

func newTLSEnv(t testing.TB, validity time.Duration) *tlsEnv {
	t.Helper()
	s, st := newTestServer(t, "10.96.0.0/16")
	p, err := pki.Load(filepath.Join(t.TempDir(), "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.EnableJoin(JoinConfig{PKI: p, GossipKey: p.GossipKey, CertValidity: validity, LocalNode: "server-1"})
	srv := httptest.NewUnstartedServer(s.TCPHandler())
	srv.TLS = p.ServerTLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &tlsEnv{t: t, s: s, st: st, p: p, srv: srv}
}

// client returns a client of the TLS API with a bearer token (the secret
// part of a K10 token, as the CLI sends it), pinning the CA.
func (e *tlsEnv) client(secret string) *client.Client {
	e.t.Helper()
	c, err := client.NewWithConfig(client.Config{Addr: e.srv.URL, Token: secret,
		TLS: pki.ClientTLSConfig(pki.Token{CAHash: e.p.CAHash()})})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.CloseIdleConnections)
	return c
}

// token makes a token of role with ttl through the API (as the local
// admin) and returns its secret part, <id>.<secret>.
func (e *tlsEnv) token(role string, ttl string) string {
	e.t.Helper()
	rec := serve(e.s, "POST", "/v1/tokens", `{"role":"`+role+`","ttl":"`+ttl+`"}`)
	if rec.Code != http.StatusCreated {
		e.t.Fatalf("create %s token: %d %s", role, rec.Code, rec.Body)
	}
	var resp api.TokenResponse
	decodeBody(e.t, rec.Body.Bytes(), &resp)
	tok, err := pki.ParseToken(resp.Token)
	if err != nil || tok.CAHash != e.p.CAHash() {
		e.t.Fatalf("token %q: %v", resp.Token, err)
	}
	return tok.Secret
}

// node joins as name with the join secret (as an agent does: a key made
// here, a CSR) and returns a client that presents the node's certificate,
// and the holder it presents.
func (e *tlsEnv) node(name string) (*client.Client, *pki.Holder) {
	e.t.Helper()
	id, err := e.join(name)
	if err != nil {
		e.t.Fatalf("join %s: %v", name, err)
	}
	h := &pki.Holder{}
	h.Set(id)
	c, err := client.NewWithConfig(client.Config{Addr: e.srv.URL, TLS: pki.NodeTLSConfig(e.p.CAHash(), h)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.CloseIdleConnections)
	return c, h
}

// join sends a join for name with the join secret.
func (e *tlsEnv) join(name string) (*pki.Identity, error) {
	key, err := pki.NewNodeKey()
	if err != nil {
		return nil, err
	}
	csr, err := pki.NewNodeCSR(key, name)
	if err != nil {
		return nil, err
	}
	resp, err := e.client(e.p.Token().Secret).Join(context.Background(), api.JoinRequest{Node: name, CSR: string(csr)})
	if err != nil {
		return nil, err
	}
	return pki.NewIdentity(key, []byte(resp.Certificate), []byte(resp.CA))
}

// tlsClient is a bare HTTP client of the env's server that pins the CA and
// presents h's certificate, if h is not nil.
func (e *tlsEnv) tlsClient(h *pki.Holder) *http.Client {
	var cfg *tls.Config
	if h != nil {
		cfg = pki.NodeTLSConfig(e.p.CAHash(), h)
	} else {
		cfg = pki.ClientTLSConfig(pki.Token{CAHash: e.p.CAHash()})
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func decodeBody(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
