package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/metrics"
)

// podAPI is what the pod side asks of the server: the pods bound to the
// node, their status reports and the final delete. Satisfied by
// *client.Client.
type podAPI interface {
	ListPods(ctx context.Context, app, node string) (api.List[api.Pod], error)
	PutPodStatus(ctx context.Context, p *api.Pod) (*api.Pod, error)
	DeletePod(ctx context.Context, name string) error
}

// sandboxRuntime starts, removes and lists pod sandboxes (and, on remove,
// stops their containers: SIGTERM, grace, SIGKILL). Satisfied by
// *containers.Runtime.
type sandboxRuntime interface {
	StartPod(ctx context.Context, pod containers.PodConfig) error
	RemovePod(ctx context.Context, pod string, grace time.Duration) error
	Pods() []containers.PodConfig
}

// podNetwork gives pods their network namespace and IP and frees them.
// Satisfied by *netlb.Network.
type podNetwork interface {
	AddPod(ctx context.Context, pod string) (netnsPath string, ip net.IP, err error)
	RemovePod(pod string) error
	Pods() (map[string]net.IP, error)
}

var (
	_ podAPI         = (*client.Client)(nil)
	_ sandboxRuntime = (*containers.Runtime)(nil)
	_ podNetwork     = (*netlb.Network)(nil)
)

// pods is the pod side of the agent: one worker per pod bound to the node
// (pod.go), fed by the pod watch, woken by container exits and a resync
// tick. It reaches the runtime, the network, the load balancer and the
// server only through the small interfaces above and beside its users.
type pods struct {
	node   string
	log    *slog.Logger
	api    podAPI
	events *eventQueue
	// files fetches the configs and secrets pods use; nil: none can be.
	files fileAPI
	// resolvConf is the node resolver's resolv.conf that new pods get
	// (dns.go); empty: pods keep their image's. Set before the workers
	// start.
	resolvConf string

	images     imageStore
	sandboxes  sandboxRuntime
	containers containerRuntime
	probes     probeRuntime
	net        podNetwork
	lb         balancer
	// metrics records probe results (nil: none).
	metrics *metrics.Agent

	// drainTimeout bounds how long a deleted pod waits for the load
	// balancers to drop it (Config.LBDrainTimeout).
	drainTimeout time.Duration
	// now is the clock of the image pull back-off.
	now func() time.Time

	// mu protects workers.
	mu      sync.Mutex
	workers map[string]*podWorker
	// done receives a worker that finished tearing its pod down.
	done chan *podWorker
	// wg counts the running workers.
	wg sync.WaitGroup
}

// wait waits for every worker to return (their ctx ended or their pod is
// gone).
func (ps *pods) wait() { ps.wg.Wait() }

// run watches the node's pods from rev on and hands every change to its
// worker until ctx ends; every resync tick kicks every worker.
func (ps *pods) run(ctx context.Context, w watcher, rev int64, resync time.Duration, tick func()) {
	items := make(chan watchItem, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		watch(ctx, ps.log, w, api.KindPod, rev, url.Values{"node": {ps.node}}, ps.listRaw, items)
	}()
	t := time.NewTicker(resync)
	defer t.Stop()
	for {
		tick() // for the watchdog: at least every resync
		select {
		case <-ctx.Done():
			return
		case it := <-items:
			ps.apply(ctx, it)
		case w := <-ps.done:
			ps.mu.Lock()
			if ps.workers[w.name] == w {
				delete(ps.workers, w.name)
			}
			ps.mu.Unlock()
		case <-t.C:
			ps.mu.Lock()
			for _, w := range ps.workers {
				w.kick()
			}
			ps.mu.Unlock()
		}
	}
}

func (ps *pods) listRaw(ctx context.Context) ([]json.RawMessage, int64, error) {
	l, err := ps.api.ListPods(ctx, "", ps.node)
	return rawItems(l.Items), l.Revision, err
}

// apply hands one pod watch item to the workers.
func (ps *pods) apply(ctx context.Context, it watchItem) {
	if it.relist == nil {
		var p api.Pod
		if err := json.Unmarshal(it.ev.Object, &p); err != nil {
			ps.log.Warn("bad pod in watch", "err", err)
			return
		}
		ps.changed(ctx, &p, it.ev.Type == api.EventDelete || p.Spec.Node != ps.node)
		return
	}
	seen := map[string]bool{}
	for _, raw := range it.relist {
		var p api.Pod
		if json.Unmarshal(raw, &p) == nil {
			seen[p.Name] = true
			ps.changed(ctx, &p, false)
		}
	}
	ps.forgetOthers(seen)
}

