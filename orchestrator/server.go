package orchestrator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/agent"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/controller"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Default directories when the node config leaves them empty.
const (
	DefaultDataDir = "/var/lib/skiff"
	DefaultRunDir  = "/run/skiff"
)

// ServerConfig configures RunServer.
type ServerConfig struct {
	// Node is this node's config: DataDir holds the store
	// (<data_dir>/state.db) and the API token, RunDir the API socket
	// (<run_dir>/skiff.sock), APIAddr the TCP listener, ServiceCIDR and
	// ClusterCIDR the address pools.
	Node configs.NodeConfig
	// Agent also runs this node's agent in the process: it reaches the API
	// over the unix socket and serves logs and exec for it.
	Agent bool
	// TCP runs the server in cluster mode: it serves the API over TLS on
	// Node.APIAddr, for agents and remote CLIs, with the CA and serving
	// certificate of <data_dir>/pki (made on first start, see cluster/pki);
	// requests must carry the join secret as a bearer token (`skiff token`
	// prints the whole join token). It also starts this node's gossip
	// member (role server) on Node.GossipAddr and marks nodes whose member
	// fails or leaves NotReady.
	TCP bool
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Ready, if set, is called once when the API serves and, with Agent,
	// once the agent converged its first sync.
	Ready func()
	// CompactAfter is how many watch events the store keeps (see
	// store.Options). Zero takes $SKIFF_STORE_COMPACT_AFTER if set (tests use
	// it to reach compaction quickly), else the store's default.
	CompactAfter int
}

// Names of files the server keeps.
const (
	StoreFile  = "state.db"
	SocketFile = "skiff.sock"
)

// eventMaxAge is how long events are kept.
const eventMaxAge = time.Hour

// RunServer runs the store, the API, the scheduler and the controllers
// until ctx ends, then shuts them down: watches end, requests in flight get
// a few seconds, the store is closed. It returns an error if it cannot start
// or a listener fails.
func RunServer(ctx context.Context, cfg ServerConfig) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("component", "server")
	node := cfg.Node
	if node.DataDir == "" {
		node.DataDir = DefaultDataDir
	}
	if node.RunDir == "" {
		node.RunDir = DefaultRunDir
	}
	var err error
	for _, d := range []string{node.DataDir, node.RunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}

	compactAfter := cfg.CompactAfter
	if v := os.Getenv("SKIFF_STORE_COMPACT_AFTER"); compactAfter == 0 && v != "" {
		if compactAfter, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("SKIFF_STORE_COMPACT_AFTER=%q: %w", v, err)
		}
	}
	st, err := store.Open(filepath.Join(node.DataDir, StoreFile), store.Options{Logger: logger, CompactAfter: compactAfter})
	if err != nil {
		return err
	}
	defer st.Close()
	apiOpts := apiserver.Options{ServiceCIDR: node.ServiceCIDR, ClusterCIDR: node.ClusterCIDR, Logger: logger}
	if err := apiOpts.Validate(); err != nil {
		return err
	}
	apiSrv := apiserver.New(st, apiOpts)

	sockPath := filepath.Join(node.RunDir, SocketFile)
	unixLn, err := listenUnix(sockPath)
	if err != nil {
		return err
	}
	defer os.Remove(sockPath)
	listeners := []struct {
		ln net.Listener
		h  http.Handler
	}{{unixLn, apiSrv}}
	var g *gossip
	if cfg.TCP {
		p, err := pki.Load(filepath.Join(node.DataDir, PKIDir), serverHosts(node))
		if err != nil {
			unixLn.Close()
			return err
		}
		m, err := startMember(node, cluster.RoleServer, p.GossipKey(), logger)
		if err != nil {
			unixLn.Close()
			return fmt.Errorf("gossip: %w", err)
		}
		defer func() {
			if err := m.Leave(); err != nil {
				log.Warn("leave the gossip", "err", err)
			}
		}()
		if len(node.Servers) > 0 {
			if _, err := m.Join(gossipAddrs(node.Servers)); err != nil {
				log.Warn("join the other servers", "servers", node.Servers, "err", err)
			}
		}
		g = newGossip(m, log)
		handler := clusterHandler(m, apiSrv)
		listeners[0].h = handler
		tcpLn, err := net.Listen("tcp", node.APIAddr)
		if err != nil {
			unixLn.Close()
			return fmt.Errorf("listen on %s: %w", node.APIAddr, err)
		}
		listeners = append(listeners, struct {
			ln net.Listener
			h  http.Handler
		}{tls.NewListener(tcpLn, p.ServerTLSConfig()), apiserver.RequireToken(p.Token().Secret, handler)})
		log.Info("API on TCP (TLS)", "addr", tcpLn.Addr().String(), "gossip", m.Addr())
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Watch streams run until their request's context ends: cancelling
	// reqCtx ends them at shutdown, which would otherwise wait for them.
	reqCtx, cancelReqs := context.WithCancel(context.Background())
	defer cancelReqs()
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	var servers []*http.Server
	errc := make(chan error, len(listeners)+1)
	var wg sync.WaitGroup
	for _, l := range listeners {
		hs := &http.Server{
			Handler:           l.h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			BaseContext:       func(net.Listener) context.Context { return reqCtx },
			ErrorLog:          errLog,
		}
		servers = append(servers, hs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(l.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve API on %s: %w", l.ln.Addr(), err)
			}
		}()
	}
	if g != nil {
		lc := &lifecycle{st: st, self: node.NodeName, log: log.With("component", "lifecycle"), last: map[string]cluster.Status{}}
		wg.Add(1)
		go func() { defer wg.Done(); g.run(ctx, lc.update) }()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := controller.RunConfig(ctx, st, controller.ConfigFromNode(&node, logger)); err != nil {
			errc <- fmt.Errorf("controllers: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		housekeeping(ctx, st, log)
	}()
	if cfg.Agent {
		ag, err := newLocalAgent(node, sockPath, logger, cfg.Ready, g)
		if err != nil {
			cancel()
			cancelReqs()
			for _, hs := range servers {
				hs.Close()
			}
			wg.Wait()
			return err
		}
		apiSrv.SetPodIO(ag)
		if g != nil {
			g.setDown(ag.SetDownNodes)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ag.Run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("agent: %w", err)
			}
		}()
		log.Info("server ready; the agent reports ready after its first sync", "socket", sockPath, "revision", st.Rev())
	} else {
		log.Info("server ready", "socket", sockPath, "revision", st.Rev())
		if cfg.Ready != nil {
			cfg.Ready()
		}
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
		log.Error("server failed", "err", err)
	}
	cancel()
	cancelReqs()
	shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	for _, hs := range servers {
		if e := hs.Shutdown(shutCtx); e != nil {
			hs.Close()
		}
	}
	// The controllers get a bounded time to notice ctx: a stop must not
	// hang on a long sync. Closing the store under a straggler only fails
	// its writes.
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopTimeout):
		log.Warn("controllers did not stop in time; closing the store under them", "timeout", stopTimeout)
	}
	log.Info("server stopped")
	return err
}

