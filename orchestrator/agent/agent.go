package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// Config configures an Agent. Start from DefaultConfig.
type Config struct {
	// Node is this node's config: name, labels, directories, bridge,
	// CIDRs, cgroup parent, registries, reserve, max pods, advertise addr.
	Node configs.NodeConfig
	// Client reaches the API. Required.
	Client *client.Client
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Ready, if set, is called once when the first sync converged: the node
	// is registered, the load balancer programmed and every pod bound to
	// the node had its first sync (bounded by FirstSyncTimeout).
	Ready func()
	// Resync is how often every pod and the load balancer are synced
	// without a change. Default 10s.
	Resync time.Duration
	// Heartbeat is how often the node's Ready condition is refreshed.
	// Default 5s.
	Heartbeat time.Duration
	// LBDrainTimeout bounds how long a deleted pod waits for the load
	// balancers to drop it before SIGTERM. Default 2s.
	LBDrainTimeout time.Duration
	// FirstSyncTimeout bounds the wait for the first sync before Ready.
	// Default 60s.
	FirstSyncTimeout time.Duration
	// OfflineAfter is how long the agent tries to reach a server at start
	// before it runs from its local cache (if it has one): its pods and
	// load balancer come back from the cache then, and it keeps trying the
	// server in the background. Short, so that a node restarted without
	// its uplink serves at once; a server that answers within it is
	// listed instead (no stale cache replayed). Default 1s.
	OfflineAfter time.Duration
	// ShimPath is the binary re-executed as the container shim and init;
	// default /proc/self/exe (which must call containers.Init).
	ShimPath string
	// Gossip, if set, is the cluster membership: once the node network is
	// set up, Run announces the pod CIDR there, keeps routes to the other
	// nodes' pod CIDRs and leaves failed nodes' endpoints out (peers.go).
	Gossip Gossip
}

// DefaultConfig returns the defaults documented on Config for node.
func DefaultConfig(node configs.NodeConfig, c *client.Client) Config {
	return Config{
		Node:             node,
		Client:           c,
		Logger:           slog.Default(),
		Resync:           10 * time.Second,
		Heartbeat:        5 * time.Second,
		LBDrainTimeout:   2 * time.Second,
		FirstSyncTimeout: 60 * time.Second,
		OfflineAfter:     time.Second,
	}
}

// Validate fills zero values with defaults and checks the rest.
func (c *Config) Validate() error {
	d := DefaultConfig(c.Node, c.Client)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Resync <= 0 {
		c.Resync = d.Resync
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.LBDrainTimeout <= 0 {
		c.LBDrainTimeout = d.LBDrainTimeout
	}
	if c.FirstSyncTimeout <= 0 {
		c.FirstSyncTimeout = d.FirstSyncTimeout
	}
	if c.OfflineAfter <= 0 {
		c.OfflineAfter = d.OfflineAfter
	}
	if c.Client == nil {
		return errors.New("agent: a client is required")
	}
	return c.Node.Validate()
}

// Agent runs the pods of one node. Create it with New, then Run it.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	c    *client.Client
	name string

	rt  *containers.Runtime
	net *netlb.Network

	// mu protects the fields below.
	mu       sync.Mutex
	workers  map[string]*podWorker
	services map[string]*api.Service
	eps      map[string]*api.Endpoints
	// lbIPs are the endpoint IPs of the last successful netlb sync.
	lbIPs map[string]bool
	// downNodes are nodes the gossip says failed (SetDownNodes): their
	// endpoints are left out of this node's load balancer.
	downNodes map[string]bool

	lbKick chan struct{}
	eventc chan api.Event
	// workerDone receives the name of a worker that finished tearing its
	// pod down.
	workerDone chan *podWorker
}

// New checks cfg and returns an Agent; it touches nothing yet.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "agent", "node", cfg.Node.NodeName),
		c:          cfg.Client,
		name:       cfg.Node.NodeName,
		workers:    map[string]*podWorker{},
		services:   map[string]*api.Service{},
		eps:        map[string]*api.Endpoints{},
		lbIPs:      map[string]bool{},
		lbKick:     make(chan struct{}, 1),
		eventc:     make(chan api.Event, 512),
		workerDone: make(chan *podWorker, 64),
	}, nil
}

// RuntimeConfig is the containers config of a node.
func RuntimeConfig(n configs.NodeConfig, log *slog.Logger) containers.Config {
	cfg := containers.DefaultConfig()
	cfg.Root = n.DataDir
	cfg.StateDir = filepath.Join(n.RunDir, "containers")
	cfg.CgroupParent = n.CgroupParent
	cfg.InsecureRegistries = n.InsecureRegistries
	if log != nil {
		cfg.Logger = log.With("component", "containers")
	}
	return cfg
}

