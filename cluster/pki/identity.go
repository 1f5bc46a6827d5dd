package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Files of a node's identity, in the node's <data_dir>/pki. A server's own
// CA files have other names (CACertFile is the same CA certificate).
const (
	NodeKeyFile  = "node.key"
	NodeCertFile = "node.crt"
)

// Identity is a node's credential: its key, the certificate the cluster CA
// issued for it, and that CA.
type Identity struct {
	// Cert is the key and the leaf, for tls.Config.GetClientCertificate.
	Cert *tls.Certificate
	Leaf *x509.Certificate
	CA   *x509.Certificate
}

// NewIdentity makes an identity from a key, the PEM certificate issued for
// it and the PEM CA certificate. It checks that they belong together.
func NewIdentity(key *ecdsa.PrivateKey, certPEM, caPEM []byte) (*Identity, error) {
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	ca, err := ParseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("the node certificate is not for this node's key")
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("the node certificate is not signed by the CA: %w", err)
	}
	if _, ok := NodeName(leaf); !ok {
		return nil, fmt.Errorf("certificate subject %q is not a node's", leaf.Subject)
	}
	return &Identity{Cert: &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, Leaf: leaf, CA: ca}, nil
}

// LoadIdentity reads the identity kept in dir. It returns an error
// matching fs.ErrNotExist when the node has none.
func LoadIdentity(dir string) (*Identity, error) {
	keyPath, certPath := filepath.Join(dir, NodeKeyFile), filepath.Join(dir, NodeCertFile)
	if _, err := os.Stat(certPath); err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("node certificate in %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ECDSA key", keyPath)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	return NewIdentity(key, certPEM, caPEM)
}

// Save writes the identity to dir: the key mode 0600, the certificates
// 0644. Each file is replaced atomically; the key goes first, so that a
// crash in between leaves a pair that LoadIdentity refuses (the node then
// joins again) rather than a certificate for a lost key.
func (id *Identity) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	if err := writeKey(filepath.Join(dir, NodeKeyFile), id.Cert.PrivateKey.(*ecdsa.PrivateKey)); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), CertPEM(id.CA.Raw), 0o644); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, NodeCertFile), CertPEM(id.Leaf.Raw), 0o644)
}

// RemoveIdentity deletes the identity files of dir (not the CA), so that
// the node joins afresh.
func RemoveIdentity(dir string) error {
	for _, f := range []string{NodeCertFile, NodeKeyFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Node is the node the certificate names.
func (id *Identity) Node() string {
	n, _ := NodeName(id.Leaf)
	return n
}

// CAHash is the hex SHA-256 of the identity's CA, as a token pins it.
func (id *Identity) CAHash() string { return CAHash(id.CA.Raw) }

// RenewAt is when the certificate should be renewed: after two thirds of
// its life (counted from its issue, not its backdated NotBefore).
func (id *Identity) RenewAt() time.Time {
	issued := id.Leaf.NotBefore.Add(CertBackdate)
	if issued.After(id.Leaf.NotAfter) {
		issued = id.Leaf.NotBefore
	}
	return issued.Add(id.Leaf.NotAfter.Sub(issued) * 2 / 3)
}

// Expired reports whether the certificate has ended at now.
func (id *Identity) Expired(now time.Time) bool { return !now.Before(id.Leaf.NotAfter) }

// Holder holds a node's current identity. Set swaps it atomically: TLS
// handshakes that start afterwards present the new certificate, with no
// restart. The zero Holder holds none. It is safe for concurrent use.
type Holder struct {
	p atomic.Pointer[Identity]
}

// Load returns the current identity, or nil.
func (h *Holder) Load() *Identity { return h.p.Load() }

// Set makes id the current identity.
func (h *Holder) Set(id *Identity) { h.p.Store(id) }

// NodeTLSConfig returns the TLS config a node dials a server's API with: it
// pins the CA by caHash as ClientTLSConfig does, and presents the
// certificate h holds at each handshake (none while it holds none).
func NodeTLSConfig(caHash string, h *Holder) *tls.Config {
	c := ClientTLSConfig(Token{CAHash: caHash})
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if id := h.Load(); id != nil {
			return id.Cert, nil
		}
		return &tls.Certificate{}, nil // no certificate: the server answers 401
	}
	return c
}
