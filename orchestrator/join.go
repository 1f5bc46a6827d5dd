package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/agent"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/metrics"
)

// AgentConfig configures RunAgent.
type AgentConfig struct {
	// Node is this node's config.
	Node configs.NodeConfig
	// Server is a server's API address, HOST:PORT.
	Server string
	// Token is a join token (`skiff token` on the server, or a token of
	// role join). A node needs it only to join: it then holds a
	// certificate in <data_dir>/pki and later starts need no token.
	Token string
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Ready, if set, is called once the agent converged its first sync.
	Ready func()

	// watchdogRounds, if set, gets each watchdog round's verdict (tests).
	watchdogRounds chan<- []string
}

// ErrJoinRefused is wrapped by the errors of a join the server refused,
// and of a node whose certificate it refuses (revoked by `skiff delete
// node`, or expired with no join token to join again).
var ErrJoinRefused = errors.New("join refused")

// joinCheckTimeout bounds the first request to the server.
const joinCheckTimeout = 10 * time.Second

// agentRequestTimeout bounds each non-stream request of the agent's client,
// so that a cut-off server is noticed and retried, not waited on.
const agentRequestTimeout = 10 * time.Second

// RunAgent joins this node to a cluster and runs its agent until ctx ends.
//
// A node without a certificate joins: it parses the token, reaches the
// server over TLS checking its CA against the token before the secret is
// sent, makes its own key and sends a certificate request with the
// token's secret; the server answers with the node's certificate, the CA
// and the gossip key (see identity.go). It retries while no server
// answers, and fails on a bad token, a CA that is not the token's or a
// secret the server refuses. From then on the node presents only its
// certificate (the token need not be kept) and renews it before it ends,
// without a restart.
//
// A node with a certificate starts with it. A node with a local cache
// starts its agent at once (its pods and load balancer come back from the
// cache) and checks the server and joins the gossip in the background: a
// refusal found then stops the agent with the error. A certificate the
// server refuses while the agent runs (`skiff delete node`) stops it too.
// It starts the node's gossip member (role agent, pod CIDR once known),
// joins the servers' gossip and keeps routes to every peer's pod CIDR.
func RunAgent(ctx context.Context, cfg AgentConfig) error {
	j := &joiner{node: newNode(ctx, cfg.Node, cfg.Logger, "join"), ac: cfg}
	defer j.stop()
	for _, start := range []func() error{j.dial, j.startGossip, j.startIdentity, j.startFailover} {
		if err := start(); err != nil {
			return err
		}
		if j.ctx.Err() != nil {
			return refusal(j.ctx)
		}
	}
	return j.runAgent()
}

// joiner is RunAgent's node: its start phases, in order, fill the fields.
type joiner struct {
	*node
	ac AgentConfig

	id *identity
	c  *client.Client
	// cached: the node has a local cache, so its agent starts before the
	// server is checked.
	cached bool
	// peers are the gossip addresses to join, from the server once checked.
	peers []string
	// gossipKey is the cluster's gossip key from a join of this start; nil
	// when the node joined before (its keyring file holds the key).
	gossipKey []byte
	gossip    *gossip
}

// dial makes the API client, which presents the node's certificate, and,
// on a node without one, joins; on a fresh node with one it checks the
// server. Both happen before the gossip member starts: a token whose CA is
// not the server's must not leave a gossip key in the keyring file.
func (j *joiner) dial() error {
	var err error
	if j.id, err = loadIdentity(j.cfg, j.ac.Token, j.ac.Server, j.log); err != nil {
		return err
	}
	// Servers: the config's servers; the gossip's role=server members
	// are added as they show up (failover). The client follows a
	// follower's Skiff-Leader and skips an unreachable server.
	j.c, err = client.NewWithConfig(client.Config{Addr: "https://" + j.ac.Server,
		TLS: pki.NodeTLSConfig(j.id.caHash, &j.id.holder), Timeout: agentRequestTimeout, Servers: j.cfg.Servers})
	if err != nil {
		return err
	}
	j.cached = agent.HasCache(j.cfg)
	switch {
	case j.id.holder.Load() == nil:
		var resp *api.JoinResponse
		if resp, err = j.id.join(j.ctx); err != nil || resp == nil {
			return err // refused, or ctx ended (RunAgent then returns)
		}
		j.gossipKey = resp.GossipKey
		j.peers = joinPeers(resp.ClusterInfo, j.ac.Server)
	case !j.cached:
		j.peers, err = j.checkServer()
	}
	return err
}

