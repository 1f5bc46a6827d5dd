package cluster

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-edge/skiff/cluster/pki"
)

// TestRaftStreamServerCertsOnly: raft over the API port takes a server
// certificate of the CA, and refuses a node certificate (a stolen agent
// box) and a client without a certificate.
func TestRaftStreamServerCertsOnly(t *testing.T) {
	dir := t.TempDir()
	p, err := pki.LoadServer(dir, "s1", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := NewRaftStream(p, ln.Addr().String(), nil)
	hs := &http.Server{Handler: http.NotFoundHandler(), TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){
		pki.RaftALPN: func(_ *http.Server, c *tls.Conn, _ http.Handler) { rs.Handoff(c) },
	}}
	go hs.Serve(tls.NewListener(ln, p.ServerTLSConfig()))
	t.Cleanup(func() { rs.Close(); hs.Close() })
	go func() { // raft's side: echo one line
		for {
			c, err := rs.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()

	// A server certificate: through, and the stream carries bytes.
	c, err := rs.Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("dial with a server certificate: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	c.Close()

	// A node certificate of the same CA, and no certificate: the
	// connection is closed before raft sees it.
	key, _ := pki.NewNodeKey()
	csrPEM, _ := pki.NewNodeCSR(key, "agent-1")
	csr, err := pki.ParseNodeCSR(csrPEM, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := p.SignNode(csr, "agent-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for name, cert := range map[string]*tls.Certificate{"node certificate": &nodeCert, "no certificate": nil} {
		t.Run(name, func(t *testing.T) {
			cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{pki.RaftALPN},
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if cert == nil {
						return &tls.Certificate{}, nil
					}
					return cert, nil
				}}
			c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
			if err != nil {
				return // refused in the handshake: fine
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("ping"))
			if n, err := io.ReadFull(c, buf); err == nil {
				t.Fatalf("a %s reached raft: read %q (%d bytes)", name, buf, n)
			}
		})
	}
}
