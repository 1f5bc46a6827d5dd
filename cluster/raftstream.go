package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-edge/skiff/cluster/pki"
)

// RaftStream is raft's transport over the API port: raft.StreamLayer whose
// outgoing connections are TLS with ALPN pki.RaftALPN and whose incoming
// ones come from the API's TLS listener (Handoff, from
// http.Server.TLSNextProto). Both ends present server certificates of the
// cluster CA and accept nothing else: a node certificate (a stolen agent
// box) or no certificate is refused before raft reads a byte.
type RaftStream struct {
	pki  *pki.PKI
	addr raftAddr
	log  *slog.Logger

	conns chan net.Conn
	// mu guards closed; done is closed by Close.
	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

var _ raft.StreamLayer = (*RaftStream)(nil)

// NewRaftStream returns the stream layer of the server advertised at
// advertise (HOST:PORT, its API address: raft sends it to the others).
func NewRaftStream(p *pki.PKI, advertise string, log *slog.Logger) *RaftStream {
	if log == nil {
		log = slog.Default()
	}
	return &RaftStream{pki: p, addr: raftAddr(advertise), log: log, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Handoff takes a TLS connection that negotiated pki.RaftALPN, checks that
// the peer presented a server certificate of the cluster CA, and hands it
// to raft; it returns when the connection closes. A refused peer's
// connection is closed at once.
func (rs *RaftStream) Handoff(c *tls.Conn) {
	cs := c.ConnectionState()
	name, err := rs.pki.VerifyServerPeer(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
	if err != nil {
		rs.log.Warn("raft connection refused", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	cc := &closeNotify{Conn: c, closed: make(chan struct{})}
	select {
	case rs.conns <- cc:
	case <-rs.done:
		c.Close()
		return
	case <-time.After(10 * time.Second):
		rs.log.Warn("raft connection not accepted in time", "server", name)
		c.Close()
		return
	}
	select {
	case <-cc.closed:
	case <-rs.done:
		c.Close()
	}
}

// Accept waits for the next raft connection from another server.
func (rs *RaftStream) Accept() (net.Conn, error) {
	select {
	case c := <-rs.conns:
		return c, nil
	case <-rs.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections handed to raft stay raft's.
func (rs *RaftStream) Close() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.closed {
		rs.closed = true
		close(rs.done)
	}
	return nil
}

// Addr is the advertised raft address (the API address).
func (rs *RaftStream) Addr() net.Addr { return rs.addr }

// Dial opens a raft connection to another server's API port.
func (rs *RaftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: rs.pki.RaftClientTLS()}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	return c, nil
}

// closeNotify tells Handoff when raft closed the connection.
type closeNotify struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *closeNotify) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

type raftAddr string

func (a raftAddr) Network() string { return "tcp" }
func (a raftAddr) String() string  { return string(a) }