// startGossip starts the node's gossip member and joins the servers'
// gossip; with a local cache the server is checked and the gossip joined
// in the background, and a refusal then ends the node with its error.
func (j *joiner) startGossip() error {
	m, err := startMember(j.cfg, cluster.RoleAgent, j.gossipKey, j.logger)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	j.onStop(func() {
		if err := m.Leave(); err != nil {
			j.log.Warn("leave the gossip", "err", err)
		}
	})
	// The keyring file now holds the key: the certificate of this start's
	// join may be kept (a node with a certificate and no keyring could not
	// gossip).
	if err := j.id.savePending(); err != nil {
		return err
	}
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
			peers, err := j.checkServer()
			if err == nil {
				err = j.id.savePending() // a join again, if the certificate was refused
			}
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

// startIdentity renews the node's certificate before it ends, for as long
// as the node runs.
func (j *joiner) startIdentity() error {
	j.goRun(func(ctx context.Context) error {
		if err := j.id.renewLoop(ctx, j.c); err != nil {
			j.log.Error("stopping the agent", "err", err)
			j.cancel(err)
		}
		return nil
	})
	return nil
}

// startFailover moves the client to another server when the one it uses
// stops answering, and stops the node when the servers refuse its
// certificate.
func (j *joiner) startFailover() error {
	j.goRun(func(ctx context.Context) error {
		if err := failover(ctx, j.c, j.gossip.m, j.cfg.Servers, j.log); err != nil {
			j.log.Error("stopping the agent", "err", err)
			j.cancel(err)
		}
		return nil
	})
	return nil
}

// runAgent runs the agent until the node's ctx ends: its error, else the
// join refusal that ended it, if one did.
func (j *joiner) runAgent() error {
	acfg := agent.DefaultConfig(j.cfg, j.c)
	acfg.Logger = j.logger
	acfg.Ready = j.ac.Ready
	acfg.Gossip = j.gossip.peersView()
	if err := j.serveMetrics(&acfg); err != nil {
		return err
	}
	if err := j.startWatchdog(&acfg); err != nil {
		return err
	}
	ln, err := j.listenPodIO()
	if err != nil {
		return err
	}
	if ln != nil {
		acfg.PodIOAddr = apiAdvertise(j.cfg, j.gossip.m.Tags().IP)
	}
	a, err := agent.New(acfg)
	if err != nil {
		return err
	}
	if ln != nil {
		j.servePodIO(ln, a)
	}
	if err := a.Run(j.ctx); err != nil {
		return err
	}
	return refusal(j.ctx)
}

// serveMetrics gives the agent a registry and serves it in plain HTTP,
// without authentication, on the node config's metrics_addr when it is set
// (as the server does); without it the agent records no metrics.
func (j *joiner) serveMetrics(acfg *agent.Config) error {
	if j.cfg.MetricsAddr == "" {
		return nil
	}
	reg := metrics.NewRegistry()
	acfg.Metrics = reg
	ln, err := net.Listen("tcp", j.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics_addr: listen on %s: %w", j.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			j.log.Error("stopping the agent", "err", err)
			j.cancel(fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err))
		}
	}()
	j.onStop(func() { hs.Close() })
	j.log.Info("metrics in plain HTTP", "addr", ln.Addr().String())
	return nil
}

