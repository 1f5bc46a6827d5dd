package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/containers/images"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// world is a fake of everything the pod side talks to, modelling how it
// behaves rather than recording calls: the server's pod objects with their
// reported status; the endpoints that follow them (a pod is an endpoint
// while it is ready and not deleting, as the endpoints controller has it);
// the node's load balancer, which follows the endpoints with a lag; a
// registry and the node's image store; the container runtime's sandboxes
// and containers; and the network's IPs. It refuses what the real parts
// would make unsafe: a container without its sandbox, a sandbox without
// its network, an IP freed while the pod's containers still run.
//
// The world is the server (podAPI), the image store (imageStore) and the
// load balancer (balancer); fakeRuntime and fakeNet are its runtime and
// network sides.
type world struct {
	node string

	// mu protects every field below.
	mu sync.Mutex

	// objects are the server's pods by name.
	objects map[string]*api.Pod

	// lb is the set of IPs the node's load balancer sends traffic to. It
	// catches up with the endpoints on every lbSyncEvery-th inLB call
	// (a watch and sync delay), never when lbStuck.
	lb          map[string]bool
	lbSyncEvery int
	lbStuck     bool
	lbPolls     int

	// registry is the set of images the registry serves now; images is
	// the node's image store.
	registry map[string]bool
	images   map[string]bool

	sandboxes map[string]bool
	ctrs      map[string]map[string]*fakeCtr // pod -> container
	// ignoreTerm lists containers (pod/name) whose process ignores SIGTERM.
	ignoreTerm map[string]bool
	nextPid    int

	ips    map[string]net.IP
	netns  map[string]string
	nextIP byte

	// stops are what the world looked like each time a pod was stopped.
	stops []stopSeen
}

// fakeCtr is one container of the fake runtime.
type fakeCtr struct {
	running bool
	pid     int
	// endedBy is the signal that ended the run ("SIGTERM" or "SIGKILL").
	endedBy string
}

// stopSeen is the state of the world when RemovePod stopped a pod.
type stopSeen struct {
	pod string
	// objectReady is the pod's readiness on the server (false if it has
	// no object any more).
	objectReady bool
	// inLB says the load balancer still sent traffic to the pod's IP.
	inLB bool
	// hadIP says the network still held the pod's IP.
	hadIP bool
	grace time.Duration
	// endedBy is how each container ended, by name.
	endedBy map[string]string
}

func newWorld(node string) *world {
	return &world{
		node: node, objects: map[string]*api.Pod{}, lb: map[string]bool{}, lbSyncEvery: 1,
		registry: map[string]bool{}, images: map[string]bool{},
		sandboxes: map[string]bool{}, ctrs: map[string]map[string]*fakeCtr{}, ignoreTerm: map[string]bool{},
		nextPid: 100, ips: map[string]net.IP{}, netns: map[string]string{}, nextIP: 2,
	}
}

// fakeRuntime is the container runtime of the world.
type fakeRuntime struct{ *world }

// fakeNet is the pod network of the world.
type fakeNet struct{ *world }

var (
	_ podAPI           = (*world)(nil)
	_ imageStore       = (*world)(nil)
	_ balancer         = (*world)(nil)
	_ sandboxRuntime   = fakeRuntime{}
	_ containerRuntime = fakeRuntime{}
	_ probeRuntime     = fakeRuntime{}
	_ podNetwork       = fakeNet{}
)

var errNotFound = &client.APIError{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: "not found"}

// newPods returns the pod side of a node wired to w, with clock as its
// clock.
func (w *world) newPods(clock func() time.Time, drain time.Duration) *pods {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return &pods{
		node: w.node, log: log, api: w, events: newEventQueue(w.node, log),
		images: w, sandboxes: fakeRuntime{w}, containers: fakeRuntime{w}, probes: fakeRuntime{w}, net: fakeNet{w}, lb: w,
		drainTimeout: drain, now: clock,
		workers: map[string]*podWorker{}, done: make(chan *podWorker, 64),
	}
}

// put stores a pod object as the server would (a copy).
func (w *world) put(p *api.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := *p
	w.objects[p.Name] = &c
}

// object returns a copy of a pod object, nil if there is none.
func (w *world) object(name string) *api.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.objects[name]; p != nil {
		c := *p
		return &c
	}
	return nil
}

// endpointsLocked is the set of endpoint IPs: pods that are ready and not
// deleting.
func (w *world) endpointsLocked() map[string]bool {
	out := map[string]bool{}
	for _, p := range w.objects {
		if p.Status.Ready && p.Spec.Deleting == nil && p.Status.IP != "" {
			out[p.Status.IP] = true
		}
	}
	return out
}

// syncLB makes the load balancer match the endpoints now.
func (w *world) syncLB() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lb = w.endpointsLocked()
}

// --- podAPI

