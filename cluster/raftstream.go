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
	// mu guards stopped and closed; done is closed by Stop (no more
	// connections), closed by Close (Accept returns).
	mu              sync.Mutex
	stopped, closed bool
	done, accepting chan struct{}
}

var _ raft.StreamLayer = (*RaftStream)(nil)

// NewRaftStream returns the stream layer of the server advertised at
// advertise (HOST:PORT, its API address: raft sends it to the others).
func NewRaftStream(p *pki.PKI, advertise string, log *slog.Logger) *RaftStream {
	if log == nil {
		log = slog.Default()
	}
	return &RaftStream{pki: p, addr: raftAddr(advertise), log: log, conns: make(chan net.Conn), done: make(chan struct{}), accepting: make(chan struct{})}
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

// Accept waits for the next raft connection from another server. After
// Stop it waits for Close: raft's transport logs every error of Accept and
// retries until it is itself closed, so Accept has nothing to say before.
func (rs *RaftStream) Accept() (net.Conn, error) {
	select {
	case c := <-rs.conns:
		return c, nil
	case <-rs.accepting:
		return nil, net.ErrClosed
	}
}

// Stop refuses new connections and closes those handed to raft, so that
// the API's shutdown does not wait on them; the server calls it before it
// closes the store.
func (rs *RaftStream) Stop() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.stopped {
		rs.stopped = true
		close(rs.done)
	}
}

// Close stops the stream (see Stop) and ends Accept; raft's transport calls
// it when the store closes.
func (rs *RaftStream) Close() error {
	rs.Stop()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.closed {
		rs.closed = true
		close(rs.accepting)
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