// startWatchdog feeds systemd's watchdog (WatchdogSec= in the unit) while
// the agent's main loops turn (its pod loop, its load balancer's sync loop
// and its cache loop, each registered as it starts); without
// WATCHDOG_USEC it does nothing.
func (j *joiner) startWatchdog(acfg *agent.Config) error {
	live := newLiveness()
	acfg.Beat = func(name string, silence time.Duration) func() { return live.Beat(name, silence).Tick }
	wd, err := watchdogFromEnv(live, j.log.With("part", "watchdog"))
	if err != nil || wd == nil {
		return err
	}
	wd.rounds = j.ac.watchdogRounds
	j.log.Info("systemd watchdog on", "interval", wd.interval)
	j.goRun(func(ctx context.Context) error { wd.run(ctx); return nil })
	return nil
}

// refusal is the join refusal that ended ctx, if one did.
func refusal(ctx context.Context) error {
	if err := context.Cause(ctx); errors.Is(err, ErrJoinRefused) {
		return err
	}
	return nil
}

// checkServer asks the server for the cluster with the node's certificate
// (bounded by joinCheckTimeout) and returns the gossip peers to join (the
// server's, or its host's gossip port when it does not answer). A
// certificate the server refuses is joined anew when the node has a join
// token and is not revoked; otherwise it is an error wrapping
// ErrJoinRefused. A server that does not answer is no error.
func (j *joiner) checkServer() ([]string, error) {
	peers := gossipAddrs([]string{j.ac.Server})
	cctx, cancel := context.WithTimeout(j.ctx, joinCheckTimeout)
	ci, err := j.c.Cluster(cctx)
	cancel()
	switch {
	case err == nil:
		if len(ci.Gossip) > 0 {
			peers = ci.Gossip
		}
		j.log.Info("server answers; its CA matches and it accepts this node's certificate", "server", j.ac.Server, "gossip", peers)
	case errors.Is(err, pki.ErrCAMismatch), errors.Is(err, pki.ErrNoCAInChain):
		return nil, fmt.Errorf("%w: %s: %w", ErrJoinRefused, j.ac.Server, err)
	case client.IsUnauthorized(err):
		resp, jerr := j.id.rejoin(j.ctx, err)
		if jerr != nil || resp == nil {
			return nil, jerr
		}
		j.gossipKey = resp.GossipKey // used if the gossip has not started
		return joinPeers(resp.ClusterInfo, j.ac.Server), nil
	case j.ctx.Err() != nil:
	default:
		j.log.Warn("the server does not answer; starting anyway (from the local cache if there is one)", "server", j.ac.Server, "err", err)
	}
	return peers, nil
}

// joinPeers are the gossip addresses of a join's answer, or the server's
// host on the gossip port.
func joinPeers(ci api.ClusterInfo, server string) []string {
	if len(ci.Gossip) > 0 {
		return ci.Gossip
	}
	return gossipAddrs([]string{server})
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

// failoverEvery is how often an agent checks that the server it uses
// answers and accepts its certificate, and the bound of each check.
const failoverEvery = 5 * time.Second

// failover points c at another alive server from the gossip (m.Servers(),
// API addresses as announced, which the serving certificates name) when the
// one it uses does not answer, until ctx ends. A server that answers with
// an error still answers: only a failed or timed-out request moves on.
// The check is an authenticated request: a server that refuses the node's
// certificate (401: `skiff delete node` revoked it, or it expired) ends the
// failover with an error wrapping ErrJoinRefused, and the node stops.
func failover(ctx context.Context, c *client.Client, m *cluster.Member, cfgServers []string, log *slog.Logger) error {
	t := time.NewTicker(failoverEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if m != nil {
			c.SetServers(knownServers(cfgServers, m.Servers()))
		}
		cctx, cancel := context.WithTimeout(ctx, failoverEvery)
		_, err := c.Whoami(cctx)
		cancel()
		if client.IsUnauthorized(err) {
			return fmt.Errorf("%w: the server refuses this node's certificate: %w", ErrJoinRefused, err)
		}
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

// knownServers are the config's servers and the gossip's alive servers'
// API addresses, without duplicates, the config's first.
func knownServers(cfg, gossip []string) []string {
	out := slices.Clone(cfg)
	for _, g := range gossip {
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}
