package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/metrics"
)

// Agent runs the pods of one node. Create it with New, then Run it.
//
// It is the composition of two halves: the pod side (pods, pods.go, with
// one worker per pod) and the load-balancer side (lb, lb.go). Run opens
// the container runtime and the node network, registers the node (or
// starts from the local cache), wires both halves to them and runs them;
// the Agent itself keeps the node object fresh, saves the cache and serves
// logs and exec (io.go).
type Agent struct {
	cfg  Config
	log  *slog.Logger
	c    *client.Client
	name string

	lb     *lb
	vip    *vips
	events *eventQueue
	// peers is the peer loop's node list (peers.go).
	peers peerState
	// pods is set by Run before any of its goroutines starts.
	pods *pods

	// mu protects rt, which Run sets once it is open, and pods as the pod
	// IO handler reads it (logs and exec come from other goroutines).
	mu sync.Mutex
	rt *containers.Runtime

	// metrics records probe results and load balancer syncs (nil: none).
	metrics *metrics.Agent
	// rates are the new connections per second by service of the load
	// sampler's last window (load.go), for skiff_service_connections_per_second.
	rates atomic.Pointer[map[string]float64]
}

// New checks cfg and returns an Agent; it touches nothing yet.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "agent", "node", cfg.Node.NodeName)
	a := &Agent{
		cfg:    cfg,
		log:    log,
		c:      cfg.Client,
		name:   cfg.Node.NodeName,
		lb:     newLB(log, cfg.Client, cfg.Client),
		vip:    newVIPs(cfg.Node.NodeName, log),
		events: newEventQueue(cfg.Node.NodeName, log),
	}
	if cfg.Metrics != nil {
		m, err := metrics.NewAgent(cfg.Metrics)
		if err != nil {
			return nil, fmt.Errorf("agent metrics: %w", err)
		}
		if err := metrics.RegisterServiceRates(cfg.Metrics, a); err != nil {
			return nil, fmt.Errorf("agent metrics: %w", err)
		}
		a.metrics, a.lb.metrics = m, m
	}
	a.lb.onChange = a.vip.kick
	a.vip.source = a.lb.vipView
	a.vip.event = func(reason, msg string) { a.events.addNode(api.EventNormal, reason, msg) }
	a.vip.report = func(ctx context.Context, service, addr string) error {
		_, err := a.c.PutServiceHolder(ctx, service, addr, a.name)
		return err
	}
	return a, nil
}

// SetDownNodes says which nodes the gossip reports failed: this node's load
// balancer leaves their endpoints out at once, without waiting for the
// server (which may be the one cut off) to update the endpoints, unless
// that would leave a service with none. Safe to call at any time.
func (a *Agent) SetDownNodes(nodes map[string]bool) { a.lb.setDown(nodes) }

// Run runs the agent until ctx ends. Containers keep running when it
// returns: a later Run adopts them.
//
// In order: it opens the container runtime, registers the node (or starts
// from the local cache), sets up the node network under a programmed load
// balancer, starts the loops that need no lists, brings the pods up (or
// catches up once a server answers) and then watches the server.
func (a *Agent) Run(ctx context.Context) error {
	rt, err := a.openRuntime(ctx)
	if err != nil {
		return err
	}
	defer rt.Close()

	// A server that does not answer within OfflineAfter lets a node that
	// ran before start from its local cache: its pods keep running and its
	// load balancer is programmed as it was; it catches up once a server
	// answers.
	cached := a.loadCache()
	podCIDR, offline, err := a.connect(ctx, cached)
	if err != nil || podCIDR == nil {
		return err
	}
	nw, err := a.openNetwork(rt, podCIDR)
	if err != nil {
		return err
	}
	// The activator listens before the first sync, whose rules name its port.
	act, err := newActivator(a.log, a.cfg.Activator)
	if err != nil {
		return err
	}
	defer act.ln.Close() // serve closes it too; this covers an early return
	act.wake = func(ctx context.Context, svc string) error { _, err := a.c.WakeService(ctx, svc); return err }
	act.lookup, act.endpoints = a.lb.activatorLookup, a.lb.readyEndpoints
	a.lb.mu.Lock()
	a.lb.activator = act.port()
	a.lb.mu.Unlock()
	svcRev, epRev, err := a.setUpNode(ctx, nw, offline, cached)
	if err != nil {
		return err
	}
	stopDNS := a.startDNS(podCIDR)
	defer stopDNS()
	if cached != nil {
		a.peers.setNodes(cached.Nodes) // the routes until a server answers
	}
	a.openVIPLink()
	stopPeers := a.startPeers(ctx, podCIDR, nw)
	defer stopPeers()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer a.pods.wait()
	wctx, cancelWorkers := context.WithCancel(ctx)
	defer cancelWorkers()
	wg.Go(func() { a.events.run(wctx, a.c) })
	wg.Go(func() { a.heartbeat(wctx) })
	lbTick := a.loopBeat("agent lb sync")
	wg.Go(func() { a.lb.syncLoop(wctx, lbTick) })
	wg.Go(func() { a.vip.run(wctx, a.cfg.Resync) })
	wg.Go(func() { a.pods.exitLoop(wctx, rt.Events()) })
	cacheTick := a.loopBeat("agent cache")
	wg.Go(func() { a.cacheLoop(wctx, podCIDR.String(), time.Second, cacheTick) })
	wg.Go(func() { act.serve(wctx) })
	if a.cfg.LoadInterval > 0 {
		wg.Go(func() { a.loadLoop(wctx, nw, a.cfg.LoadInterval) })
	}

	var podRev int64
	if offline {
		if podRev, svcRev, epRev, err = a.catchUp(ctx, wctx, cached); err != nil {
			return nil // ctx ended
		}
	} else {
		var firsts []chan struct{}
		if podRev, firsts, err = a.pods.adopt(wctx); err != nil {
			return err
		}
		go a.waitFirstSync(wctx, firsts)
	}

	wg.Go(func() { a.lb.run(wctx, svcRev, epRev, a.cfg.Resync) })
	podTick := a.loopBeat("agent pods")
	wg.Go(func() { a.pods.run(wctx, a.c, podRev, a.cfg.Resync, podTick) })
	a.log.Info("agent running", "pod_cidr", podCIDR.String())
	<-ctx.Done()
	cancelWorkers()
	a.log.Info("agent stopping; containers keep running")
	return nil
}

