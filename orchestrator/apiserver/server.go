package apiserver

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/loadstats"
	"github.com/skiff-edge/skiff/orchestrator/metrics"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Defaults of Options; the CIDRs' are the node config's
// (configs.DefaultServiceCIDR, configs.DefaultClusterCIDR).
const (
	DefaultMaxBody     = 1 << 20
	DefaultMaxReplicas = 10000
)

// Options configure a Server.
type Options struct {
	// ServiceCIDR is where service cluster IPs come from. Default
	// configs.DefaultServiceCIDR.
	ServiceCIDR string
	// ClusterCIDR is where each node's /24 pod CIDR comes from. Default
	// configs.DefaultClusterCIDR.
	ClusterCIDR string
	// MaxBody is the largest request body accepted (413 above). Default
	// DefaultMaxBody.
	MaxBody int64
	// MaxReplicas caps an app's replicas: a typo of a few zeros must not
	// make the controller create millions of pods. Default
	// DefaultMaxReplicas.
	MaxReplicas int
	// CheckHostPath, if set, checks the path of every host volume at
	// apply time: an error is a 400 on the volume's path field, its text
	// the rule broken. The server sets its own node's policy
	// (agent.HostPathPolicy(node).Check); nil leaves the check to the
	// nodes, which always make it at pod start.
	CheckHostPath func(path string) error
	// CheckExternalIP, if set, checks every service's external_ip at apply
	// and PUT (nil: allowed). The server passes its node config's [lb]
	// pools (configs.LB.CheckExternalIP).
	CheckExternalIP func(ip string) error
	// SecretKeys seal the secrets in the store (LoadSecretKeys); nil: a
	// random key held in memory, for tests (what it seals does not
	// outlive the process).
	SecretKeys *SecretKeys
	// FreeExternalIP, if set, picks the address of a load-balancer
	// service that asks for none: the first of the pools that used does
	// not hold (configs.LB.FreeAddress). nil: such a service gets no
	// address.
	FreeExternalIP func(used map[string]bool) (string, error)
	// Limits bound connections, watch streams and log follows (see
	// limits.go); zero fields mean their defaults.
	Limits Limits
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Metrics is the registry /metrics serves, into which the API
	// registers its metrics (see metrics.go); nil makes one (with the Go
	// and process collectors). Registry returns it.
	Metrics *prometheus.Registry
	// Load keeps the nodes' load reports (in memory); nil makes a new one.
	// The server shares it with the autoscaler.
	Load *loadstats.Registry
	// DataDir is the server's data dir, whose PKI and secret keys GET
	// /v1/snapshot puts in the backup beside the store. Empty: the
	// directory of SecretKeys' file (LoadSecretKeys reads it there).
	DataDir string
}

// Server serves the API. Create it with New.
type Server struct {
	st          *store.Store
	opts        Options
	log         *slog.Logger
	mux         *http.ServeMux
	serviceCIDR *net.IPNet
	clusterCIDR *net.IPNet
	// load holds the nodes' load reports (load.go).
	load *loadstats.Registry

	// reg is the registry /metrics serves; m the API's own metrics.
	reg            *prometheus.Registry
	m              *apiMetrics
	metricsHandler http.Handler

	// podIO serves logs and exec (see SetPodIO); nil until an agent runs.
	podIO atomic.Pointer[api.PodIO]
	// nodeImages pulls and lists the nodes' images (images.go); nil
	// until set.
	nodeImages atomic.Pointer[api.NodeImages]
	// members serves the gossip view (see SetMembership); nil without gossip.
	members atomic.Pointer[Membership]
	// joinCfg issues node certificates (see EnableJoin); nil without TCP.
	joinCfg atomic.Pointer[JoinConfig]
	// watches and follows bound the watch streams and the log follows
	// (see limits.go).
	watches, follows *streamLimit
	// keys seal and open secrets (secretkeys.go).
	keys *SecretKeys
	// console serves /ui/ (see SetConsole); nil without one.
	console atomic.Pointer[http.Handler]
	// patterns are the routes registered, "METHOD PATH" (see authorized).
	patterns []string
	// leases are the nodes' heartbeats, in memory (lease.go).
	leases *Leases
	// serverOps serve /v1/servers (ha.go); nil without raft.
	serverOps atomic.Pointer[ServerOps]
	// witness: this server serves no writes (ha.go).
	witness atomic.Bool
	// forward reaches the leader for the local socket's writes (ha.go).
	forward atomic.Pointer[http.RoundTripper]
}

