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
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/agent"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/controller"
	"github.com/skiff-edge/skiff/orchestrator/loadstats"
	"github.com/skiff-edge/skiff/orchestrator/metrics"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/ui"
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
	// certificate of <data_dir>/pki (made on first start, see cluster/pki).
	// Requests authenticate with a node's client certificate (issued at
	// its join) or a bearer token with a role (`skiff token` prints the
	// join token, `skiff token create` makes others); see
	// docs/security.md. It also starts this node's gossip member (role
	// server) on Node.GossipAddr and marks nodes whose member fails or
	// leaves NotReady.
	TCP bool
	// NodeCertValidity is the lifetime of the node certificates the server
	// issues. Zero takes $SKIFF_NODE_CERT_VALIDITY if set, else
	// pki.DefaultNodeCertValidity (30 days); nodes renew at two thirds.
	NodeCertValidity time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Ready, if set, is called once when the API serves and, with Agent,
	// once the agent converged its first sync.
	Ready func()
	// watchdogRounds, if set, gets each watchdog round's verdict (tests).
	watchdogRounds chan<- []string
	// Token is a token of role server, for a server that joins a cluster
	// (Node.Servers set, no CA in <data_dir>/pki yet); never from argv.
	Token string
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
	s := &server{node: newNode(ctx, withDirs(cfg.Node), cfg.Logger, "server"), sc: cfg, live: newLiveness()}
	defer func() {
		s.stop()
		s.log.Info("server stopped")
	}()
	for _, start := range []func() error{s.prepareRaft, s.openStore, s.listenAPI, s.startConsole, s.startGossip, s.awaitFirstLeader, s.serveAPI, s.serveMetrics, s.startControllers, s.startAgent, s.startWatchdog, s.stopRaftFirst} {
		if err := start(); err != nil {
			return err
		}
	}
	err := s.wait()
	if err != nil {
		s.log.Error("server failed", "err", err)
	}
	return err
}

// server is RunServer's node: its start phases, in order, fill the fields.
type server struct {
	*node
	sc ServerConfig

	st        *store.Store
	api       *apiserver.Server
	load      *loadstats.Registry // the nodes' load reports, shared by the API and the autoscaler
	sockPath  string
	listeners []apiListener
	gossip    *gossip  // nil without ServerConfig.TCP
	pki       *pki.PKI // nil without ServerConfig.TCP
	// live is what the systemd watchdog looks at (see watchdog.go).
	live *Liveness

	// Several servers (ha.go): joining is set when servers are given
	// (no bootstrap); joinPeers are the API addresses a server join
	// answered with; raftAddr is this server's advertised API address.
	joining    bool
	joinPeers  []string
	raftAddr   string
	raftStream *cluster.RaftStream
}

// apiListener is a listener and the handler that serves it.
type apiListener struct {
	ln net.Listener
	h  http.Handler
	// nextProto serves other ALPN protocols (raft) of a TLS listener.
	nextProto map[string]func(*http.Server, *tls.Conn, http.Handler)
}

// withDirs fills the data and run directories the node config leaves
// empty with the defaults.
func withDirs(node configs.NodeConfig) configs.NodeConfig {
	if node.DataDir == "" {
		node.DataDir = configs.DefaultDataDir
	}
	if node.RunDir == "" {
		node.RunDir = configs.DefaultRunDir
	}
	return node
}

// openStore makes the directories and opens the store.
func (s *server) openStore() error {
	for _, d := range []string{s.cfg.DataDir, s.cfg.RunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	compactAfter := s.sc.CompactAfter
	if v := os.Getenv("SKIFF_STORE_COMPACT_AFTER"); compactAfter == 0 && v != "" {
		var err error
		if compactAfter, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("SKIFF_STORE_COMPACT_AFTER=%q: %w", v, err)
		}
	}
	opts := store.Options{Logger: s.logger, CompactAfter: compactAfter}
	var st *store.Store
	var err error
	if s.raftStream != nil {
		st, err = store.OpenReplica(filepath.Join(s.cfg.DataDir, StoreFile), opts, s.replicaConfig())
	} else {
		st, err = store.Open(filepath.Join(s.cfg.DataDir, StoreFile), opts)
	}
	if err != nil {
		return err
	}
	s.st = st
	s.onStop(func() { st.Close() })
	return nil
}

