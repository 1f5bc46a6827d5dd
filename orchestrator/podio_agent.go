package orchestrator

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/agent"
)

// Bounds of an agent's pod IO listener. Any LAN neighbour can reach it
// (only a server's certificate passes its handshake, but a connection
// costs a goroutine and buffers before that), so, like the API's TCP
// listener (apiserver.Server.LimitTCP), it accepts at most podIOMaxConns
// connections at once, counted from before the TLS handshake (the next
// ones wait in the kernel's backlog), and a handshake, like a request's
// header, must be done within podIOHandshakeTimeout.
//
// podIOMaxConns 64: a server holds at most 32 log follows in all
// (apiserver.DefaultMaxLogFollows), plus execs and image pulls and lists,
// each one connection (the proxy keeps none alive), so one server, or two
// busy ones, fit.
const (
	podIOMaxConns         = 64
	podIOHandshakeTimeout = 10 * time.Second
	podIOIdleTimeout      = 60 * time.Second
)

// limitPodIO wraps the pod IO listener ln: at most maxConns connections
// at once, counted before TLS so that handshakes in progress count too.
func limitPodIO(ln net.Listener, cfg *tls.Config, maxConns int) net.Listener {
	return tls.NewListener(netutil.LimitListener(ln, maxConns), cfg)
}

// newPodIOServer returns the http.Server of the pod IO listener. net/http
// bounds a TLS handshake by the smallest of its read, write and header
// timeouts: here handshake, which also bounds a request's header.
func newPodIOServer(h http.Handler, log *slog.Logger, handshake time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: handshake,
		IdleTimeout:       podIOIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// listenPodIO listens on the node's api_addr (an agent serves no API
// there) for the server's pod IO requests: `skiff logs` and `skiff exec`
// of this node's pods, proxied by the server (podio_proxy.go). It returns
// nil when the address is taken (the agent then runs without: logs and
// exec of its pods answer 503 through the API).
func (j *joiner) listenPodIO() (net.Listener, error) {
	ln, err := net.Listen("tcp", j.cfg.APIAddr)
	if err != nil {
		j.log.Warn("pod io listener: logs and exec of this node's pods will not reach it through the API", "addr", j.cfg.APIAddr, "err", err)
		return nil, nil
	}
	j.onStop(func() { ln.Close() })
	return limitPodIO(ln, pki.AgentPodIOTLS(&j.id.holder), podIOMaxConns), nil
}

// servePodIO serves a's pod IO handler on ln until the node stops.
func (j *joiner) servePodIO(ln net.Listener, a *agent.Agent) {
	hs := newPodIOServer(a.PodIOHandler(), j.log, podIOHandshakeTimeout)
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			j.log.Warn("pod io listener stopped", "err", err)
		}
	}()
	j.onStop(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
	})
	j.log.Info("serving pod logs and exec to the servers", "addr", ln.Addr().String())
}