// newLocalAgent makes the in-process agent of `skiff server --agent`; it
// reaches the API over the unix socket.
// With gossip, the agent's pod CIDR goes into the server's member's tags
// and the peer routes come from its view (one member per node).
func newLocalAgent(node configs.NodeConfig, sockPath string, logger *slog.Logger, ready func(), g *gossip) (*agent.Agent, error) {
	c, err := client.New("unix://"+sockPath, "")
	if err != nil {
		return nil, err
	}
	acfg := agent.DefaultConfig(node, c)
	acfg.Logger = logger
	acfg.Ready = ready
	if g != nil {
		acfg.Network = g.network
	}
	return agent.New(acfg)
}

// stopTimeout bounds how long RunServer waits for its goroutines to end.
const stopTimeout = 10 * time.Second

// housekeeping prunes old events now and then.
func housekeeping(ctx context.Context, st *store.Store, log *slog.Logger) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := st.PruneEvents(eventMaxAge); err != nil {
				log.Warn("prune events", "err", err)
			} else if n > 0 {
				log.Debug("pruned events", "count", n)
			}
		}
	}
}

// listenUnix listens on a unix socket at path with mode 0600 from the
// first moment: it binds a temporary name, sets the mode, then renames it
// into place. A stale socket is removed; a live one (another server) is an
// error.
func listenUnix(path string) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another server is serving %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("place socket: %w", err)
	}
	return ln, nil
}

// serverHosts are the names the serving certificate must hold: the
// advertise address and api_addr's host unless it is every address.
func serverHosts(node configs.NodeConfig) []string {
	var hosts []string
	if node.AdvertiseAddr != "" {
		hosts = append(hosts, node.AdvertiseAddr)
	}
	if h, _, err := net.SplitHostPort(node.APIAddr); err == nil && h != "" && h != "0.0.0.0" && h != node.AdvertiseAddr {
		hosts = append(hosts, h)
	}
	return hosts
}

// gossipAddrs turns API addresses (host:port) into gossip addresses: the
// same host on the default gossip port.
func gossipAddrs(apiAddrs []string) []string {
	var out []string
	for _, a := range apiAddrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a
		}
		out = append(out, net.JoinHostPort(host, "7946"))
	}
	return out
}