// listenAPI makes the API and listens on its unix socket.
func (s *server) listenAPI() error {
	s.load = loadstats.New(0, nil)
	opts := apiserver.Options{ServiceCIDR: s.cfg.ServiceCIDR, ClusterCIDR: s.cfg.ClusterCIDR, Logger: s.logger, Load: s.load}
	opts.CheckHostPath = agent.HostPathPolicy(s.cfg).Check // host volumes: refused at apply time by this node's policy
	opts.CheckExternalIP = s.cfg.LB.CheckExternalIP        // external_ip only from this server's [lb] pools
	if len(s.cfg.LB.Pools) > 0 {
		opts.FreeExternalIP = s.cfg.LB.FreeAddress // load-balancer addresses picked from the same pools
	}
	if err := opts.Limits.FromEnv(os.Getenv); err != nil {
		return err
	}
	keys, err := apiserver.LoadSecretKeys(filepath.Join(s.cfg.DataDir, apiserver.SecretKeyFile))
	if err != nil {
		return err
	}
	opts.SecretKeys = keys
	if err := opts.Validate(); err != nil {
		return err
	}
	s.api = apiserver.New(s.st, opts)
	s.sockPath = filepath.Join(s.cfg.RunDir, SocketFile)
	ln, err := listenUnix(s.sockPath)
	if err != nil {
		return err
	}
	s.onStop(func() {
		ln.Close() // if it never served
		os.Remove(s.sockPath)
	})
	s.listeners = append(s.listeners, apiListener{s.api.LimitUnix(ln), withPprof(s.api), nil})
	return nil
}

// startConsole mounts the web console at /ui/ of the API and, if ui_addr
// is set, serves it alone on that loopback address over plain HTTP (see
// docs/ui.md).
func (s *server) startConsole() error {
	con, err := ui.New(ui.Config{API: s.api, Store: s.st, Logger: s.logger, ServiceRates: s.serviceRates})
	if err != nil {
		return err
	}
	s.api.SetConsole(con)
	s.goRun(func(ctx context.Context) error { con.Run(ctx); return nil })
	if s.cfg.UIAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.UIAddr)
	if err != nil {
		return fmt.Errorf("listen on ui_addr %s: %w", s.cfg.UIAddr, err)
	}
	s.onStop(func() { ln.Close() }) // if it never served
	s.listeners = append(s.listeners, apiListener{s.api.LimitTCP(ln), con.Handler(), nil})
	s.log.Info("web console on plain HTTP (loopback only)", "addr", ln.Addr().String())
	return nil
}

// serviceRates is every service's new connections/s over the nodes that
// reported in the last seconds (the autoscaler's figures), for the
// console's charts.
func (s *server) serviceRates() map[string]float64 {
	rates := map[string]float64{}
	for name, st := range s.load.Services() {
		rates[name] = st.NewPerSec
	}
	return rates
}

// startGossip, in cluster mode, starts the server's gossip member (the
// API then serves the members) and listens on TCP with TLS: requests
// authenticate with a node certificate or a token (see apiserver/auth.go),
// and the API issues node certificates from the cluster CA.
func (s *server) startGossip() error {
	if !s.sc.TCP {
		return nil
	}
	validity, err := s.certValidity()
	if err != nil {
		return err
	}
	p := s.pki // loaded by prepareRaft
	m, err := startMember(s.cfg, cluster.RoleServer, p.GossipKey(), s.logger)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	s.onStop(func() {
		if err := m.Leave(); err != nil {
			s.log.Warn("leave the gossip", "err", err)
		}
	})
	if len(s.cfg.Servers) > 0 {
		if _, err := m.Join(gossipAddrs(s.cfg.Servers)); err != nil {
			s.log.Warn("join the other servers", "servers", s.cfg.Servers, "err", err)
		}
	}
	s.gossip = newGossip(m, s.log)
	s.goRun(func(ctx context.Context) error { s.gossip.run(ctx); return nil })
	s.api.SetMembership(apiView{m: m, st: s.st})
	s.api.SetServerOps(s.st)
	s.api.SetWitness(s.cfg.Witness)
	s.api.SetForward(&http.Transport{Proxy: nil, TLSClientConfig: p.ServerClientTLS(), MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second})
	// The stream layer closes with raft (store Close, NetworkTransport
	// closes its stream): closing it earlier makes raft's accept loop spin.
	s.goRun(func(ctx context.Context) error { s.ensureVoter(ctx); return nil })
	s.goRun(func(ctx context.Context) error { s.syncJoinSecret(ctx); return nil })
	jc := apiserver.JoinConfig{PKI: p, GossipKey: m.PrimaryKey, CertValidity: validity}
	if s.sc.Agent {
		jc.LocalNode = s.cfg.NodeName
	}
	s.api.EnableJoin(jc)
	tcpLn, err := net.Listen("tcp", s.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.APIAddr, err)
	}
	s.onStop(func() { tcpLn.Close() }) // if it never served
	s.listeners = append(s.listeners, apiListener{tls.NewListener(s.api.LimitTCP(tcpLn), p.ServerTLSConfig()), s.api.TCPHandler(), s.raftNextProto()})
	s.log.Info("API on TCP (TLS)", "addr", tcpLn.Addr().String(), "gossip", m.Addr(), "node_cert_validity", validity)
	return nil
}