// forgetOthers tells the workers of pods not in keep that their object is
// gone.
func (ps *pods) forgetOthers(keep map[string]bool) {
	ps.mu.Lock()
	var gone []*podWorker
	for name, w := range ps.workers {
		if !keep[name] {
			gone = append(gone, w)
		}
	}
	ps.mu.Unlock()
	for _, w := range gone {
		w.update(nil)
	}
}

// adopt lists the pods bound to this node and hands each to its worker
// (starting workers as needed); workers of pods not listed, and local pods
// (containers or IPs) without an object, are stopped. It returns the
// list's revision and the first-sync channels of the workers it started.
func (ps *pods) adopt(ctx context.Context) (int64, []chan struct{}, error) {
	pods, err := retry(ctx, func() (api.List[api.Pod], error) { return ps.api.ListPods(ctx, "", ps.node) })
	if err != nil {
		return 0, nil, err
	}
	want := map[string]bool{}
	var firsts []chan struct{}
	for i := range pods.Items {
		p := &pods.Items[i]
		want[p.Name] = true
		if w := ps.changed(ctx, p, false); w != nil {
			firsts = append(firsts, w.firstSync)
		}
	}
	ps.forgetOthers(want)
	for _, name := range ps.local() {
		if !want[name] && ps.worker(name) == nil {
			ps.log.Info("stopping a local pod that has no object", "pod", name)
			firsts = append(firsts, ps.start(ctx, name, nil).firstSync)
		}
	}
	return pods.Revision, firsts, nil
}

// startCached runs the pods of the local cache (the server does not
// answer) and returns their workers' first-sync channels. Local pods the
// cache does not know are left alone until a server says what to do with
// them.
func (ps *pods) startCached(ctx context.Context, cached []*api.Pod) []chan struct{} {
	var firsts []chan struct{}
	for _, p := range cached {
		if w := ps.changed(ctx, p, p.Spec.Node != ps.node); w != nil {
			firsts = append(firsts, w.firstSync)
		}
	}
	return firsts
}

// local returns the pods this node has containers or an IP for.
func (ps *pods) local() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range ps.sandboxes.Pods() {
		if !seen[p.Name] {
			seen[p.Name] = true
			out = append(out, p.Name)
		}
	}
	if ips, err := ps.net.Pods(); err == nil {
		for name := range ips {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	} else {
		ps.log.Warn("list pod IPs", "err", err)
	}
	return out
}

func (ps *pods) worker(name string) *podWorker {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.workers[name]
}

// changed hands a pod's new object (gone: its object was deleted) to its
// worker, starting one for a new pod; it returns the worker it started,
// if any.
func (ps *pods) changed(ctx context.Context, p *api.Pod, gone bool) *podWorker {
	w := ps.worker(p.Name)
	switch {
	case w != nil && gone:
		w.update(nil)
	case w != nil:
		w.update(p)
	case !gone:
		return ps.start(ctx, p.Name, p)
	}
	return nil
}

// start starts the worker of a pod (p nil: a local pod without an object,
// to stop); ps.mu must not be held.
func (ps *pods) start(ctx context.Context, name string, p *api.Pod) *podWorker {
	w := newPodWorker(ps, name, p)
	ps.mu.Lock()
	ps.workers[name] = w
	ps.mu.Unlock()
	ps.wg.Add(1)
	go func() {
		defer ps.wg.Done()
		w.run(ctx)
		select {
		case ps.done <- w:
		case <-ctx.Done():
		}
	}()
	return w
}

// exitLoop wakes the worker of a pod whose container exited, for every
// event of evs (the runtime's) until ctx ends.
func (ps *pods) exitLoop(ctx context.Context, evs <-chan containers.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-evs:
			if w := ps.worker(ev.Status.Pod); w != nil {
				w.containerExited(ev)
			}
		}
	}
}

// snapshot returns the latest object of every pod with a worker, for the
// local cache.
func (ps *pods) snapshot() []*api.Pod {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []*api.Pod
	for _, w := range ps.workers {
		if p := w.latest(); p != nil {
			out = append(out, p)
		}
	}
	return out
}
