package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// File names under the PKI directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	SecretFile     = "join-secret"
)

// Lifetimes of the certificates.
const (
	CAValidity      = 10 * 365 * 24 * time.Hour
	ServingValidity = 365 * 24 * time.Hour
	// renewBefore: a serving certificate closer than this to its end is
	// issued again by EnsureServing.
	renewBefore = 30 * 24 * time.Hour
)

// PKI is a server's cluster CA, its API serving certificate and the join
// secret, kept under one directory (keys and secret mode 0600).
type PKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	secret string

	// mu guards serving and hosts, which EnsureServing replaces.
	mu      sync.RWMutex
	serving *tls.Certificate
	hosts   []string
}

// Load opens the PKI in dir, creating on first start a CA (ECDSA P-256, 10
// years) and a join secret (32 random bytes, hex), and makes sure the
// serving certificate covers hosts (see EnsureServing).
func Load(dir string, hosts []string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki dir: %w", err)
	}
	p := &PKI{dir: dir}
	if err := p.loadOrCreateCA(); err != nil {
		return nil, err
	}
	if err := p.loadOrCreateSecret(); err != nil {
		return nil, err
	}
	if err := p.EnsureServing(hosts); err != nil {
		return nil, err
	}
	return p, nil
}

// ReadToken returns the join token of the PKI in dir without creating or
// changing anything (for `skiff token`).
func ReadToken(dir string) (string, error) {
	ca, err := readCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return "", err
	}
	secret, err := os.ReadFile(filepath.Join(dir, SecretFile))
	if err != nil {
		return "", fmt.Errorf("read join secret: %w", err)
	}
	return Token{CAHash: CAHash(ca.Raw), Secret: strings.TrimSpace(string(secret))}.String(), nil
}

// Token returns the join token agents need: K10<sha256 of the CA DER>::<secret>.
func (p *PKI) Token() Token {
	return Token{CAHash: CAHash(p.ca.Raw), Secret: p.secret}
}

// CACertPEM returns the CA certificate, PEM-encoded.
func (p *PKI) CACertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw})
}

// GossipKey is the cluster's initial gossip key, derived from the secret
// (the same as Token().GossipKey()).
func (p *PKI) GossipKey() []byte { return DeriveGossipKey(p.secret) }

// CheckSecret reports, in constant time, whether an agent presented the
// join secret.
func (p *PKI) CheckSecret(presented string) bool { return p.Token().MatchSecret(presented) }

// ServerTLSConfig returns the API listener's TLS config. It sends the CA
// after the serving certificate, so that agents can pin it, and picks up a
// certificate EnsureServing replaced without a restart.
func (p *PKI) ServerTLSConfig() *tls.Config {
	// GetConfigForClient rather than GetCertificate: Go prefers a config's
	// Certificates (which wrappers such as httptest fill in) over
	// GetCertificate for clients that send no SNI, as clients dialling an IP.
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			p.mu.RLock()
			defer p.mu.RUnlock()
			return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*p.serving}}, nil
		},
	}
}

// EnsureServing keeps a serving certificate whose SANs are hosts (IPs or
// DNS names) plus 127.0.0.1, ::1, localhost and the hostname. It issues a
// new one when the stored one is missing, has other SANs (an address
// changed), or ends within 30 days.
func (p *PKI) EnsureServing(hosts []string) error {
	want := sanList(hosts)
	p.mu.Lock()
	defer p.mu.Unlock()
	certPath, keyPath := filepath.Join(p.dir, ServerCertFile), filepath.Join(p.dir, ServerKeyFile)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && cert.Leaf != nil {
		if slices.Equal(certSANs(cert.Leaf), want) && time.Until(cert.Leaf.NotAfter) > renewBefore &&
			cert.Leaf.CheckSignatureFrom(p.ca) == nil {
			cert.Certificate = append(cert.Certificate[:1], p.ca.Raw)
			p.serving, p.hosts = &cert, want
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "skiff-api"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(ServingValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range want {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return fmt.Errorf("issue serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	if err := writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	p.serving = &tls.Certificate{Certificate: [][]byte{der, p.ca.Raw}, PrivateKey: key, Leaf: leaf}
	p.hosts = want
	return nil
}

// Hosts returns the serving certificate's SANs.
func (p *PKI) Hosts() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.hosts)
}

func (p *PKI) loadOrCreateCA() error {
	certPath, keyPath := filepath.Join(p.dir, CACertFile), filepath.Join(p.dir, CAKeyFile)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
		if !ok || cert.Leaf == nil || !cert.Leaf.IsCA {
			return fmt.Errorf("%s is not an ECDSA CA", certPath)
		}
		p.ca, p.caKey = cert.Leaf, key
		return nil
	}
	if _, statErr := os.Stat(certPath); !errors.Is(statErr, fs.ErrNotExist) {
		return fmt.Errorf("load CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "skiff-ca@" + host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	if err := writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	p.ca, err = x509.ParseCertificate(der)
	p.caKey = key
	return err
}

func (p *PKI) loadOrCreateSecret() error {
	path := filepath.Join(p.dir, SecretFile)
	data, err := os.ReadFile(path)
	if err == nil {
		p.secret = strings.TrimSpace(string(data))
		if len(p.secret) < minSecretLen {
			return fmt.Errorf("join secret in %s is shorter than %d characters", path, minSecretLen)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read join secret: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	p.secret = hex.EncodeToString(b)
	return writeFile(path, []byte(p.secret+"\n"), 0o600)
}

// sanList is the sorted, de-duplicated SAN list for hosts.
func sanList(hosts []string) []string {
	host, _ := os.Hostname()
	all := append([]string{"127.0.0.1", "::1", "localhost", host}, hosts...)
	out := make([]string, 0, len(all))
	for _, h := range all {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		if h != "" {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func certSANs(c *x509.Certificate) []string {
	var out []string
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	out = append(out, c.DNSNames...)
	slices.Sort(out)
	return slices.Compact(out)
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFile writes atomically (temp file and rename) with mode perm.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
