package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// errRetry asks the worker to sync again after a backoff.
var errRetry = errors.New("retry")

// containerRuntime starts a pod's containers and tells their state.
// Satisfied by *containers.Runtime.
type containerRuntime interface {
	StartContainer(ctx context.Context, pod string, c containers.ContainerConfig) (containers.ContainerStatus, error)
	ContainerStatus(pod, name string) (containers.ContainerStatus, error)
}

var _ containerRuntime = (*containers.Runtime)(nil)

// podWorker converges one pod. Its run goroutine owns every field but
// those under mu.
type podWorker struct {
	p    *pods
	name string
	log  *slog.Logger

	// mu protects pod.
	mu sync.Mutex
	// pod is the latest object; nil once the object is gone (or for a
	// local pod found without one).
	pod *api.Pod

	kickc     chan struct{}
	firstSync chan struct{}
	firstOnce sync.Once

	ip string
	// netChecked is when the pod's network and sandbox were last ensured
	// (AddPod, StartPod); zero until they are up.
	netChecked time.Time
	probers    map[string]*prober
	reported   *api.PodStatus
	// The pull back-off per image (pull.go): no try before pullWait, the
	// last delay, the last error.
	pullWait  map[string]time.Time
	pullDelay map[string]time.Duration
	pullErr   map[string]string
	// retryIn is the delay before the next sync after a failed one.
	retryIn time.Duration
}

func newPodWorker(ps *pods, name string, p *api.Pod) *podWorker {
	w := &podWorker{
		p: ps, name: name, pod: p,
		log:       ps.log.With("pod", name),
		kickc:     make(chan struct{}, 1),
		firstSync: make(chan struct{}),
		probers:   map[string]*prober{},
		pullWait:  map[string]time.Time{},
		pullDelay: map[string]time.Duration{},
		pullErr:   map[string]string{},
	}
	if p != nil {
		st := p.Status
		w.reported = &st
	}
	return w
}

// event queues an event about the pod.
func (w *podWorker) event(typ, reason, msg string) { w.p.events.add(w.name, typ, reason, msg) }

// kick asks for a sync; it never blocks.
func (w *podWorker) kick() {
	select {
	case w.kickc <- struct{}{}:
	default:
	}
}

// update hands the worker the pod's latest object (nil: deleted).
func (w *podWorker) update(p *api.Pod) {
	w.mu.Lock()
	w.pod = p
	w.mu.Unlock()
	w.kick()
}

func (w *podWorker) latest() *api.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

// containerExited is called for every exit of one of the pod's
// containers.
func (w *podWorker) containerExited(ev containers.Event) {
	st := ev.Status
	if p := w.latest(); p != nil && p.Spec.Deleting == nil {
		typ, msg := api.EventNormal, fmt.Sprintf("container %s exited with code %d (%s)", st.Name, st.ExitCode, st.Reason)
		if st.ExitCode != 0 {
			typ = api.EventWarning
		}
		if ev.WillRestart {
			msg += fmt.Sprintf("; restarting in %s", ev.Backoff)
		}
		w.event(typ, "Exited", msg)
	}
	w.kick()
}

// run syncs the pod until it is torn down or ctx ends.
func (w *podWorker) run(ctx context.Context) {
	defer w.stopProbers()
	for {
		done, err := w.sync(ctx)
		w.firstOnce.Do(func() { close(w.firstSync) })
		if done || ctx.Err() != nil {
			return
		}
		var retry <-chan time.Time
		if err != nil {
			if !errors.Is(err, errRetry) {
				w.log.Warn("pod sync failed", "err", err)
			}
			w.retryIn = min(max(w.retryIn*2, 500*time.Millisecond), 30*time.Second)
			retry = time.After(w.retryIn)
		} else {
			w.retryIn = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-w.kickc:
		case <-retry:
		}
	}
}

// sync converges the pod once; done says the pod is gone for good.
func (w *podWorker) sync(ctx context.Context) (done bool, err error) {
	p := w.latest()
	if p == nil || p.Spec.Deleting != nil || p.Spec.Node != w.p.node {
		return w.teardown(ctx, p)
	}
	return false, w.ensure(ctx, p)
}

// netRecheck is how often a running pod's network and sandbox are
// ensured again (repaired if someone broke them). In between, a sync of a
// pod whose containers all exist only reports its status: with 30 pods
// probed every second, looking up the pod's IP, veth and netns on every
// resync and probe verdict was a fifth of an idle node's CPU.
const netRecheck = time.Minute

