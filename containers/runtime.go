package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-edge/skiff/containers/images"
	"github.com/skiff-edge/skiff/containers/internal/atomicfile"
)

// Runtime runs the pods of one node. Open one per state directory; it
// adopts what an earlier Runtime (or process) left running there.
type Runtime struct {
	cfg    Config
	log    *slog.Logger
	images *images.Store
	events chan Event
	closed chan struct{}
	once   sync.Once

	// hostPaths is cfg.HostPaths with Root and StateDir reserved.
	hostPaths HostPathPolicy

	mu   sync.Mutex // guards pods and ctrs and every ctr's fields
	pods map[string]*podRecord
	ctrs map[string]*ctr // by containerID
}

// podRecord is a pod sandbox, persisted as StateDir/pods/NAME/pod.json.
type podRecord struct {
	Config PodConfig `json:"config"`
	NetNS  string    `json:"netns"` // the path containers join
}

// record is a container, persisted as StateDir/containers/ID/record.json.
type record struct {
	Pod          string          `json:"pod"`
	Config       ContainerConfig `json:"config"`
	ImageID      string          `json:"image_id"`
	ImageConfig  v1.Config       `json:"image_config"`
	Layers       []string        `json:"layers"`
	ShimPID      int             `json:"shim_pid,omitempty"`
	ShimStart    uint64          `json:"shim_start,omitempty"` // start time in clock ticks, against pid reuse
	Pid          int             `json:"pid,omitempty"`
	StartedAt    time.Time       `json:"started_at"`
	RestartCount int             `json:"restart_count"`
	InRow        int             `json:"in_row"` // restarts in a row, for backoff
	Stopped      bool            `json:"stopped,omitempty"`
	Last         *exitRecord     `json:"last,omitempty"`
	LastReason   string          `json:"last_reason,omitempty"`
	LastMessage  string          `json:"last_message,omitempty"`
}

// ctr is the in-memory side of a container.
type ctr struct {
	id      string
	rec     record
	state   State
	gen     int           // bumped at every start; stale exit watchers compare it
	exited  chan struct{} // closed when the current run ends
	cancel  chan struct{} // closed to cancel a pending restart
	removed bool
	// starting is set while a start runs outside r.mu; it is closed when
	// the start has ended, either way.
	starting chan struct{}
}

// Open opens (or creates) the runtime's directories, imports the archives
// dropped into Root/images, and re-adopts the containers recorded in
// StateDir: running ones are watched again without a restart, ones that
// exited meanwhile are reported exited (and restarted as their policy says).
func Open(ctx context.Context, cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("containers config: %w", err)
	}
	r := &Runtime{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "containers"),
		events: make(chan Event, 1024),
		closed: make(chan struct{}),
		pods:   map[string]*podRecord{},
		ctrs:   map[string]*ctr{},
	}
	logSecurity(r.log)
	r.hostPaths = cfg.HostPaths
	r.hostPaths.Reserved = append(slices.Clone(cfg.HostPaths.Reserved),
		ReservedPath{Name: "the container runtime's root", Path: cfg.Root},
		ReservedPath{Name: "the container runtime's state dir", Path: cfg.StateDir})
	for _, d := range []string{r.libcontainerRoot(), filepath.Join(cfg.StateDir, "pods"), filepath.Join(cfg.StateDir, "containers"), filepath.Join(cfg.StateDir, "locks"), filepath.Join(cfg.Root, "pods")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open runtime: %w", err)
		}
	}
	imgs, err := newImageStore(cfg, r.log, r.layersInUse)
	if err != nil {
		return nil, err
	}
	r.images = imgs
	if _, err := imgs.ImportDir(ctx); err != nil {
		r.log.Warn("import dropped archives", "err", err)
	}
	if err := r.adopt(); err != nil {
		return nil, err
	}
	return r, nil
}

// Images returns the runtime's image store.
func (r *Runtime) Images() *images.Store { return r.images }

// Events returns the channel of container exits. It is buffered; when the
// reader falls more than 1024 events behind, events are dropped (Status
// always has the truth), so the runtime never blocks on it.
func (r *Runtime) Events() <-chan Event { return r.events }

// Close stops watching containers; they keep running, and a later Open
// adopts them. Close does not close the Events channel.
func (r *Runtime) Close() error {
	r.once.Do(func() { close(r.closed) })
	return nil
}

func (r *Runtime) libcontainerRoot() string { return filepath.Join(r.cfg.StateDir, "libcontainer") }
func (r *Runtime) podStateDir(pod string) string {
	return filepath.Join(r.cfg.StateDir, "pods", pod)
}
func (r *Runtime) podDataDir(pod string) string { return filepath.Join(r.cfg.Root, "pods", pod) }

// lockPath is the container's lock, which its shim holds from before it
// creates the container until the container is destroyed (lockContainer).
// It lives outside the container's state directory, which a failed start
// removes: a shim that a killed skiff left behind may hold it then.
func (r *Runtime) lockPath(id string) string { return filepath.Join(r.cfg.StateDir, "locks", id) }

