package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
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
	// GossipKeyFile holds the cluster's first gossip key (32 random bytes,
	// base64): a server seeds its serf keyring with it, and a second server
	// that copies this directory gossips with the first.
	GossipKeyFile = "gossip.key"
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
	dir       string
	ca        *x509.Certificate
	caKey     *ecdsa.PrivateKey
	caPool    *x509.CertPool
	gossipKey []byte

	// name is the server's node name in its serving certificate (CN
	// server:<name>, O skiff:servers), which marks it as a server's to
	// the other servers' raft transport; "" for a PKI of Load (CN
	// skiff-api, not a raft peer).
	name string

	// secretMu serializes the changes of the join secret (RotateSecret,
	// SetSecret: a rotation through the API and the follower of the
	// store's record may run at once), so that the file and secret end
	// with the same value.
	secretMu sync.Mutex

	// mu guards serving and hosts, which EnsureServing replaces, and
	// secret, which RotateSecret replaces.
	mu      sync.RWMutex
	serving *tls.Certificate
	hosts   []string
	secret  string
}

// Load opens the PKI in dir, creating on first start a CA (ECDSA P-256, 10
// years), a join secret (32 random bytes, hex) and a gossip key (32 random
// bytes), and makes sure the serving certificate covers hosts (see
// EnsureServing).
func Load(dir string, hosts []string) (*PKI, error) {
	return LoadServer(dir, "", hosts)
}

// LoadServer is Load for server name: its serving certificate names it
// (CN server:<name>, O skiff:servers) and serves as a client certificate
// too, so that it authenticates this server to the other servers (raft
// over the API port, see RaftTLS). A stored certificate without the name
// is issued again.
func LoadServer(dir, name string, hosts []string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki dir: %w", err)
	}
	p := &PKI{dir: dir, name: name}
	if err := p.loadOrCreateCA(); err != nil {
		return nil, err
	}
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(p.ca)
	if err := p.loadOrCreateSecret(); err != nil {
		return nil, err
	}
	if err := p.loadOrCreateGossipKey(); err != nil {
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
	p.mu.RLock()
	defer p.mu.RUnlock()
	return Token{CAHash: CAHash(p.ca.Raw), Secret: p.secret}
}

// CAHash is the hex SHA-256 of the CA certificate, as tokens carry it.
func (p *PKI) CAHash() string { return CAHash(p.ca.Raw) }

// RotateSecret replaces the join secret with a new random one (in memory
// and in its file) and returns the new join token. The old secret stops
// working at once; certificates issued with it stay valid.
func (p *PKI) RotateSecret() (Token, error) {
	p.secretMu.Lock()
	defer p.secretMu.Unlock()
	secret := newSecret()
	if err := writeFile(filepath.Join(p.dir, SecretFile), []byte(secret+"\n"), 0o600); err != nil {
		return Token{}, err
	}
	p.mu.Lock()
	p.secret = secret
	p.mu.Unlock()
	return p.Token(), nil
}

// CACertPEM returns the CA certificate, PEM-encoded.
func (p *PKI) CACertPEM() []byte {
	return CertPEM(p.ca.Raw)
}

// GossipKey is the cluster's initial gossip key: random, made on first
// start, and independent of every API credential. A server seeds its serf
// keyring with it; agents get the server's key in the answer to their join.
func (p *PKI) GossipKey() []byte { return slices.Clone(p.gossipKey) }

// CheckSecret reports, in constant time, whether an agent presented the
// join secret.
func (p *PKI) CheckSecret(presented string) bool { return p.Token().MatchSecret(presented) }

// ServerTLSConfig returns the API listener's TLS config. It sends the CA
// after the serving certificate, so that agents can pin it, and picks up a
// certificate EnsureServing replaced without a restart. It asks for a
// client certificate and verifies one that is sent against the CA (a
// certificate of another CA fails the handshake); a client may also send
// none and authenticate with a bearer token instead.
func (p *PKI) ServerTLSConfig() *tls.Config {
	// GetConfigForClient rather than GetCertificate: Go prefers a config's
	// Certificates (which wrappers such as httptest fill in) over
	// GetCertificate for clients that send no SNI, as clients dialling an IP.
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			p.mu.RLock()
			defer p.mu.RUnlock()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*p.serving},
				ClientAuth:   tls.VerifyClientCertIfGiven,
				ClientCAs:    p.caPool,
				// Raft between servers rides the API port (RaftALPN);
				// everything else is HTTP/1.1.
				NextProtos: []string{"http/1.1", RaftALPN},
			}, nil
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
			cert.Leaf.CheckSignatureFrom(p.ca) == nil && p.servingSubjectOK(cert.Leaf) {
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
	if p.name != "" {
		tmpl.Subject = pkix.Name{CommonName: ServerCNPrefix + p.name, Organization: []string{ServerOrg}}
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
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
	p.secret = newSecret()
	return writeFile(path, []byte(p.secret+"\n"), 0o600)
}

// newSecret returns a join secret: 32 random bytes, hex.
func newSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return hex.EncodeToString(b)
}

// gossipKeySize is the gossip key's length: AES-256, as serf wants it.
const gossipKeySize = 32

func (p *PKI) loadOrCreateGossipKey() error {
	path := filepath.Join(p.dir, GossipKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil || len(key) != gossipKeySize {
			return fmt.Errorf("%s: want %d bytes in base64", path, gossipKeySize)
		}
		p.gossipKey = key
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read gossip key: %w", err)
	}
	key := make([]byte, gossipKeySize)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	p.gossipKey = key
	return writeFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
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

// writeFile writes atomically (a temp file of its own, then a rename) with
// mode perm. Writers of the same path at once do not meet in a shared temp
// file: the last rename wins.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	return nil
}

func modeOf(perm uint32) os.FileMode { return os.FileMode(perm) }