// NetConfig is the netlb config of a node; podCIDR may be nil for Cleanup.
func NetConfig(n configs.NodeConfig, podCIDR *net.IPNet, log *slog.Logger) (netlb.Config, error) {
	cfg := netlb.DefaultConfig()
	cfg.Bridge = n.Bridge
	cfg.StateDir = filepath.Join(n.DataDir, "netlb")
	cfg.RunDir = n.RunDir
	var err error
	if _, cfg.ClusterCIDR, err = net.ParseCIDR(n.ClusterCIDR); err != nil {
		return cfg, fmt.Errorf("cluster cidr: %w", err)
	}
	if _, cfg.ServiceCIDR, err = net.ParseCIDR(n.ServiceCIDR); err != nil {
		return cfg, fmt.Errorf("service cidr: %w", err)
	}
	cfg.PodCIDR = podCIDR
	if cfg.PodCIDR == nil {
		// Cleanup needs no pod CIDR, but Validate wants one inside the
		// cluster CIDR.
		cfg.PodCIDR = &net.IPNet{IP: cfg.ClusterCIDR.IP, Mask: net.CIDRMask(24, 32)}
	}
	if log != nil {
		cfg.Logger = log.With("component", "netlb")
	}
	return cfg, nil
}

// Run runs the agent until ctx ends. Containers keep running when it
// returns: a later Run adopts them.
func (a *Agent) Run(ctx context.Context) error {
	rcfg := RuntimeConfig(a.cfg.Node, a.cfg.Logger)
	if a.cfg.ShimPath != "" {
		rcfg.ShimPath = a.cfg.ShimPath
	}
	rt, err := containers.Open(ctx, rcfg)
	if err != nil {
		return fmt.Errorf("open container runtime: %w", err)
	}
	defer rt.Close()
	a.mu.Lock()
	a.rt = rt
	a.mu.Unlock()

	// A server that does not answer within OfflineAfter lets a node that
	// ran before start from its local cache: its pods keep running and its
	// load balancer is programmed as it was; it catches up once a server
	// answers.
	cached := a.loadCache()
	var cidr string
	offline := false
	rctx, cancelReg := context.WithTimeout(ctx, a.cfg.OfflineAfter)
	node, err := a.register(rctx)
	cancelReg()
	switch {
	case err == nil:
		cidr = node.Spec.PodCIDR
	case ctx.Err() != nil:
		return nil
	case cached != nil && cached.PodCIDR != "":
		a.log.Warn("no server answers; running from the local cache until one does", "cache", a.cachePath(), "saved", cached.Saved, "err", err)
		offline, cidr = true, cached.PodCIDR
	default:
		if node, err = a.register(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		cidr = node.Spec.PodCIDR
	}
	_, podCIDR, err := net.ParseCIDR(cidr)
	if err != nil {
		return fmt.Errorf("pod cidr %q: %w", cidr, err)
	}
	ncfg, err := NetConfig(a.cfg.Node, podCIDR, a.cfg.Logger)
	if err != nil {
		return err
	}
	nw, err := netlb.New(ncfg)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.net = nw
	a.mu.Unlock()
	// Program the load balancer from a fresh list (or the cache) before
	// anything else, and before SetupNode (which rewrites every chain from
	// the last sync), so that after a crash the rules in force are
	// rewritten unchanged and no service loses its rules for a moment.
	var svcRev, epRev int64
	if offline {
		a.mu.Lock()
		for _, sv := range cached.Services {
			a.services[sv.Name] = sv
		}
		for _, e := range cached.Endpoints {
			a.eps[e.Name] = e
		}
		a.mu.Unlock()
	} else if svcRev, epRev, err = a.relistServices(ctx); err != nil {
		return err
	}
	if err := a.syncLB(); err != nil {
		a.log.Debug("load balancer sync before node setup failed (a new node)", "err", err)
	}
	a.log.Info("setting up the node network (sysctls ip_forward, route_localnet, bridge-nf-call-iptables; bridge; SKIFF-* chains)",
		"bridge", ncfg.Bridge, "pod_cidr", podCIDR.String())
	if err := nw.SetupNode(); err != nil {
		return fmt.Errorf("set up node network: %w", err)
	}
	if err := a.syncLB(); err != nil {
		a.log.Warn("first load balancer sync failed; retrying", "err", err)
	}
	stopPeers := a.startPeers(ctx, podCIDR, nw)
	defer stopPeers()

	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, cancelWorkers := context.WithCancel(ctx)
	defer cancelWorkers()
	wg.Add(5)
	go func() { defer wg.Done(); a.eventLoop(wctx) }()
	go func() { defer wg.Done(); a.heartbeat(wctx) }()
	go func() { defer wg.Done(); a.lbLoop(wctx) }()
	go func() { defer wg.Done(); a.exitLoop(wctx) }()
	go func() { defer wg.Done(); a.cacheLoop(wctx, podCIDR.String(), time.Second) }()

	var podRev int64
	if offline {
		// Run the cached pods; local pods the cache does not know are left
		// alone until a server says what to do with them.
		var firsts []chan struct{}
		for _, p := range cached.Pods {
			if w := a.podChanged(wctx, &wg, p, p.Spec.Node != a.name); w != nil {
				firsts = append(firsts, w.firstSync)
			}
		}
		go a.waitFirstSync(wctx, firsts)
		if _, err := a.register(ctx); err != nil {
			return nil // ctx ended
		}
		a.log.Info("a server answers again; catching up")
		if svcRev, epRev, err = a.relistServices(ctx); err != nil {
			return nil
		}
		a.kickLB()
		if podRev, _, err = a.adoptPods(wctx, &wg); err != nil {
			return nil
		}
	} else {
		var firsts []chan struct{}
		if podRev, firsts, err = a.adoptPods(wctx, &wg); err != nil {
			return err
		}
		go a.waitFirstSync(wctx, firsts)
	}

	events := make(chan watchItem, 64)
	wg.Add(3)
	go func() {
		defer wg.Done()
		a.watch(wctx, api.KindPod, podRev, map[string][]string{"node": {a.name}}, events)
	}()
	go func() { defer wg.Done(); a.watch(wctx, api.KindService, svcRev, nil, events) }()
	go func() { defer wg.Done(); a.watch(wctx, api.KindEndpoints, epRev, nil, events) }()

	resync := time.NewTicker(a.cfg.Resync)
	defer resync.Stop()
	a.log.Info("agent running", "pod_cidr", podCIDR.String())
	for {
		select {
		case <-ctx.Done():
			cancelWorkers()
			a.log.Info("agent stopping; containers keep running")
			return nil
		case it := <-events:
			a.handle(wctx, &wg, it)
		case w := <-a.workerDone:
			a.mu.Lock()
			if a.workers[w.name] == w {
				delete(a.workers, w.name)
			}
			a.mu.Unlock()
		case <-resync.C:
			a.mu.Lock()
			for _, w := range a.workers {
				w.kick()
			}
			a.mu.Unlock()
			a.kickLB()
		}
	}
}

// adoptPods lists the pods bound to this node and hands each to its
// worker (starting workers as needed); workers of pods not listed, and
// local pods (containers or IPs) without an object, are stopped. It
// returns the list's revision and the first-sync channels of the workers
// it started.
func (a *Agent) adoptPods(ctx context.Context, wg *sync.WaitGroup) (int64, []chan struct{}, error) {
	pods, err := retry(ctx, func() (api.List[api.Pod], error) { return a.c.ListPods(ctx, "", a.name) })
	if err != nil {
		return 0, nil, err
	}
	want := map[string]bool{}
	var firsts []chan struct{}
	for i := range pods.Items {
		p := &pods.Items[i]
		want[p.Name] = true
		if w := a.podChanged(ctx, wg, p, false); w != nil {
			firsts = append(firsts, w.firstSync)
		}
	}
	a.mu.Lock()
	var gone []*podWorker
	for name, w := range a.workers {
		if !want[name] {
			gone = append(gone, w)
		}
	}
	a.mu.Unlock()
	for _, w := range gone {
		w.update(nil)
	}
	for _, name := range a.localPods() {
		a.mu.Lock()
		w := a.workers[name]
		a.mu.Unlock()
		if !want[name] && w == nil {
			a.log.Info("stopping a local pod that has no object", "pod", name)
			firsts = append(firsts, a.startWorker(ctx, wg, name, nil).firstSync)
		}
	}
	return pods.Revision, firsts, nil
}

// localPods returns the pods this node has containers or an IP for.
func (a *Agent) localPods() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range a.rt.Pods() {
		if !seen[p.Name] {
			seen[p.Name] = true
			out = append(out, p.Name)
		}
	}
	if ips, err := a.net.Pods(); err == nil {
		for name := range ips {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	} else {
		a.log.Warn("list pod IPs", "err", err)
	}
	return out
}

// waitFirstSync calls Ready once every first sync is done (or the timeout).
func (a *Agent) waitFirstSync(ctx context.Context, firsts []chan struct{}) {
	deadline := time.NewTimer(a.cfg.FirstSyncTimeout)
	defer deadline.Stop()
	for _, ch := range firsts {
		select {
		case <-ch:
		case <-deadline.C:
			a.log.Warn("first sync not done in time; reporting ready anyway", "timeout", a.cfg.FirstSyncTimeout)
			goto ready
		case <-ctx.Done():
			return
		}
	}
ready:
	a.log.Info("first sync done")
	if a.cfg.Ready != nil {
		a.cfg.Ready()
	}
}

// startWorker starts the worker of a pod (p nil: a local pod without an
// object, to stop); a.mu must not be held.
func (a *Agent) startWorker(ctx context.Context, wg *sync.WaitGroup, name string, p *api.Pod) *podWorker {
	w := newPodWorker(a, name, p)
	a.mu.Lock()
	a.workers[name] = w
	a.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.run(ctx)
		select {
		case a.workerDone <- w:
		case <-ctx.Done():
		}
	}()
	return w
}

// exitLoop wakes the worker of a pod whose container exited.
func (a *Agent) exitLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-a.rt.Events():
			a.mu.Lock()
			w := a.workers[ev.Status.Pod]
			a.mu.Unlock()
			if w != nil {
				w.containerExited(ev)
			}
		}
	}
}

// retry calls fn until it succeeds or ctx ends, backing off on errors.
func retry[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	delay := 100 * time.Millisecond
	for {
		v, err := fn()
		if err == nil {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}
