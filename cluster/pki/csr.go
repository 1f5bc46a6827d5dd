package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Node certificates. A node proves who it is with a client certificate the
// cluster CA issued to it: subject CN "node:<name>", O "skiff:nodes",
// extended key usage client auth. Its key is made on the node and never
// leaves it: the node sends a certificate request (CSR) and gets the
// certificate back.
const (
	// NodeOrg is the organization of every node certificate.
	NodeOrg = "skiff:nodes"
	// NodeCNPrefix starts the common name of a node certificate.
	NodeCNPrefix = "node:"
	// DefaultNodeCertValidity is how long a node certificate lasts; the
	// node renews it after two thirds of that.
	DefaultNodeCertValidity = 30 * 24 * time.Hour
	// MinNodeCertValidity is the shortest validity SignNode accepts (tests
	// use a few seconds to see renewals).
	MinNodeCertValidity = 2 * time.Second
	// CertBackdate is how far before its issue a node certificate's
	// NotBefore is set, so that a node whose clock lags a little can use it
	// at once.
	CertBackdate = time.Minute
)

// ErrBadCSR is wrapped by the errors of ParseNodeCSR.
var ErrBadCSR = errors.New("bad certificate request")

// NodeCN is the common name of node name's certificate.
func NodeCN(name string) string { return NodeCNPrefix + name }

// NewNodeKey returns a fresh ECDSA P-256 key for a node certificate.
func NewNodeKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// NewNodeCSR returns a PEM certificate request for node name, signed by key.
func NewNodeCSR(key *ecdsa.PrivateKey, name string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: NodeCN(name), Organization: []string{NodeOrg}},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseNodeCSR parses a PEM certificate request, checks its signature (the
// sender holds the key) and that it asks for node name's certificate. Its
// errors wrap ErrBadCSR.
func ParseNodeCSR(data []byte, name string) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: want a PEM CERTIFICATE REQUEST", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	if _, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("%w: want an ECDSA key", ErrBadCSR)
	}
	if csr.Subject.CommonName != NodeCN(name) {
		return nil, fmt.Errorf("%w: it asks for %q, want %q", ErrBadCSR, csr.Subject.CommonName, NodeCN(name))
	}
	return csr, nil
}

// SignNode issues node name's client certificate for csr's key (which
// ParseNodeCSR checked), valid from now (less CertBackdate) for validity.
func (p *PKI) SignNode(csr *x509.CertificateRequest, name string, validity time.Duration) (*x509.Certificate, error) {
	if validity < MinNodeCertValidity {
		return nil, fmt.Errorf("node certificate validity %s is shorter than %s", validity, MinNodeCertValidity)
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(p.ca.NotAfter) {
		notAfter = p.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: NodeCN(name), Organization: []string{NodeOrg}},
		NotBefore:    now.Add(-CertBackdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, csr.PublicKey, p.caKey)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// NodeName returns the node a client certificate was issued to, from its
// subject (CN node:<name>, O skiff:nodes). The caller has verified the
// certificate against the CA.
func NodeName(c *x509.Certificate) (string, bool) {
	name, ok := strings.CutPrefix(c.Subject.CommonName, NodeCNPrefix)
	if !ok || name == "" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != NodeOrg {
		return "", false
	}
	return name, true
}

// SerialHex is a certificate's serial number in lower-case hex, as the
// server records it.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// CertPEM encodes a certificate's DER bytes as PEM.
func CertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ParseCertPEM parses the first PEM certificate of data.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