// Rates returns the new connections per second by service over the load
// sampler's last window (nil before the first one, and after a failed
// sample): metrics.ServiceRates.
func (a *Agent) Rates() map[string]float64 {
	if r := a.rates.Load(); r != nil {
		return *r
	}
	return nil
}

// loopSilence is the longest one of the agent's main loops may go without
// a turn before the watchdog stops feeding systemd. Each turns at least
// every resync (10s by default: the pod and load balancer loops on their
// resync ticker, the cache loop every second).
const loopSilence = 30 * time.Second

// loopBeat registers one of the agent's main loops with Config.Beat and
// returns its tick (a no-op without).
func (a *Agent) loopBeat(name string) func() {
	if a.cfg.Beat == nil {
		return func() {}
	}
	silence := max(loopSilence, 3*a.cfg.Resync)
	a.log.Debug("loop watched by the watchdog", "loop", name, "silence", silence)
	return a.cfg.Beat(name, silence)
}

// openRuntime opens the container runtime and keeps it for logs and exec
// (io.go). The caller closes it.
func (a *Agent) openRuntime(ctx context.Context) (*containers.Runtime, error) {
	rcfg := RuntimeConfig(a.cfg.Node, a.cfg.Logger)
	if a.cfg.ShimPath != "" {
		rcfg.ShimPath = a.cfg.ShimPath
	}
	rt, err := containers.Open(ctx, rcfg)
	if err != nil {
		return nil, fmt.Errorf("open container runtime: %w", err)
	}
	a.mu.Lock()
	a.rt = rt
	a.mu.Unlock()
	return rt, nil
}

// openNetwork makes the node network for podCIDR (it touches nothing in
// the kernel yet) and hands it to the agent, its load balancer and its pod
// side, which it makes on runtime rt.
func (a *Agent) openNetwork(rt *containers.Runtime, podCIDR *net.IPNet) (*netlb.Network, error) {
	ncfg, err := NetConfig(a.cfg.Node, podCIDR, a.cfg.Logger)
	if err != nil {
		return nil, err
	}
	nw, err := netlb.New(ncfg)
	if err != nil {
		return nil, err
	}
	a.lb.net = nw
	ps := a.newPods(rt, nw)
	a.mu.Lock()
	a.pods = ps
	a.mu.Unlock()
	return nw, nil
}

// newPods returns the pod side of the agent, on runtime rt and network nw.
func (a *Agent) newPods(rt *containers.Runtime, nw *netlb.Network) *pods {
	return &pods{
		node: a.name, log: a.log, api: a.c, events: a.events, files: a.c,
		images: rt.Images(), sandboxes: rt, containers: rt, probes: rt,
		net: nw, lb: a.lb, metrics: a.metrics,
		drainTimeout: a.cfg.LBDrainTimeout, now: time.Now,
		workers: map[string]*podWorker{}, done: make(chan *podWorker, 64),
	}
}

