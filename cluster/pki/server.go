package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Server certificates. Every server of a cluster holds the CA (a server
// join hands it over) and issues its own serving certificate, which names
// it: CN server:<name>, O skiff:servers, usable for TLS server and client
// auth. Node certificates (CN node:<name>, O skiff:nodes) are issued only
// by SignNode, which fixes their subject, so no node can hold a server's.
const (
	ServerCNPrefix = "server:"
	ServerOrg      = "skiff:servers"
	// RaftALPN is the TLS ALPN protocol of raft's connections on the API
	// port.
	RaftALPN = "skiff-raft/1"
)

// ErrNotServerCert is returned for a peer whose certificate is not a
// server's of the cluster CA.
var ErrNotServerCert = errors.New("the peer's certificate is not a server certificate of the cluster CA")

// ServerName returns the server a certificate names (CN server:<name>, O
// skiff:servers). The caller has verified it against the CA.
func ServerName(c *x509.Certificate) (string, bool) {
	name, ok := strings.CutPrefix(c.Subject.CommonName, ServerCNPrefix)
	if !ok || name == "" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != ServerOrg {
		return "", false
	}
	return name, true
}

// servingSubjectOK tells whether a stored serving certificate has the
// subject and key usages this PKI issues.
func (p *PKI) servingSubjectOK(c *x509.Certificate) bool {
	if p.name == "" {
		return c.Subject.CommonName == "skiff-api"
	}
	name, ok := ServerName(c)
	return ok && name == p.name && slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
}

// Name is the server name of LoadServer ("" for Load).
func (p *PKI) Name() string { return p.name }

// VerifyServerPeer checks that a peer's chain (as a TLS handshake saw it)
// leads to the cluster CA and that its leaf is a server certificate for
// usage; it returns the server's name. It is the raft transport's check at
// both ends: a node certificate (a stolen agent box) is refused.
func (p *PKI) VerifyServerPeer(certs []*x509.Certificate, usage x509.ExtKeyUsage) (string, error) {
	if len(certs) == 0 {
		return "", fmt.Errorf("%w: none sent", ErrNotServerCert)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: p.caPool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotServerCert, err)
	}
	name, ok := ServerName(certs[0])
	if !ok {
		return "", fmt.Errorf("%w: subject %q", ErrNotServerCert, certs[0].Subject.CommonName)
	}
	return name, nil
}

// RaftClientTLS is the TLS config a server dials another's raft with: it
// presents its serving certificate, asks for RaftALPN and accepts only a
// server certificate of the cluster CA (any host name: raft addresses are
// the servers' advertised addresses, and the CA plus the server subject
// are what authenticate).
func (p *PKI) RaftClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{RaftALPN},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			p.mu.RLock()
			defer p.mu.RUnlock()
			return p.serving, nil
		},
		InsecureSkipVerify: true, // replaced by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != RaftALPN {
				return fmt.Errorf("the peer does not speak %s (an older skiff, or not a server)", RaftALPN)
			}
			_, err := p.VerifyServerPeer(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			return err
		},
	}
}

// CAKeyPEM returns the CA's private key, PEM-encoded: a server join hands
// it to the new server (docs/security.md, "Several servers").
func (p *PKI) CAKeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(p.caKey)
	if err != nil {
		return nil, err
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

// JoinSecret is the join secret (agents' join token), which a server join
// hands over so that every server accepts the same token.
func (p *PKI) JoinSecret() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.secret
}

// InstallServerMaterial writes, into a fresh server's PKI directory, the
// CA certificate and key, the join secret and the gossip key that a server
// join handed over; LoadServer then issues the server's own serving
// certificate from that CA. It refuses a directory that holds a CA
// already (the server belongs to a cluster).
func InstallServerMaterial(dir string, caCertPEM, caKeyPEM []byte, secret string, gossipKey []byte) error {
	if _, err := readCert(dir + "/" + CACertFile); err == nil {
		return fmt.Errorf("%s holds a CA already: this server belongs to a cluster (remove the data dir to join another)", dir)
	}
	if _, err := tls.X509KeyPair(caCertPEM, caKeyPEM); err != nil {
		return fmt.Errorf("the CA of the join answer: %w", err)
	}
	if len(secret) < minSecretLen || len(gossipKey) != gossipKeySize {
		return errors.New("the join answer lacks the join secret or the gossip key")
	}
	if err := mkdir(dir); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		perm uint32
	}{
		{CAKeyFile, caKeyPEM, 0o600},
		{CACertFile, caCertPEM, 0o644},
		{SecretFile, []byte(secret + "\n"), 0o600},
		{GossipKeyFile, []byte(b64(gossipKey) + "\n"), 0o600},
	} {
		if err := writeFile(dir+"/"+f.name, f.data, modeOf(f.perm)); err != nil {
			return err
		}
	}
	return nil
}

// ServerClientTLS is the TLS config a server reaches another server's API
// with (a follower forwarding its local socket's writes to the leader): it
// presents its serving certificate and accepts only a server certificate
// of the cluster CA.
func (p *PKI) ServerClientTLS() *tls.Config {
	c := p.RaftClientTLS()
	c.NextProtos = []string{"http/1.1"}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := p.VerifyServerPeer(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
		return err
	}
	return c
}

// NewJoinSecret returns a fresh join secret (32 random bytes, hex).
func NewJoinSecret() string { return newSecret() }

// SetSecret makes secret the join secret (in memory and in its file) if it
// is not already: a server follows a rotation made on another server.
func (p *PKI) SetSecret(secret string) error {
	if len(secret) < minSecretLen {
		return fmt.Errorf("join secret shorter than %d characters", minSecretLen)
	}
	p.secretMu.Lock()
	defer p.secretMu.Unlock()
	if p.JoinSecret() == secret {
		return nil
	}
	if err := writeFile(p.dir+"/"+SecretFile, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	p.mu.Lock()
	p.secret = secret
	p.mu.Unlock()
	return nil
}
