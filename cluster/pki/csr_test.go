package pki

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issue makes a key on "the node", sends the CSR to p and returns the
// identity, as a join does.
func issue(t *testing.T, p *PKI, node string, validity time.Duration) *Identity {
	t.Helper()
	key, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := NewNodeCSR(key, node)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseNodeCSR(csrPEM, node)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := p.SignNode(csr, node, validity)
	if err != nil {
		t.Fatal(err)
	}
	id, err := NewIdentity(key, CertPEM(cert.Raw), p.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestParseNodeCSR(t *testing.T) {
	key, _ := NewNodeKey()
	good, _ := NewNodeCSR(key, "edge-01")
	tampered := []byte(strings.Replace(string(good), "A", "B", 1))
	tests := []struct {
		name, node string
		in         []byte
		wantErr    string
	}{
		{name: "ok", node: "edge-01", in: good},
		{name: "another node's name", node: "edge-02", in: good, wantErr: `asks for "node:edge-01", want "node:edge-02"`},
		{name: "not PEM", node: "edge-01", in: []byte("hello"), wantErr: "PEM"},
		{name: "tampered", node: "edge-01", in: tampered, wantErr: "request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNodeCSR(tt.in, tt.node)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrBadCSR with %q", err, tt.wantErr)
			}
		})
	}
}

// TestNodeCertificate: a certificate issued from a node's CSR names the
// node, is a client certificate of the CA with the asked lifetime, and is
// renewed after two thirds of it.
func TestNodeCertificate(t *testing.T) {
	p, err := Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	id := issue(t, p, "edge-01", time.Hour)
	if id.Node() != "edge-01" || id.CAHash() != p.CAHash() {
		t.Fatalf("node %q ca %s", id.Node(), id.CAHash())
	}
	if id.Leaf.Subject.CommonName != "node:edge-01" || id.Leaf.Subject.Organization[0] != NodeOrg {
		t.Errorf("subject %s", id.Leaf.Subject)
	}
	if d := id.Leaf.NotAfter.Sub(before); d < time.Hour-2*time.Second || d > time.Hour+2*time.Second {
		t.Errorf("lifetime %s, want 1h", d)
	}
	if r := id.RenewAt().Sub(before); r < 40*time.Minute-2*time.Second || r > 40*time.Minute+2*time.Second {
		t.Errorf("renews %s after issue, want 40m", r)
	}
	key, _ := NewNodeKey()
	csrPEM, _ := NewNodeCSR(key, "edge-01")
	csr, err := ParseNodeCSR(csrPEM, "edge-01")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.SignNode(csr, "edge-01", time.Second); err == nil {
		t.Error("a 1s validity was accepted")
	}
}

// TestIdentityFiles: Save and LoadIdentity round-trip with the key 0600;
// a node without files gets fs.ErrNotExist, and a key that does not match
// the certificate is refused.
func TestIdentityFiles(t *testing.T) {
	p, err := Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := LoadIdentity(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no identity: %v", err)
	}
	id := issue(t, p, "edge-01", time.Hour)
	if err := id.Save(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, NodeKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	got, err := LoadIdentity(dir)
	if err != nil || SerialHex(got.Leaf) != SerialHex(id.Leaf) || got.CAHash() != p.CAHash() {
		t.Fatalf("loaded %v, %v", got, err)
	}
	other, _ := NewNodeKey()
	if err := writeKey(filepath.Join(dir, NodeKeyFile), other); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(dir); err == nil {
		t.Error("a key that does not match the certificate was loaded")
	}
}

// TestClientCertificateTLS: the API's TLS config verifies a node's
// certificate against the CA; a certificate of another CA fails the
// handshake; a client with none gets through to the handler (which then
// wants a token); a Holder swap is presented at the next handshake.
func TestClientCertificateTLS(t *testing.T) {
	p, err := Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.VerifiedChains) == 0 {
			_, _ = w.Write([]byte("anonymous"))
			return
		}
		name, _ := NodeName(r.TLS.PeerCertificates[0])
		_, _ = w.Write([]byte(name + " " + SerialHex(r.TLS.PeerCertificates[0])))
	}))
	srv.TLS = p.ServerTLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)

	var h Holder
	tr := &http.Transport{TLSClientConfig: NodeTLSConfig(p.CAHash(), &h)}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	get := func() (string, error) {
		tr.CloseIdleConnections() // a new handshake each time
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, err = io.Copy(&b, resp.Body)
		return b.String(), err
	}
	if got, err := get(); err != nil || got != "anonymous" {
		t.Fatalf("no certificate: %q %v", got, err)
	}
	id1 := issue(t, p, "edge-01", time.Hour)
	h.Set(id1)
	if got, err := get(); err != nil || got != "edge-01 "+SerialHex(id1.Leaf) {
		t.Fatalf("first certificate: %q %v", got, err)
	}
	id2 := issue(t, p, "edge-01", time.Hour)
	h.Set(id2)
	if got, err := get(); err != nil || got != "edge-01 "+SerialHex(id2.Leaf) {
		t.Fatalf("after the swap: %q %v", got, err)
	}
	h.Set(issue(t, otherCA, "edge-01", time.Hour))
	if got, err := get(); err == nil {
		t.Fatalf("a certificate of another CA got %q", got)
	}
}
