package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/agent"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// AgentConfig configures RunAgent.
type AgentConfig struct {
	// Node is this node's config.
	Node configs.NodeConfig
	// Server is a server's API address, HOST:PORT.
	Server string
	// Token is the join token `skiff token` printed on the server.
	Token string
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Ready, if set, is called once the agent converged its first sync.
	Ready func()
}

// ErrJoinRefused is wrapped by the errors of a join the server refused.
var ErrJoinRefused = errors.New("join refused")

// joinCheckTimeout bounds the first request to the server.
const joinCheckTimeout = 10 * time.Second

// RunAgent joins this node to a cluster and runs its agent until ctx ends.
// It parses the token, reaches the server over TLS checking its CA against
// the token before the secret is sent, and fails at once on a bad token, a
// CA that is not the token's, a secret the server refuses or a gossip key
// that is not the cluster's. A server that does not answer is not an error:
// the agent runs from its local cache until one does. It starts the node's
// gossip member (role agent, pod CIDR once known), joins the servers'
// gossip and keeps routes to every peer's pod CIDR.
func RunAgent(ctx context.Context, cfg AgentConfig) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("component", "join")
	tok, err := pki.ParseToken(cfg.Token)
	if err != nil {
		return err
	}
	c, err := client.NewWithConfig(client.Config{Addr: "https://" + cfg.Server, Token: tok.Secret, TLS: pki.ClientTLSConfig(tok)})
	if err != nil {
		return err
	}
	gossipPeers := gossipAddrs([]string{cfg.Server})
	cctx, cancel := context.WithTimeout(ctx, joinCheckTimeout)
	ci, err := c.Cluster(cctx)
	cancel()
	switch {
	case err == nil:
		if len(ci.Gossip) > 0 {
			gossipPeers = ci.Gossip
		}
		log.Info("server answers; its CA matches the token", "server", cfg.Server, "gossip", gossipPeers)
	case errors.Is(err, pki.ErrCAMismatch), errors.Is(err, pki.ErrNoCAInChain):
		return fmt.Errorf("%w: %s: %w", ErrJoinRefused, cfg.Server, err)
	case isUnauthorized(err):
		return fmt.Errorf("%w: the server %s refused the join token's secret: is the token from its `skiff token`?", ErrJoinRefused, cfg.Server)
	case ctx.Err() != nil:
		return nil
	default:
		log.Warn("the server does not answer; starting anyway (from the local cache if there is one)", "server", cfg.Server, "err", err)
	}

	m, err := startMember(cfg.Node, cluster.RoleAgent, tok.GossipKey(), logger)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	defer func() {
		if err := m.Leave(); err != nil {
			log.Warn("leave the gossip", "err", err)
		}
	}()
	if _, err := m.Join(gossipPeers); err != nil {
		if errors.Is(err, cluster.ErrGossipKey) {
			return fmt.Errorf("%w: %w", ErrJoinRefused, err)
		}
		// The snapshot rejoins by itself; keep trying in the background.
		log.Warn("join the gossip; retrying", "peers", gossipPeers, "err", err)
		go rejoin(ctx, m, gossipPeers, log)
	}
	g := newGossip(m, log)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx, nil) }()
	defer func() { stop(); <-done }()

	acfg := agent.DefaultConfig(cfg.Node, c)
	acfg.Logger = logger
	acfg.Ready = cfg.Ready
	acfg.Network = g.network
	a, err := agent.New(acfg)
	if err != nil {
		return err
	}
	g.setDown(a.SetDownNodes)
	return a.Run(ctx)
}

// rejoin joins peers until it succeeds, another member shows up, or ctx
// ends.
func rejoin(ctx context.Context, m *cluster.Member, peers []string, log *slog.Logger) {
	delay := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		for _, mi := range m.Members() {
			if mi.Name != m.Name() && mi.Status == cluster.StatusAlive {
				return
			}
		}
		if _, err := m.Join(peers); err == nil {
			log.Info("joined the gossip", "peers", peers)
			return
		}
		delay = min(2*delay, 15*time.Second)
	}
}

// isUnauthorized reports whether err is the API's 401.
func isUnauthorized(err error) bool {
	var e *client.APIError
	return errors.As(err, &e) && e.Status == http.StatusUnauthorized
}