// certValidity is ServerConfig.NodeCertValidity, else
// $SKIFF_NODE_CERT_VALIDITY (tests use seconds to see renewals), else
// pki.DefaultNodeCertValidity.
func (s *server) certValidity() (time.Duration, error) {
	if s.sc.NodeCertValidity > 0 {
		return s.sc.NodeCertValidity, nil
	}
	v := os.Getenv("SKIFF_NODE_CERT_VALIDITY")
	if v == "" {
		return pki.DefaultNodeCertValidity, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < pki.MinNodeCertValidity {
		return 0, fmt.Errorf("SKIFF_NODE_CERT_VALIDITY=%q: want a duration of at least %s", v, pki.MinNodeCertValidity)
	}
	return d, nil
}

// serveAPI serves every listener. At stop, watch streams end and requests
// in flight get a few seconds.
func (s *server) serveAPI() error {
	// Watch streams run until their request's context ends: cancelling
	// reqCtx ends them at shutdown, which would otherwise wait for them.
	reqCtx, cancelReqs := context.WithCancel(context.Background())
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	var servers []*http.Server
	for _, l := range s.listeners {
		hs := &http.Server{
			Handler: l.h,
			// No WriteTimeout: it would cut watch streams and log
			// follows; those are bounded in number instead (see
			// apiserver/limits.go). Slow or idle clients are cut by
			// these two, so that they cannot hold a connection slot.
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			BaseContext:       func(net.Listener) context.Context { return reqCtx },
			ErrorLog:          errLog,
			TLSNextProto:      l.nextProto,
		}
		servers = append(servers, hs)
		// Not in the node's goroutines, which end before this stop runs:
		// Serve returns once Shutdown closed its listener.
		go func() {
			if err := hs.Serve(l.ln); !errors.Is(err, http.ErrServerClosed) {
				s.fail(fmt.Errorf("serve API on %s: %w", l.ln.Addr(), err))
			}
		}()
	}
	s.onStop(func() {
		cancelReqs()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, hs := range servers {
			if err := hs.Shutdown(ctx); err != nil {
				hs.Close()
			}
		}
	})
	return nil
}

// serveMetrics serves /metrics in plain HTTP, without authentication, on
// the node config's metrics_addr when it is set (off by default: the API
// listeners serve /metrics with the API's authentication).
func (s *server) serveMetrics() error {
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics_addr: listen on %s: %w", s.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(s.api.Registry()))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.fail(fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err))
		}
	}()
	s.onStop(func() { hs.Close() })
	s.log.Info("metrics in plain HTTP", "addr", ln.Addr().String())
	return nil
}

// startControllers runs the scheduler and the controllers (with the
// gossip's view of the nodes in cluster mode) and the housekeeping.
func (s *server) startControllers() error {
	ccfg := controller.ConfigFromNode(&s.cfg, s.logger)
	ccfg.Metrics = s.api.Registry()
	ccfg.Alive = s.live.Beat("controllers", max(controllerSilence, 6*ccfg.Resync)).Tick
	ccfg.Leases = s.api.Leases()
	ccfg.Images = s.api.ImagePuller() // pre-pulls before updates
	if s.load != nil {
		ccfg.Load = s.load
	}
	if s.gossip != nil {
		ccfg.Members = s.gossip.lifecycleView()
	}
	if !s.st.Replicated() {
		s.goRun(func(ctx context.Context) error {
			if err := controller.RunConfig(ctx, s.st, ccfg); err != nil {
				return fmt.Errorf("controllers: %w", err)
			}
			return nil
		})
		s.goRun(func(ctx context.Context) error { housekeeping(ctx, s.st, s.log); return nil })
		return nil
	}
	// With raft, the controllers, the scheduler, node liveness and the
	// housekeeping run on the ready leader only, and stop at once when it
	// loses leadership (ha.go).
	s.goRun(func(ctx context.Context) error {
		s.runLeadership(ctx, func(ctx context.Context) {
			go housekeeping(ctx, s.st, s.log)
			if s.gossip != nil {
				go s.reconcile(ctx, s.st, s.gossip.m)
			}
			if err := controller.RunConfig(ctx, s.st, ccfg); err != nil && ctx.Err() == nil {
				s.fail(fmt.Errorf("controllers: %w", err))
			}
		}, ccfg.Alive)
		return nil
	})
	return nil
}

