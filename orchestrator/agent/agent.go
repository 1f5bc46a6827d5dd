package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/client"
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
	events *eventQueue
	// pods is set by Run before any of its goroutines starts.
	pods *pods

	// mu protects rt and net, which Run sets once they are open.
	mu  sync.Mutex
	rt  *containers.Runtime
	net *netlb.Network
}

// New checks cfg and returns an Agent; it touches nothing yet.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "agent", "node", cfg.Node.NodeName)
	return &Agent{
		cfg:    cfg,
		log:    log,
		c:      cfg.Client,
		name:   cfg.Node.NodeName,
		lb:     newLB(log, cfg.Client, cfg.Client),
		events: newEventQueue(cfg.Node.NodeName, log),
	}, nil
}

// SetDownNodes says which nodes the gossip reports failed: this node's load
// balancer leaves their endpoints out at once, without waiting for the
// server (which may be the one cut off) to update the endpoints, unless
// that would leave a service with none. Safe to call at any time.
func (a *Agent) SetDownNodes(nodes map[string]bool) { a.lb.setDown(nodes) }

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
	podCIDR, offline, err := a.connect(ctx, cached)
	if err != nil || podCIDR == nil {
		return err
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
	a.lb.net = nw
	a.pods = &pods{
		node: a.name, log: a.log, api: a.c, events: a.events,
		images: rt.Images(), sandboxes: rt, containers: rt, probes: rt,
		net: nw, lb: a.lb,
		drainTimeout: a.cfg.LBDrainTimeout, now: time.Now,
		workers: map[string]*podWorker{}, done: make(chan *podWorker, 64),
	}

	// Program the load balancer from a fresh list (or the cache) before
	// anything else, and before SetupNode (which rewrites every chain from
	// the last sync), so that after a crash the rules in force are
	// rewritten unchanged and no service loses its rules for a moment.
	var svcRev, epRev int64
	if offline {
		a.lb.set(cached.Services, cached.Endpoints)
	} else if svcRev, epRev, err = a.lb.relist(ctx); err != nil {
		return err
	}
	if err := a.lb.sync(); err != nil {
		a.log.Debug("load balancer sync before node setup failed (a new node)", "err", err)
	}
	a.log.Info("setting up the node network (sysctls ip_forward, route_localnet, bridge-nf-call-iptables; bridge; SKIFF-* chains)",
		"bridge", ncfg.Bridge, "pod_cidr", podCIDR.String())
	if err := nw.SetupNode(); err != nil {
		return fmt.Errorf("set up node network: %w", err)
	}
	if err := a.lb.sync(); err != nil {
		a.log.Warn("first load balancer sync failed; retrying", "err", err)
	}
	stopPeers := a.startPeers(ctx, podCIDR, nw)
	defer stopPeers()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer a.pods.wait()
	wctx, cancelWorkers := context.WithCancel(ctx)
	defer cancelWorkers()
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	run(func() { a.events.run(wctx, a.c) })
	run(func() { a.heartbeat(wctx) })
	run(func() { a.lb.syncLoop(wctx) })
	run(func() { a.pods.exitLoop(wctx, rt.Events()) })
	run(func() { a.cacheLoop(wctx, podCIDR.String(), time.Second) })

	var podRev int64
	if offline {
		go a.waitFirstSync(wctx, a.pods.startCached(wctx, cached.Pods))
		if _, err := a.register(ctx); err != nil {
			return nil // ctx ended
		}
		a.log.Info("a server answers again; catching up")
		if svcRev, epRev, err = a.lb.relist(ctx); err != nil {
			return nil
		}
		a.lb.kick()
		if podRev, _, err = a.pods.adopt(wctx); err != nil {
			return nil
		}
	} else {
		var firsts []chan struct{}
		if podRev, firsts, err = a.pods.adopt(wctx); err != nil {
			return err
		}
		go a.waitFirstSync(wctx, firsts)
	}

	run(func() { a.lb.run(wctx, svcRev, epRev, a.cfg.Resync) })
	run(func() { a.pods.run(wctx, a.c, podRev, a.cfg.Resync) })
	a.log.Info("agent running", "pod_cidr", podCIDR.String())
	<-ctx.Done()
	cancelWorkers()
	a.log.Info("agent stopping; containers keep running")
	return nil
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
