package pki

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrCAMismatch is matched (errors.Is) by a *CAMismatchError.
var ErrCAMismatch = errors.New("the server's CA does not match the join token")

// ErrNoCAInChain is returned when the server sends only its leaf
// certificate, so there is no CA to compare with the token.
var ErrNoCAInChain = errors.New("the server sent no CA certificate in its TLS chain")

// CAMismatchError says which CA the token pins and which one the server
// presented.
type CAMismatchError struct {
	Expected string // hex SHA-256 from the token
	Got      string // hex SHA-256 of the CA the server sent
}

// Error reads "the server's CA does not match the join token (expected
// sha256 ab12…, got cd34…)".
func (e *CAMismatchError) Error() string {
	return fmt.Sprintf("%v (expected sha256 %s…, got %s…): is this the right server, and the token from its `skiff token`?",
		ErrCAMismatch, short(e.Expected), short(e.Got))
}

// Is makes errors.Is(err, ErrCAMismatch) hold.
func (e *CAMismatchError) Is(target error) bool { return target == ErrCAMismatch }

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// ClientTLSConfig returns the TLS config an agent uses to reach a server's
// API with a join token. The server must send its CA as the last certificate
// of its chain (ServerTLSConfig does). During the handshake, before any
// request (and so before the secret) is sent, it hashes that CA and compares
// it with the token's hash, then verifies the server's certificate against
// that CA, for the host name dialled when there is one. Go's own
// verification is off only because the CA is not in the system roots: this
// check replaces it.
func ClientTLSConfig(t Token) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs, t.CAHash)
		},
	}
}

// verifyPinned checks the chain the server sent against the pinned CA hash.
func verifyPinned(cs tls.ConnectionState, caHash string) error {
	certs := cs.PeerCertificates
	if len(certs) < 2 {
		return ErrNoCAInChain
	}
	ca := certs[len(certs)-1]
	got := CAHash(ca.Raw)
	if subtle.ConstantTimeCompare([]byte(got), []byte(caHash)) != 1 {
		return &CAMismatchError{Expected: caHash, Got: got}
	}
	if !ca.IsCA {
		return fmt.Errorf("the server's pinned CA certificate is not a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range certs[1 : len(certs)-1] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       cs.ServerName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("the server's certificate does not verify against the pinned CA: %w", err)
	}
	return nil
}