// startAgent runs this node's agent with ServerConfig.Agent; it reports
// ready then. Without, the server is ready now.
func (s *server) startAgent() error {
	if !s.sc.Agent {
		s.setPodIO(nil)
		s.log.Info("server ready", "socket", s.sockPath, "revision", s.st.Rev())
		if s.sc.Ready != nil {
			s.sc.Ready()
		}
		return nil
	}
	ag, err := s.newLocalAgent()
	if err != nil {
		return err
	}
	s.setPodIO(ag)
	s.goRun(func(ctx context.Context) error {
		if err := ag.Run(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("agent: %w", err)
		}
		return nil
	})
	s.log.Info("server ready; the agent reports ready after its first sync", "socket", s.sockPath, "revision", s.st.Rev())
	return nil
}

// setPodIO serves logs and exec: in cluster mode for the pods of every
// node (podIORouter: the local agent's own, the others' through their
// agents), else through the local agent alone (nil: none).
func (s *server) setPodIO(local *agent.Agent) {
	var lio api.PodIO
	if local != nil {
		lio = local
	}
	if local != nil || s.pki != nil { // else the image routes answer 503 (images_proxy.go)
		s.api.SetNodeImages(&imagesRouter{st: s.st, pki: s.pki, localNode: s.cfg.NodeName, local: local, log: s.log})
	}
	if s.pki != nil {
		s.api.SetPodIO(&podIORouter{st: s.st, pki: s.pki, localNode: s.cfg.NodeName, local: lio, log: s.log})
		return
	}
	if lio != nil {
		s.api.SetPodIO(lio)
	}
}

// newLocalAgent makes the in-process agent of `skiff server --agent`; it
// reaches the API over the unix socket. With gossip, the agent's pod CIDR
// goes into the server's member's tags and the peer routes come from its
// view (one member per node).
func (s *server) newLocalAgent() (*agent.Agent, error) {
	c, err := client.New("unix://"+s.sockPath, "")
	if err != nil {
		return nil, err
	}
	acfg := agent.DefaultConfig(s.cfg, c)
	acfg.Logger = s.logger
	acfg.Ready = s.sc.Ready
	acfg.Metrics = s.api.Registry()
	acfg.Beat = func(name string, silence time.Duration) func() { return s.live.Beat(name, silence).Tick }
	if s.gossip != nil {
		acfg.Gossip = s.gossip.peersView()
	}
	return agent.New(acfg)
}

// controllerSilence is the longest the controllers' loop may go without a
// turn before the watchdog stops feeding systemd: it turns at least every
// resync (5s), a slow pass on an SD card included.
const controllerSilence = 30 * time.Second

// startWatchdog feeds systemd's watchdog (WatchdogSec= in the unit) while
// the controllers turn, the API answers /healthz on its unix socket and
// the store answers a read; without WATCHDOG_USEC it does nothing.
func (s *server) startWatchdog() error {
	s.live.Check("api", apiCheck(s.sockPath))
	s.live.Check("store", within(func() error {
		_, err := s.st.Count(api.KindNode)
		return err
	}))
	wd, err := watchdogFromEnv(s.live, s.log.With("part", "watchdog"))
	if err != nil || wd == nil {
		return err
	}
	wd.rounds = s.sc.watchdogRounds
	s.log.Info("systemd watchdog on", "interval", wd.interval)
	s.goRun(func(ctx context.Context) error { wd.run(ctx); return nil })
	return nil
}

// housekeeping prunes old events now and then.
func housekeeping(ctx context.Context, st *store.Store, log *slog.Logger) {
	every(ctx, 5*time.Minute, func() {
		if n, err := st.PruneEvents(eventMaxAge); err != nil {
			log.Warn("prune events", "err", err)
		} else if n > 0 {
			log.Debug("pruned events", "count", n)
		}
	})
}

// every calls f each time d passes (not at once) until ctx ends; a call
// that takes longer than d delays the next one, which does not pile up.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
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
