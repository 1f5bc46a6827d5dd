package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
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

// agentRequestTimeout bounds each non-stream request of the agent's client,
// so that a cut-off server is noticed and retried, not waited on.
const agentRequestTimeout = 10 * time.Second

// RunAgent joins this node to a cluster and runs its agent until ctx ends.
// It parses the token, reaches the server over TLS checking its CA against
// the token before the secret is sent, and fails on a bad token, a CA that
// is not the token's, a secret the server refuses or a gossip key that is
// not the cluster's. A server that does not answer is not an error: the
// agent runs from its local cache until one does. A node with a local cache
// starts its agent at once (its pods and load balancer come back from the
// cache) and checks the server and joins the gossip in the background: a
// refusal found then stops the agent with the error. It starts the node's
// gossip member (role agent, pod CIDR once known), joins the servers'
// gossip and keeps routes to every peer's pod CIDR.
func RunAgent(ctx context.Context, cfg AgentConfig) error {
	j := &joiner{node: newNode(ctx, cfg.Node, cfg.Logger, "join"), ac: cfg}
	defer j.stop()
	for _, start := range []func() error{j.dial, j.startGossip, j.startFailover} {
		if err := start(); err != nil {
			return err
		}
	}
	if j.ctx.Err() != nil {
		return refusal(j.ctx)
	}
	return j.runAgent()
}

// joiner is RunAgent's node: its start phases, in order, fill the fields.
type joiner struct {
	*node
	ac AgentConfig

	tok pki.Token
	c   *client.Client
	// cached: the node has a local cache, so its agent starts before the
	// server is checked.
	cached bool
	// peers are the gossip addresses to join, from the server once checked.
	peers  []string
	gossip *gossip
}

// dial makes the API client from the token and, on a fresh node, checks
// the server before the gossip member starts: a token whose CA is not the
// server's must not leave its gossip key in the keyring file.
func (j *joiner) dial() error {
	var err error
	if j.tok, err = pki.ParseToken(j.ac.Token); err != nil {
		return err
	}
	j.c, err = client.NewWithConfig(client.Config{Addr: "https://" + j.ac.Server, Token: j.tok.Secret,
		TLS: pki.ClientTLSConfig(j.tok), Timeout: agentRequestTimeout})
	if err != nil {
		return err
	}
	if j.cached = agent.HasCache(j.cfg); !j.cached {
		j.peers, err = checkServer(j.ctx, j.c, j.ac.Server, j.log)
	}
	return err
}

// startGossip starts the node's gossip member and joins the servers'
// gossip; with a local cache the server is checked and the gossip joined
// in the background, and a refusal then ends the node with its error.
func (j *joiner) startGossip() error {
	m, err := startMember(j.cfg, cluster.RoleAgent, j.tok.GossipKey(), j.logger)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	j.onStop(func() {
		if err := m.Leave(); err != nil {
			j.log.Warn("leave the gossip", "err", err)
		}
	})
	j.gossip = newGossip(m, j.log)
	if !j.cached {
		if err := joinGossip(j.ctx, m, j.peers, j.log); err != nil {
			return err
		}
	} else {
		j.log.Info("local cache found; starting the agent from it while the server is checked", "server", j.ac.Server)
		// Not one of the node's goroutines, which stop waits for: a join
		// of an unreachable server cannot be cancelled and must not hold
		// up the stop. It ends with the node's ctx otherwise.
		go func() {
			peers, err := checkServer(j.ctx, j.c, j.ac.Server, j.log)
			if err == nil {
				err = joinGossip(j.ctx, m, peers, j.log)
			}
			if err != nil {
				j.log.Error("join refused; stopping the agent", "err", err)
				j.cancel(err)
			}
		}()
	}
	j.goRun(func(ctx context.Context) error { j.gossip.run(ctx); return nil })
	return nil
}

// startFailover moves the client to another server when the one it uses
// stops answering.
func (j *joiner) startFailover() error {
	j.goRun(func(ctx context.Context) error { failover(ctx, j.c, j.gossip.m, j.log); return nil })
	return nil
}

