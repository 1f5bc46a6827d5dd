package orchestrator

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/agent"
)

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
	return tls.NewListener(ln, pki.AgentPodIOTLS(&j.id.holder)), nil
}

// servePodIO serves a's pod IO handler on ln until the node stops.
func (j *joiner) servePodIO(ln net.Listener, a *agent.Agent) {
	hs := &http.Server{
		Handler:           a.PodIOHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(j.log.Handler(), slog.LevelDebug),
	}
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