// Validate checks the CIDRs of o (empty ones mean the defaults).
func (o Options) Validate() error {
	_, _, err := o.cidrs()
	return err
}

func (o Options) cidrs() (service, cluster *net.IPNet, err error) {
	sc, cc := cmp.Or(o.ServiceCIDR, configs.DefaultServiceCIDR), cmp.Or(o.ClusterCIDR, configs.DefaultClusterCIDR)
	if _, service, err = net.ParseCIDR(sc); err != nil || service.IP.To4() == nil {
		return nil, nil, fmt.Errorf("service cidr %q: want an IPv4 CIDR", sc)
	}
	if _, cluster, err = net.ParseCIDR(cc); err != nil || cluster.IP.To4() == nil {
		return nil, nil, fmt.Errorf("cluster cidr %q: want an IPv4 CIDR", cc)
	}
	if ones, _ := cluster.Mask.Size(); ones > 24 {
		return nil, nil, fmt.Errorf("cluster cidr %q: want /24 or larger", cc)
	}
	return service, cluster, nil
}

// New returns a Server on st. opts must pass Validate: New panics on a bad
// CIDR, a programming error once the node config has been validated.
func New(st *store.Store, opts Options) *Server {
	service, cluster, err := opts.cidrs()
	if err != nil {
		panic("apiserver.New: " + err.Error())
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.MaxReplicas <= 0 {
		opts.MaxReplicas = DefaultMaxReplicas
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Load == nil {
		opts.Load = loadstats.New(0, nil)
	}
	opts.Limits = opts.Limits.withDefaults()
	lim := opts.Limits
	s := &Server{st: st, opts: opts, log: opts.Logger.With("component", "apiserver"),
		serviceCIDR: service, clusterCIDR: cluster, leases: newLeases(), load: opts.Load,
		watches: newStreamLimit("watch streams", lim.MaxWatchesPerClient, lim.MaxWatches, limitEnv.watchesPer, limitEnv.watches),
		follows: newStreamLimit("log follows", lim.MaxLogFollowsPerClient, lim.MaxLogFollows, limitEnv.followsPer, limitEnv.follows),
	}
	s.keys = opts.SecretKeys
	if s.keys == nil {
		s.keys = newRandomKeys()
	}
	s.reg = opts.Metrics
	if s.reg == nil {
		s.reg = newRegistry()
	}
	s.m = newAPIMetrics(s.reg, s)
	s.metricsHandler = metrics.Handler(s.reg)
	s.routes()
	if err := s.resealSecrets(); errors.Is(err, store.ErrNotLeader) || errors.Is(err, store.ErrNoQuorum) {
		// A follower (or a server still electing): the leader's copy is
		// sealed with the same keys, handed over at the server join.
		s.log.Info("secrets not re-sealed: this server is not the leader", "err", err)
	} else if err != nil {
		s.log.Error("re-seal secrets with the active key", "err", err)
	}
	return s
}

// route registers h for pattern's methods, behind their access check (see
// authz.go), and a JSON 405 for the others.
func (s *Server) route(path string, handlers map[string]http.HandlerFunc) {
	var allow []string
	for method, h := range handlers {
		s.mux.HandleFunc(method+" "+path, s.authorized(method+" "+path, h))
		allow = append(allow, method)
	}
	slices.Sort(allow) // a stable Allow header, not map order
	allowed := strings.Join(allow, ", ")
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allowed)
		writeError405(w, r.Method, path, allowed)
	})
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	type hs = map[string]http.HandlerFunc
	s.route("/v1/nodes", hs{"GET": s.listNodes})
	s.route("/v1/nodes/{name}", hs{"GET": s.getNode, "PUT": s.putNode, "DELETE": s.deleteNode})
	s.route("/v1/nodes/{name}/lease", hs{"POST": s.renewLease})
	s.route("/v1/apps", hs{"GET": s.listApps})
	s.route("/v1/apps/{name}", hs{"GET": s.getApp, "PUT": s.putApp, "DELETE": s.deleteApp})
	s.route("/v1/apps/{name}/scale", hs{"POST": s.scaleApp})
	s.route("/v1/apps/{name}/rollback", hs{"POST": s.rollbackApp})
	s.route("/v1/apps/{name}/restart", hs{"POST": s.restartApp})
	s.route("/v1/apply", hs{"POST": s.apply})
	s.route("/v1/pods", hs{"GET": s.listPods})
	s.route("/v1/pods/{name}", hs{"GET": s.getPod, "PUT": s.putPod, "DELETE": s.deletePod})
	s.route("/v1/pods/{name}/status", hs{"PUT": s.putPodStatus})
	s.route("/v1/pods/{name}/logs", hs{"GET": s.podLogs})
	s.route("/v1/pods/{name}/exec", hs{"POST": s.podExec})
	s.route("/v1/services", hs{"GET": s.listServices})
	s.route("/v1/services/{name}", hs{"GET": s.getService, "PUT": s.putService, "DELETE": s.deleteService})
	s.route("/v1/services/{name}/holder", hs{"PUT": s.putServiceHolder})
	s.route("/v1/endpoints", hs{"GET": s.listEndpoints})
	s.route("/v1/endpoints/{name}", hs{"GET": s.getEndpoints})
	s.route("/v1/events", hs{"GET": s.listEvents, "POST": s.postEvent})
	s.route("/v1/members", hs{"GET": s.listMembers})
	s.route("/v1/cluster", hs{"GET": s.clusterInfo})
	s.route("/v1/configs", hs{"GET": s.listConfigs})
	s.route("/v1/configs/{name}", hs{"GET": s.getConfig, "PUT": s.putConfig, "DELETE": s.deleteConfig})
	s.route("/v1/secrets", hs{"GET": s.listSecrets})
	s.route("/v1/secrets/{name}", hs{"GET": s.getSecret, "PUT": s.putSecret, "DELETE": s.deleteSecret})
	s.route("/v1/nodes/{name}/secrets/{secret}", hs{"GET": s.nodeSecret})
	s.route("/healthz", hs{"GET": s.healthz})
	s.route("/readyz", hs{"GET": s.healthz})
	s.route("/metrics", hs{"GET": s.metrics})
	s.route("/v1/nodes/{name}/load", hs{"PUT": s.putNodeLoad})
	s.route("/v1/services/{name}/stats", hs{"GET": s.serviceStats})
	s.route("/v1/stats", hs{"GET": s.listStats})
	s.route("/v1/services/{name}/wake", hs{"POST": s.wakeService})
	s.route("/v1/images", hs{"GET": s.listImages})
	s.route("/v1/images/pull", hs{"POST": s.pullImage})
	s.route("/v1/servers", hs{"GET": s.listServers, "POST": s.addServer})
	s.route("/v1/join/server", hs{"POST": s.joinServer})
	s.route("/v1/servers/{name}", hs{"DELETE": s.removeServer})
	s.route("/v1/snapshot", hs{"GET": s.getSnapshot})
	s.authRoutes()
	// The web console signs its users in itself (see console.go).
	s.mux.HandleFunc(ConsolePath, s.serveConsole)
	s.mux.Handle("/ui", http.RedirectHandler(ConsolePath, http.StatusSeeOther))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errBody("not_found", "no such path: "+r.URL.Path))
	})
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	s.mux.ServeHTTP(rw, r) // sets r.Pattern to the route that served it
	s.m.observe(r, rw.code, time.Since(start))
}

// statusWriter remembers the status code; it passes Flush on for watches.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