func (r *Runtime) ctrStateDir(id string) string {
	return filepath.Join(r.cfg.StateDir, "containers", id)
}
func (r *Runtime) logPath(pod, name string) string {
	return filepath.Join(r.podDataDir(pod), "logs", name+".log")
}

// StartPod makes a pod's sandbox: its IPC and UTS namespaces (hostname the
// pod's), its network namespace unless NetNSPath names one, and its
// volumes. It is idempotent.
func (r *Runtime) StartPod(ctx context.Context, pod PodConfig) error {
	if err := pod.Validate(); err != nil {
		return err
	}
	if pod.Hostname == "" {
		pod.Hostname = pod.Name
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pods[pod.Name]; ok {
		return nil
	}
	sdir := r.podStateDir(pod.Name)
	if err := makePodNamespaces(filepath.Join(sdir, "ns"), pod.Hostname, pod.NetNSPath == ""); err != nil {
		return fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	rec := &podRecord{Config: pod, NetNS: pod.NetNSPath}
	if rec.NetNS == "" {
		rec.NetNS = filepath.Join(sdir, "ns", "net")
	}
	for name, v := range pod.Volumes {
		dir := filepath.Join(r.podDataDir(pod.Name), "volumes", name)
		switch v.Type {
		case VolumeEmpty:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return fmt.Errorf("pod %s: volume %s: %w", pod.Name, name, err)
			}
			_ = os.Chmod(dir, 0o777)
		case VolumeMemory:
			if err := mountTmpfs(dir, v.Size); err != nil {
				return fmt.Errorf("pod %s: volume %s: %w", pod.Name, name, err)
			}
			for fn, b := range v.Files {
				if err := os.WriteFile(filepath.Join(dir, fn), b, 0o444); err != nil {
					return fmt.Errorf("pod %s: volume %s: %w", pod.Name, name, err)
				}
			}
		case VolumeHost:
			// Checked here so that a refused pod gets no sandbox, and
			// again at every container start (sandboxOf), where it
			// counts: the path may have changed since.
			if _, err := r.hostPaths.resolve(name, v.Path); err != nil {
				return fmt.Errorf("pod %s: %w", pod.Name, err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(r.podDataDir(pod.Name), "logs"), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(rec)
	if err := atomicfile.Write(filepath.Join(sdir, "pod.json"), b); err != nil {
		return fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	r.pods[pod.Name] = rec
	return nil
}

// sandboxOf returns what a container of the pod joins and mounts. Host
// volumes are checked against the policy now, at mount time, and the path
// they resolve to is the one mounted.
func (r *Runtime) sandboxOf(p *podRecord) (sandbox, error) {
	ns := filepath.Join(r.podStateDir(p.Config.Name), "ns")
	sb := sandbox{netns: p.NetNS, ipcns: filepath.Join(ns, "ipc"), utsns: filepath.Join(ns, "uts"),
		volumes: map[string]string{}, readOnly: map[string]bool{}, resolvConf: p.Config.ResolvConf}
	for name, v := range p.Config.Volumes {
		sb.readOnly[name] = v.ReadOnly
		if v.Type != VolumeHost {
			sb.volumes[name] = filepath.Join(r.podDataDir(p.Config.Name), "volumes", name)
			continue
		}
		src, err := r.hostPaths.resolve(name, v.Path)
		if err != nil {
			return sb, fmt.Errorf("pod %s: %w", p.Config.Name, err)
		}
		sb.volumes[name] = src
	}
	return sb, nil
}

// Pods returns the configs of the pods the runtime has.
func (r *Runtime) Pods() []PodConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []PodConfig
	for _, p := range r.pods {
		out = append(out, p.Config)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// StartContainer starts a container in a started pod, from an image in the
// store. It is idempotent by pod and container name: a container that
// exists already (running, waiting for a restart, or exited for good) is
// left as it is and its status returned.
func (r *Runtime) StartContainer(ctx context.Context, pod string, c ContainerConfig) (ContainerStatus, error) {
	if err := checkNames("start container", pod, c.Name); err != nil {
		return ContainerStatus{}, err
	}
	r.mu.Lock()
	p, ok := r.pods[pod]
	if !ok {
		r.mu.Unlock()
		return ContainerStatus{}, fmt.Errorf("pod %s: %w", pod, ErrNotFound)
	}
	if err := c.Validate(&p.Config); err != nil {
		r.mu.Unlock()
		return ContainerStatus{}, err
	}
	id := containerID(pod, c.Name)
	if existing, ok := r.ctrs[id]; ok {
		st := r.statusLocked(existing)
		r.mu.Unlock()
		return st, nil
	}
	r.mu.Unlock()

	img, err := r.images.Get(c.Image)
	if err != nil {
		return ContainerStatus{}, fmt.Errorf("container %s/%s: %w", pod, c.Name, err)
	}
	if c.Restart == "" {
		c.Restart = RestartAlways
	}
	r.mu.Lock()
	if existing, ok := r.ctrs[id]; ok { // started meanwhile
		st := r.statusLocked(existing)
		r.mu.Unlock()
		return st, nil
	}
	if _, ok := r.pods[pod]; !ok {
		r.mu.Unlock()
		return ContainerStatus{}, fmt.Errorf("pod %s: %w", pod, ErrNotFound)
	}
	starting := make(chan struct{})
	k := &ctr{id: id, state: StateCreated, starting: starting, rec: record{
		Pod: pod, Config: c, ImageID: img.ID, ImageConfig: img.Config, Layers: img.Layers,
	}}
	// Registered before it starts, so that a second start of the same
	// container returns at once and a stop or pod removal waits for it.
	r.ctrs[id] = k
	r.mu.Unlock()
	err = os.MkdirAll(r.ctrStateDir(id), 0o700)
	if err == nil {
		err = r.launch(k)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k.starting = nil
	close(starting)
	if err != nil {
		// A container that fails to start is not kept: the caller retries.
		// Its root filesystem goes too, so that a retry (perhaps with
		// another image) mounts it afresh instead of reusing this one.
		delete(r.ctrs, id)
		_ = os.RemoveAll(r.ctrStateDir(id))
		if lerr := r.removeLock(id); lerr != nil {
			r.log.Warn("remove the lock of a failed start", "container", id, "err", lerr)
		}
		if uerr := unmountAll(filepath.Join(r.podDataDir(pod), "containers", c.Name)); uerr != nil {
			r.log.Warn("unmount rootfs of failed start", "container", id, "err", uerr)
		}
		return ContainerStatus{}, err
	}
	return r.statusLocked(k), nil
}

// statusLocked builds the status of a container; r.mu is held.
func (r *Runtime) statusLocked(k *ctr) ContainerStatus {
	st := ContainerStatus{
		Pod: k.rec.Pod, Name: k.rec.Config.Name, Image: k.rec.Config.Image, ImageID: k.rec.ImageID,
		State: k.state, StartedAt: k.rec.StartedAt, RestartCount: k.rec.RestartCount,
		Reason: k.rec.LastReason, Message: k.rec.LastMessage,
	}
	if k.state == StateRunning {
		st.Pid = k.rec.Pid
	}
	if k.rec.Last != nil {
		st.ExitCode, st.Signal, st.FinishedAt = k.rec.Last.ExitCode, k.rec.Last.Signal, k.rec.Last.FinishedAt
	}
	return st
}

// Status returns every container, sorted by pod and name.
func (r *Runtime) Status() []ContainerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ContainerStatus, 0, len(r.ctrs))
	for _, id := range slices.Sorted(maps.Keys(r.ctrs)) {
		out = append(out, r.statusLocked(r.ctrs[id]))
	}
	return out
}

// ContainerStatus returns one container's status.
func (r *Runtime) ContainerStatus(pod, name string) (ContainerStatus, error) {
	if err := checkNames("container status", pod, name); err != nil {
		return ContainerStatus{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.ctrs[containerID(pod, name)]
	if !ok {
		return ContainerStatus{}, fmt.Errorf("container %s/%s: %w", pod, name, ErrNotFound)
	}
	return r.statusLocked(k), nil
}

func (r *Runtime) saveLocked(k *ctr) {
	b, _ := json.Marshal(k.rec)
	if err := atomicfile.Write(filepath.Join(r.ctrStateDir(k.id), "record.json"), b); err != nil {
		r.log.Error("save container record", "container", k.id, "err", err)
	}
}

// layersInUse lists the layers under the containers of this runtime, so
// that GC spares them even when their image was removed: those it knows
// (a container being started has no record yet) and those recorded in
// StateDir (a record it could not adopt still names a root filesystem).
func (r *Runtime) layersInUse() (map[string]bool, error) {
	_, out, err := containersInUse(r.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.ctrs {
		for _, l := range k.rec.Layers {
			out[strings.TrimPrefix(l, "sha256:")] = true
		}
	}
	return out, nil
}

// RemovePod stops every container of the pod (SIGTERM, grace, SIGKILL)
// and removes everything of it: containers, root filesystems, volumes
// (host volumes are only unmounted from the containers), namespaces, logs
// and state. Removing a pod that does not exist is not an error.
func (r *Runtime) RemovePod(ctx context.Context, pod string, grace time.Duration) error {
	if err := checkNames("remove pod", pod); err != nil {
		return err
	}
	var errs []error
	r.mu.Lock()
	delete(r.pods, pod) // no new container starts in it from now on
	var names []string
	for _, k := range r.ctrs {
		if k.rec.Pod == pod {
			names = append(names, k.rec.Config.Name)
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.StopContainer(ctx, pod, n, grace); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.mu.Lock()
	for _, n := range names {
		id := containerID(pod, n)
		if k, ok := r.ctrs[id]; ok {
			k.removed = true
			delete(r.ctrs, id)
		}
		if err := os.RemoveAll(r.ctrStateDir(id)); err != nil {
			errs = append(errs, err)
		}
		if err := r.removeLock(id); err != nil {
			errs = append(errs, err)
		}
	}
	r.mu.Unlock()
	for _, dir := range []string{r.podDataDir(pod), r.podStateDir(pod)} {
		if err := unmountAll(dir); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s: %w", pod, err))
		}
	}
	return errors.Join(errs...)
}
