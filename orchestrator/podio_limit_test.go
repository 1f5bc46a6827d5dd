package orchestrator

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
)

// TestPodIOListenerBounded: an agent's pod IO listener serves at most its
// limit of connections at once, counting those still before their TLS
// handshake: while a LAN neighbour holds that many silent connections, a
// server's request waits, and it is served once one of them goes. A
// connection that never completes its handshake is closed after the
// handshake timeout. No root needed.
func TestPodIOListenerBounded(t *testing.T) {
	const limit = 2
	addr := servePodIO(t, limit, time.Hour, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))

	// The neighbour's silent connections, as many as the limit.
	var silent []net.Conn
	for range limit {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		silent = append(silent, c)
	}
	cl := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
	}}
	done := make(chan error, 1)
	go func() {
		res, err := cl.Get("https://" + addr + "/")
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	// While they are open the request is not served. (A slow machine can
	// only make this pass wrongly, never fail wrongly.)
	select {
	case err := <-done:
		t.Fatalf("request served (err %v) while %d silent connections held the listener: no limit", err, limit)
	case <-time.After(500 * time.Millisecond):
	}
	silent[0].Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("request after a silent connection closed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("request not served after a silent connection closed")
	}
}

// TestPodIOHandshakeTimeout: the pod IO server closes a connection that
// does not complete its TLS handshake within the handshake timeout, which
// frees its slot of the listener.
func TestPodIOHandshakeTimeout(t *testing.T) {
	addr := servePodIO(t, 1, 200*time.Millisecond, http.NotFoundHandler())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent connection: read %v, want EOF (closed by the server at its handshake timeout)", err)
	}
	if podIOHandshakeTimeout <= 0 || podIOHandshakeTimeout > 30*time.Second {
		t.Fatalf("podIOHandshakeTimeout %s: want a bound of seconds", podIOHandshakeTimeout)
	}
}

// servePodIO serves h as an agent's pod IO server does, on a loopback
// listener of at most limit connections with the given handshake timeout,
// until t ends, and returns its address.
func servePodIO(t *testing.T, limit int, handshake time.Duration, h http.Handler) string {
	t.Helper()
	p, err := pki.Load(filepath.Join(t.TempDir(), "pki"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitPodIO(tcp, p.ServerTLSConfig(), limit)
	hs := newPodIOServer(h, slog.New(slog.NewTextHandler(io.Discard, nil)), handshake)
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	return tcp.Addr().String()
}