// setUpNode programs the load balancer from a fresh list (or, offline,
// from cached) and then sets up the node network nw. The load balancer
// goes first, and before SetupNode (which rewrites every chain from the
// last sync), so that after a crash the rules in force are rewritten
// unchanged and no service loses its rules for a moment. It returns the
// revisions of the services and endpoints lists (0 offline).
func (a *Agent) setUpNode(ctx context.Context, nw *netlb.Network, offline bool, cached *cache) (svcRev, epRev int64, err error) {
	if offline {
		a.lb.set(cached.Services, cached.Endpoints)
	} else if svcRev, epRev, err = a.lb.relist(ctx); err != nil {
		return 0, 0, err
	}
	if err := a.lb.sync(); err != nil {
		a.log.Debug("load balancer sync before node setup failed (a new node)", "err", err)
	}
	ncfg := nw.Config()
	a.log.Info("setting up the node network (sysctls ip_forward, route_localnet, bridge-nf-call-iptables; bridge; SKIFF-* chains)",
		"bridge", ncfg.Bridge, "pod_cidr", ncfg.PodCIDR.String())
	if err := nw.SetupNode(); err != nil {
		return 0, 0, fmt.Errorf("set up node network: %w", err)
	}
	if err := a.lb.sync(); err != nil {
		a.log.Warn("first load balancer sync failed; retrying", "err", err)
	}
	return svcRev, epRev, nil
}

// catchUp runs an offline start: the cached pods run (and count for the
// first sync) until a server answers; then the load balancer and the pods
// catch up with fresh lists. It returns the lists' revisions, where the
// watches start. It fails only when ctx ends (each call is retried until
// then); wctx is the workers' context.
func (a *Agent) catchUp(ctx, wctx context.Context, cached *cache) (podRev, svcRev, epRev int64, err error) {
	go a.waitFirstSync(wctx, a.pods.startCached(wctx, cached.Pods))
	if _, err := a.register(ctx); err != nil {
		return 0, 0, 0, err
	}
	a.log.Info("a server answers again; catching up")
	if svcRev, epRev, err = a.lb.relist(ctx); err != nil {
		return 0, 0, 0, err
	}
	a.lb.kick()
	if podRev, _, err = a.pods.adopt(wctx); err != nil {
		return 0, 0, 0, err
	}
	return podRev, svcRev, epRev, nil
}

// connect registers the node and returns its pod CIDR. When no server
// answers within OfflineAfter and cached has a pod CIDR, it returns that
// with offline set (Run then catches up later); without a cache it keeps
// trying. A nil CIDR and nil error mean ctx ended.
func (a *Agent) connect(ctx context.Context, cached *cache) (podCIDR *net.IPNet, offline bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, a.cfg.OfflineAfter)
	node, err := a.register(rctx)
	cancel()
	var cidr string
	switch {
	case err == nil:
		cidr = node.Spec.PodCIDR
	case ctx.Err() != nil:
		return nil, false, nil
	case cached != nil && cached.PodCIDR != "":
		a.log.Warn("no server answers; running from the local cache until one does", "cache", a.cachePath(), "saved", cached.Saved, "err", err)
		offline, cidr = true, cached.PodCIDR
	default:
		if node, err = a.register(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, false, nil
			}
			return nil, false, err
		}
		cidr = node.Spec.PodCIDR
	}
	_, podCIDR, err = net.ParseCIDR(cidr)
	if err != nil {
		return nil, false, fmt.Errorf("pod cidr %q: %w", cidr, err)
	}
	return podCIDR, offline, nil
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

// startDNS starts the node's resolver at the bridge's address (dns.go),
// now that the bridge has it, and gives the pods its resolv.conf; the load
// balancer's syncs keep its names. A resolver that cannot start is logged
// and left out: pods then keep their images' resolv.conf. It returns the
// resolver's stop.
func (a *Agent) startDNS(podCIDR *net.IPNet) (stop func()) {
	c := a.cfg.Node.DNS
	if c.Disabled {
		return func() {}
	}
	log := a.log.With("component", "dns")
	r, err := newResolver(c, log)
	if err == nil {
		r.onlyFrom(podCIDR) // this node's pods (and the node, from the bridge's address)
		ip, addr := dnsAddr(podCIDR, c.Port)
		if _, err = r.listen(addr); err == nil {
			var path string
			if path, err = writeResolvConf(a.cfg.Node.RunDir, ip, r.domain); err == nil {
				a.pods.resolvConf = path
				a.lb.names = r
				a.lb.kick()
				return r.stop
			}
			r.stop()
		}
	}
	log.Error("node resolver not started: pods keep their images' resolv.conf", "err", err)
	return func() {}
}