func (w *world) ListPods(_ context.Context, app, node string) (api.List[api.Pod], error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var l api.List[api.Pod]
	for _, p := range w.objects {
		if (app == "" || p.Spec.App == app) && (node == "" || p.Spec.Node == node) {
			l.Items = append(l.Items, *p)
		}
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l, nil
}

func (w *world) PutPodStatus(_ context.Context, p *api.Pod) (*api.Pod, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.objects[p.Name]
	if o == nil {
		return nil, errNotFound
	}
	o.Status = p.Status
	c := *o
	return &c, nil
}

func (w *world) DeletePod(_ context.Context, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.objects[name] == nil {
		return errNotFound
	}
	delete(w.objects, name)
	return nil
}

// --- imageStore

func (w *world) Get(ref string) (images.Image, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.images[ref] {
		return images.Image{}, fmt.Errorf("image %s: %w", ref, containers.ErrNotFound)
	}
	return images.Image{ID: "sha256:" + ref, Refs: []string{ref}}, nil
}

func (w *world) Ensure(_ context.Context, ref string, _ func(images.Progress)) (images.Image, error) {
	w.mu.Lock()
	if !w.images[ref] {
		if !w.registry[ref] {
			w.mu.Unlock()
			return images.Image{}, fmt.Errorf("pull %s: registry: connection refused", ref)
		}
		w.images[ref] = true
	}
	w.mu.Unlock()
	return w.Get(ref)
}

// --- sandboxRuntime, containerRuntime, probeRuntime

func (w fakeRuntime) StartPod(_ context.Context, pc containers.PodConfig) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pc.NetNSPath == "" || w.netns[pc.Name] != pc.NetNSPath {
		return fmt.Errorf("pod %s: netns %q is not one the network made", pc.Name, pc.NetNSPath)
	}
	w.sandboxes[pc.Name] = true
	return nil
}

// RemovePod stops every container (SIGTERM; SIGKILL after grace for one
// that ignores SIGTERM), noting what the world looked like at that
// moment, and removes the sandbox.
func (w fakeRuntime) RemovePod(_ context.Context, pod string, grace time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := stopSeen{pod: pod, grace: grace, endedBy: map[string]string{}}
	if o := w.objects[pod]; o != nil {
		seen.objectReady = o.Status.Ready
	}
	if ip := w.ips[pod]; ip != nil {
		seen.hadIP, seen.inLB = true, w.lb[ip.String()]
	}
	for name, c := range w.ctrs[pod] {
		if c.running {
			c.running, c.endedBy = false, "SIGTERM"
			if w.ignoreTerm[pod+"/"+name] {
				c.endedBy = "SIGKILL"
			}
		}
		seen.endedBy[name] = c.endedBy
	}
	w.stops = append(w.stops, seen)
	delete(w.ctrs, pod)
	delete(w.sandboxes, pod)
	return nil
}

func (w fakeRuntime) Pods() []containers.PodConfig {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []containers.PodConfig
	for name := range w.sandboxes {
		out = append(out, containers.PodConfig{Name: name})
	}
	return out
}

func (w fakeRuntime) StartContainer(_ context.Context, pod string, cc containers.ContainerConfig) (containers.ContainerStatus, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.sandboxes[pod] {
		return containers.ContainerStatus{}, fmt.Errorf("pod %s: %w", pod, containers.ErrNotFound)
	}
	if !w.images[cc.Image] {
		return containers.ContainerStatus{}, fmt.Errorf("image %s: %w", cc.Image, images.ErrImageNotPresent)
	}
	if w.ctrs[pod] == nil {
		w.ctrs[pod] = map[string]*fakeCtr{}
	}
	w.nextPid++
	c := &fakeCtr{running: true, pid: w.nextPid}
	w.ctrs[pod][cc.Name] = c
	return w.statusLocked(pod, cc.Name, c), nil
}

func (w fakeRuntime) statusLocked(pod, name string, c *fakeCtr) containers.ContainerStatus {
	st := containers.ContainerStatus{Pod: pod, Name: name, State: containers.StateExited}
	if c.running {
		st.State, st.Pid = containers.StateRunning, c.pid
	}
	return st
}

func (w fakeRuntime) ContainerStatus(pod, name string) (containers.ContainerStatus, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.ctrs[pod][name]
	if c == nil {
		return containers.ContainerStatus{}, fmt.Errorf("container %s/%s: %w", pod, name, containers.ErrNotFound)
	}
	return w.statusLocked(pod, name, c), nil
}

func (w fakeRuntime) Exec(_ context.Context, pod, name string, _ containers.ExecOptions) (int, error) {
	if st, err := w.ContainerStatus(pod, name); err != nil || st.State != containers.StateRunning {
		return -1, containers.ErrNotRunning
	}
	return 0, nil
}

func (w fakeRuntime) Signal(pod, name string, sig os.Signal) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.ctrs[pod][name]
	switch {
	case c == nil:
		return containers.ErrNotFound
	case !c.running:
		return containers.ErrNotRunning
	case sig == os.Kill:
		c.running, c.endedBy = false, "SIGKILL"
	case sig == syscall.SIGTERM && !w.ignoreTerm[pod+"/"+name]:
		c.running, c.endedBy = false, "SIGTERM"
	}
	return nil
}

// --- podNetwork

func (w fakeNet) AddPod(_ context.Context, pod string) (string, net.IP, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ip := w.ips[pod]; ip != nil {
		return w.netns[pod], ip, nil
	}
	ip := net.IPv4(10, 88, 0, w.nextIP).To4()
	w.nextIP++
	w.ips[pod], w.netns[pod] = ip, "/run/netns/"+pod
	return w.netns[pod], ip, nil
}

// RemovePod frees the pod's IP; it refuses while a container of the pod
// runs (its connections may still be answered from that IP).
func (w fakeNet) RemovePod(pod string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, c := range w.ctrs[pod] {
		if c.running {
			return fmt.Errorf("free the IP of pod %s: container %s still runs", pod, name)
		}
	}
	delete(w.ips, pod)
	delete(w.netns, pod)
	return nil
}

func (w fakeNet) Pods() (map[string]net.IP, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]net.IP{}
	for p, ip := range w.ips {
		out[p] = ip
	}
	return out, nil
}

// --- balancer

func (w *world) inLB(ip string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lbPolls++
	if !w.lbStuck && w.lbPolls%w.lbSyncEvery == 0 {
		w.lb = w.endpointsLocked()
	}
	return w.lb[ip]
}
