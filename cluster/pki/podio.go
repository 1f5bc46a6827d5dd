package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Pod IO between a server and an agent: `skiff logs` and `skiff exec` of a
// pod on another node reach that node's agent through the server, which
// dials the agent's TLS listener. Both ends authenticate with what they
// already hold: the agent serves with its node certificate and accepts only
// the server's serving certificate as a client certificate; the server
// presents that certificate and accepts only the certificate of the node
// the pod is bound to. No token travels.

// AgentPodIOTLS returns the TLS config of an agent's pod IO listener: it
// serves the node certificate h holds (a renewed one from the next
// handshake on) and requires a client certificate issued by the cluster CA
// for serving (ExtKeyUsageServerAuth: the servers' certificate), never a
// node's: a node may not read another node's pods.
func AgentPodIOTLS(h *Holder) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			id := h.Load()
			if id == nil {
				return nil, errors.New("this node has no certificate yet")
			}
			return id.Cert, nil
		},
		ClientAuth: tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id := h.Load()
			if id == nil {
				return errors.New("this node has no certificate yet")
			}
			leaf, err := verifyChain(raw, id.CA, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("pod io client: %w", err)
			}
			if name, ok := NodeName(leaf); ok {
				return fmt.Errorf("pod io client: node %s's certificate: only a server may call", name)
			}
			return nil
		},
	}
}

// PodIOClientTLS returns the TLS config a server dials node's agent with:
// it presents the server's serving certificate and accepts only node's own
// certificate, issued by the cluster CA (the address comes from the node's
// object, which the node wrote: another node's listener there fails).
func (p *PKI) PodIOClientTLS(node string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate below
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			p.mu.RLock()
			defer p.mu.RUnlock()
			return p.serving, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := verifyChain(raw, p.ca, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return fmt.Errorf("node %s's agent: %w", node, err)
			}
			if name, ok := NodeName(leaf); !ok || name != node {
				return fmt.Errorf("node %s's agent answered with the certificate of %q", node, leaf.Subject.CommonName)
			}
			return nil
		},
	}
}

// verifyChain parses the certificates a peer sent and verifies the first
// against ca for usage.
func verifyChain(raw [][]byte, ca *x509.Certificate, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if len(raw) == 0 {
		return nil, errors.New("no certificate")
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return nil, fmt.Errorf("bad certificate: %w", err)
		}
		certs = append(certs, c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		if !c.Equal(ca) {
			inter.AddCert(c)
		}
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return nil, fmt.Errorf("certificate not issued by the cluster CA for this use: %w", err)
	}
	return certs[0], nil
}