// ensure starts what the pod lacks and reports its status.
func (w *podWorker) ensure(ctx context.Context, p *api.Pod) error {
	names := sortedNames(p.Spec.Containers)
	if w.ip != "" && !w.netChecked.IsZero() && w.p.now().Sub(w.netChecked) < netRecheck && w.allExist(names) {
		w.ensureProbers(ctx, p)
		w.report(ctx, p, nil)
		return nil
	}
	waiting := map[string]ctrView{}
	for _, name := range names {
		ref := p.Spec.Containers[name].Image
		if _, err := w.p.images.Get(ref); err == nil {
			continue
		}
		if err := w.pull(ctx, ref); err != nil {
			waiting[name] = ctrView{waitReason: ReasonImagePullBackOff, waitMsg: w.pullErr[ref]}
		}
	}
	if len(waiting) > 0 {
		w.report(ctx, p, waiting)
		return errRetry
	}

	// Configs and secrets are fetched at every start: they stay in memory
	// (the pod's tmpfs volumes, the containers' environment), never in
	// the agent's cache. Only a pod with a container to start needs them:
	// a running pod keeps running while the server is away.
	files := &podFiles{}
	var err error
	if !w.allExist(names) {
		files, err = w.p.fetchFiles(ctx, p)
	}
	if err != nil {
		w.event(api.EventWarning, "FilesUnavailable", err.Error())
		for _, name := range names {
			waiting[name] = ctrView{waitReason: ReasonFilesUnavailable, waitMsg: err.Error()}
		}
		w.report(ctx, p, waiting)
		return errRetry
	}
	path, ip, err := w.p.net.AddPod(ctx, w.name)
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	w.ip = ip.String()
	if err := w.p.sandboxes.StartPod(ctx, podConfig(p, w.name, path, w.p.resolvConf, files)); err != nil {
		// A host volume the node refuses (or lacks) fails the pod's start:
		// said on the pod as a failed container start is.
		w.event(api.EventWarning, "Failed", "start pod sandbox: "+err.Error())
		for _, name := range names {
			waiting[name] = ctrView{waitReason: containers.ReasonStartFail, waitMsg: err.Error()}
		}
		w.report(ctx, p, waiting)
		return fmt.Errorf("pod sandbox: %w", err)
	}
	w.netChecked = w.p.now()
	var errs []error
	for _, name := range names {
		if _, err := w.p.containers.ContainerStatus(w.name, name); err == nil {
			continue
		}
		spec := p.Spec.Containers[name]
		cc := containerConfig(name, spec, p.Spec.Restart)
		if cc.Env, err = files.env(spec); err != nil {
			waiting[name] = ctrView{waitReason: ReasonFilesUnavailable, waitMsg: err.Error()}
			errs = append(errs, fmt.Errorf("container %s: %w", name, err))
			continue
		}
		if _, err := w.p.containers.StartContainer(ctx, w.name, cc); err != nil {
			w.event(api.EventWarning, "Failed", fmt.Sprintf("start container %s: %v", name, err))
			waiting[name] = ctrView{waitReason: containers.ReasonStartFail, waitMsg: err.Error()}
			errs = append(errs, fmt.Errorf("start container %s: %w", name, err))
			continue
		}
		w.event(api.EventNormal, "Started", "started container "+name)
	}
	w.ensureProbers(ctx, p)
	w.report(ctx, p, waiting)
	return errors.Join(errs...)
}

// allExist says whether every container of names exists in the runtime.
func (w *podWorker) allExist(names []string) bool {
	for _, name := range names {
		if _, err := w.p.containers.ContainerStatus(w.name, name); err != nil {
			return false
		}
	}
	return true
}

// report writes the pod's status if it changed since the last report.
func (w *podWorker) report(ctx context.Context, p *api.Pod, waiting map[string]ctrView) {
	views := map[string]ctrView{}
	for name, spec := range p.Spec.Containers {
		if v, ok := waiting[name]; ok {
			views[name] = v
			continue
		}
		st, err := w.p.containers.ContainerStatus(w.name, name)
		if err != nil {
			views[name] = ctrView{}
			continue
		}
		pr := w.probers[name]
		ready := st.State == containers.StateRunning
		if pr != nil {
			ready = ready && pr.isReady(st.Pid, spec)
		}
		views[name] = ctrView{st: &st, ready: ready}
	}
	prev := api.PodStatus{}
	if w.reported != nil {
		prev = *w.reported
	}
	s := buildStatus(p, w.ip, time.Now(), views, prev)
	w.write(ctx, p, s)
}

// write sends s unless it equals what was last reported.
func (w *podWorker) write(ctx context.Context, p *api.Pod, s api.PodStatus) {
	if w.reported != nil && reflect.DeepEqual(*w.reported, s) {
		return
	}
	body := &api.Pod{Meta: api.Meta{Name: p.Name}, Status: s}
	if _, err := w.p.api.PutPodStatus(ctx, body); err != nil {
		if !client.IsNotFound(err) && ctx.Err() == nil {
			w.log.Warn("report status", "err", err)
		}
		return
	}
	if w.reported == nil || w.reported.Ready != s.Ready || w.reported.Phase != s.Phase {
		w.log.Info("pod status", "phase", s.Phase, "ready", s.Ready, "ip", s.IP)
	}
	w.reported = &s
}

// podConfig maps a pod onto the runtime's sandbox config; config and
// secret volumes become read-only tmpfs volumes holding files' files, and
// resolvConf (if set) the containers' /etc/resolv.conf.
func podConfig(p *api.Pod, name, netns, resolvConf string, files *podFiles) containers.PodConfig {
	pc := containers.PodConfig{Name: name, NetNSPath: netns, ResolvConf: resolvConf}
	if len(p.Spec.Volumes) > 0 {
		pc.Volumes = map[string]containers.Volume{}
		for vn, v := range p.Spec.Volumes {
			if v.Type == configs.VolumeConfig || v.Type == configs.VolumeSecret {
				pc.Volumes[vn] = files.volume(v)
				continue
			}
			pc.Volumes[vn] = containers.Volume{Type: containers.VolumeType(v.Type), Path: v.Path, Size: int64(v.Size), ReadOnly: v.ReadOnly}
		}
	}
	return pc
}

// containerConfig maps a container spec onto the runtime's config.
func containerConfig(name string, c *configs.ContainerSpec, restart string) containers.ContainerConfig {
	cc := containers.ContainerConfig{
		Name: name, Image: c.Image, Command: c.Command, Args: c.Args, Env: c.Env,
		Workdir: c.Workdir, User: c.User, CPU: c.CPU, Memory: int64(c.Memory), Pids: int64(c.Pids),
		Mounts: c.Mounts, ReadOnlyRoot: c.ReadOnlyRoot, Restart: containers.RestartPolicy(restart),
		Seccomp: containers.SeccompProfile(c.Seccomp),
	}
	return cc
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