// runAgent runs the agent until the node's ctx ends: its error, else the
// join refusal that ended it, if one did.
func (j *joiner) runAgent() error {
	acfg := agent.DefaultConfig(j.cfg, j.c)
	acfg.Logger = j.logger
	acfg.Ready = j.ac.Ready
	acfg.Gossip = j.gossip.peersView()
	a, err := agent.New(acfg)
	if err != nil {
		return err
	}
	if err := a.Run(j.ctx); err != nil {
		return err
	}
	return refusal(j.ctx)
}

// refusal is the join refusal that ended ctx, if one did.
func refusal(ctx context.Context) error {
	if err := context.Cause(ctx); errors.Is(err, ErrJoinRefused) {
		return err
	}
	return nil
}

// checkServer asks the server for the cluster (bounded by
// joinCheckTimeout), which checks its CA against the token and the token's
// secret, and returns the gossip peers to join (the server's, or its host's
// gossip port when it does not answer). It returns an error wrapping
// ErrJoinRefused on a bad token; nil otherwise, also when the server does
// not answer or ctx ended.
func checkServer(ctx context.Context, c *client.Client, server string, log *slog.Logger) ([]string, error) {
	peers := gossipAddrs([]string{server})
	cctx, cancel := context.WithTimeout(ctx, joinCheckTimeout)
	ci, err := c.Cluster(cctx)
	cancel()
	switch {
	case err == nil:
		if len(ci.Gossip) > 0 {
			peers = ci.Gossip
		}
		log.Info("server answers; its CA matches the token", "server", server, "gossip", peers)
	case errors.Is(err, pki.ErrCAMismatch), errors.Is(err, pki.ErrNoCAInChain):
		return nil, fmt.Errorf("%w: %s: %w", ErrJoinRefused, server, err)
	case isUnauthorized(err):
		return nil, fmt.Errorf("%w: the server %s refused the join token's secret: is the token from its `skiff token`?", ErrJoinRefused, server)
	case ctx.Err() != nil:
	default:
		log.Warn("the server does not answer; starting anyway (from the local cache if there is one)", "server", server, "err", err)
	}
	return peers, nil
}

// joinGossip joins peers, retrying in the background when it fails. It
// returns an error wrapping ErrJoinRefused on a gossip key that is not the
// cluster's.
func joinGossip(ctx context.Context, m *cluster.Member, peers []string, log *slog.Logger) error {
	if ctx.Err() != nil {
		return nil
	}
	if _, err := m.Join(peers); err != nil {
		if errors.Is(err, cluster.ErrGossipKey) {
			return fmt.Errorf("%w: %w", ErrJoinRefused, err)
		}
		// The snapshot rejoins by itself; keep trying in the background.
		log.Warn("join the gossip; retrying", "peers", peers, "err", err)
		go rejoin(ctx, m, peers, log)
	}
	return nil
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

// failoverEvery is how often an agent checks that the server it uses
// answers, and the bound of each check.
const failoverEvery = 5 * time.Second

// failover points c at another alive server from the gossip (m.Servers(),
// API addresses as announced, which the serving certificates name) when the
// one it uses does not answer, until ctx ends. A server that answers with
// an error still answers: only a failed or timed-out request moves on.
func failover(ctx context.Context, c *client.Client, m *cluster.Member, log *slog.Logger) {
	t := time.NewTicker(failoverEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, failoverEvery)
		err := c.Ready(cctx)
		cancel()
		var apiErr *client.APIError
		if err == nil || ctx.Err() != nil || errors.As(err, &apiErr) {
			continue
		}
		cur := strings.TrimPrefix(c.Addr(), "https://")
		next := nextServer(cur, m.Servers())
		if next == "" || next == cur {
			continue
		}
		if serr := c.SetAddr("https://" + next); serr != nil {
			log.Warn("fail over to another server", "to", next, "err", serr)
			continue
		}
		log.Warn("the server does not answer; failing over to another", "from", cur, "to", next, "err", err)
	}
}

// nextServer picks the server to try after cur among servers (sorted API
// addresses of the alive servers): the one after cur, in turn, or the first
// when cur is not among them; "" when there is none.
func nextServer(cur string, servers []string) string {
	if len(servers) == 0 {
		return ""
	}
	i := slices.Index(servers, cur)
	if i < 0 {
		return servers[0]
	}
	return servers[(i+1)%len(servers)]
}
