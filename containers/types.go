package containers

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Errors that callers check with errors.Is. The image store's are in
// package images.
var (
	// ErrNotFound: no such pod or container. (A container whose image is
	// not in the store fails to start with images.ErrImageNotPresent.)
	ErrNotFound = errors.New("not found")
	// ErrNotRunning: the container is not running (exec, stats, signal).
	ErrNotRunning = errors.New("container not running")
	// ErrInvalid: a PodConfig or ContainerConfig is invalid.
	ErrInvalid = errors.New("invalid config")
)

// RestartPolicy says when an exited container is started again.
type RestartPolicy string

// Restart policies.
const (
	RestartAlways    RestartPolicy = "always"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartNever     RestartPolicy = "never"
)

// VolumeType is the kind of a pod volume.
type VolumeType string

// Volume types.
const (
	VolumeEmpty  VolumeType = "empty"  // a directory in the pod, removed with it
	VolumeMemory VolumeType = "memory" // a tmpfs with an optional size limit
	VolumeHost   VolumeType = "host"   // a bind mount of a node path
)

// Volume is one pod volume.
type Volume struct {
	// Type is empty, memory or host.
	Type VolumeType `json:"type"`
	// Path on the node, for host volumes.
	Path string `json:"path,omitempty"`
	// Size limit in bytes of memory volumes; 0 is the kernel default.
	Size int64 `json:"size,omitempty"`
	// ReadOnly mounts the volume read-only in every container of the pod
	// that mounts it (see bindOptions).
	ReadOnly bool `json:"read_only,omitempty"`
	// Files are written (mode 0444) into a memory volume when the pod
	// starts: file name (no '/') -> content. They stay in memory only:
	// never in the pod's record on disk.
	Files map[string][]byte `json:"-"`
}

// PodConfig is a pod sandbox: what its containers share.
type PodConfig struct {
	// Name identifies the pod on this node; it is also the hostname.
	Name string `json:"name"`
	// NetNSPath is the network namespace to join (e.g. /run/netns/x).
	// Empty makes a private one with only loopback.
	NetNSPath string `json:"netns_path,omitempty"`
	// Hostname defaults to Name.
	Hostname string `json:"hostname,omitempty"`
	// Volumes by name; containers mount them by name.
	Volumes map[string]Volume `json:"volumes,omitempty"`
	// ResolvConf, if set, is a file on the node that every container of
	// the pod sees read-only at /etc/resolv.conf.
	ResolvConf string `json:"resolv_conf,omitempty"`
}

// ContainerConfig is one container of a pod. Image config (entrypoint, cmd,
// env, workdir, user) is merged as Kubernetes does: Command replaces the
// entrypoint (and drops the image's cmd), Args replace the cmd, Env adds to
// and overrides the image's env, Workdir and User replace the image's.
type ContainerConfig struct {
	// Name is unique in the pod (a DNS label).
	Name string `json:"name"`
	// Image is a reference or ID of an image in the store.
	Image string `json:"image"`
	// Command replaces the image's entrypoint (and drops its cmd).
	Command []string `json:"command,omitempty"`
	// Args replace the image's cmd.
	Args []string `json:"args,omitempty"`
	// Env adds to and overrides the image's environment.
	Env map[string]string `json:"env,omitempty"`
	// Workdir replaces the image's working directory.
	Workdir string `json:"workdir,omitempty"`
	// User is "uid", "uid:gid", "name" or "name:group", resolved in the
	// container's /etc/passwd and /etc/group.
	User string `json:"user,omitempty"`
	// CPU limit in cores (0.5 = half a core); 0 is unlimited.
	CPU float64 `json:"cpu,omitempty"`
	// Memory limit in bytes; 0 is unlimited.
	Memory int64 `json:"memory,omitempty"`
	// Pids limit; 0 means 1024.
	Pids int64 `json:"pids,omitempty"`
	// Mounts: volume name -> path in the container.
	Mounts map[string]string `json:"mounts,omitempty"`
	// ReadOnlyRoot mounts the root filesystem read-only.
	ReadOnlyRoot bool `json:"read_only_root,omitempty"`
	// Restart policy; default always.
	Restart RestartPolicy `json:"restart,omitempty"`
	// Seccomp is the container's seccomp profile: default (also when
	// empty) or unconfined.
	Seccomp SeccompProfile `json:"seccomp,omitempty"`
}

// State of a container.
type State string

// Container states.
const (
	StateCreated State = "created" // known, being started or waiting for its backoff
	StateRunning State = "running"
	StateExited  State = "exited"
)

// Exit reasons.
const (
	ReasonCompleted = "Completed" // exit code 0
	ReasonError     = "Error"     // non-zero exit code or a signal
	ReasonOOMKilled = "OOMKilled" // killed by the kernel for its memory limit
	ReasonUnknown   = "Unknown"   // the shim died without recording an exit
	ReasonStartFail = "StartError"
)

// ContainerStatus is what the runtime knows of a container.
type ContainerStatus struct {
	// Pod and Name identify the container.
	Pod  string `json:"pod"`
	Name string `json:"name"`
	// Image is the reference the container was started from, ImageID the
	// image's config digest.
	Image   string `json:"image"`
	ImageID string `json:"image_id,omitempty"`
	// State is created, running or exited.
	State State `json:"state"`
	// Pid is the container's first process on the node, while running.
	Pid int `json:"pid,omitempty"`
	// StartedAt is when the current (or last) run started, by the
	// runtime's clock.
	StartedAt time.Time `json:"started_at,omitempty"`
	// ExitCode of the last run: its exit status, or 128+signal.
	ExitCode int `json:"exit_code"`
	// Signal that ended the last run, if one did.
	Signal int `json:"signal,omitempty"`
	// Reason of the last exit: Completed, Error, OOMKilled, Unknown or
	// StartError; Message says more for the last two.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// FinishedAt is when the last run ended.
	FinishedAt time.Time `json:"finished_at,omitempty"`
	// RestartCount counts starts after the first.
	RestartCount int `json:"restart_count"`
}

// Event tells that a container exited (or failed to start).
type Event struct {
	// Status is the container's status right after the exit.
	Status ContainerStatus
	// WillRestart says the restart policy starts it again after Backoff.
	WillRestart bool
	// Backoff is the delay before the restart.
	Backoff time.Duration
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func validName(kind, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%s name %q: must be a DNS label (a-z, 0-9, '-'): %w", kind, s, ErrInvalid)
	}
	return nil
}

// Validate checks a pod config.
func (p *PodConfig) Validate() error {
	var errs []error
	if err := validName("pod", p.Name); err != nil {
		errs = append(errs, err)
	}
	if p.ResolvConf != "" && !filepath.IsAbs(p.ResolvConf) {
		errs = append(errs, fmt.Errorf("resolv.conf %q must be an absolute path: %w", p.ResolvConf, ErrInvalid))
	}
	for name, v := range p.Volumes {
		if err := validName("volume", name); err != nil {
			errs = append(errs, err)
		}
		switch v.Type {
		case VolumeEmpty, VolumeMemory:
			if len(v.Files) > 0 && v.Type != VolumeMemory {
				errs = append(errs, fmt.Errorf("volume %s: files only go into memory volumes: %w", name, ErrInvalid))
			}
			for fn := range v.Files {
				if fn == "" || fn == "." || fn == ".." || strings.ContainsRune(fn, '/') {
					errs = append(errs, fmt.Errorf("volume %s: file name %q: %w", name, fn, ErrInvalid))
				}
			}
		case VolumeHost:
			if v.Path == "" || v.Path[0] != '/' {
				errs = append(errs, fmt.Errorf("volume %s: host path %q must be absolute: %w", name, v.Path, ErrInvalid))
			}
		default:
			errs = append(errs, fmt.Errorf("volume %s: unknown type %q: %w", name, v.Type, ErrInvalid))
		}
	}
	return errors.Join(errs...)
}

// Validate checks a container config against its pod.
func (c *ContainerConfig) Validate(pod *PodConfig) error {
	var errs []error
	if err := validName("container", c.Name); err != nil {
		errs = append(errs, err)
	}
	if c.Image == "" {
		errs = append(errs, fmt.Errorf("container %s: image is required: %w", c.Name, ErrInvalid))
	}
	switch c.Restart {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		errs = append(errs, fmt.Errorf("container %s: unknown restart policy %q: %w", c.Name, c.Restart, ErrInvalid))
	}
	switch c.Seccomp {
	case "", SeccompDefault, SeccompUnconfined:
	default:
		errs = append(errs, fmt.Errorf("container %s: unknown seccomp profile %q (use default or unconfined): %w", c.Name, c.Seccomp, ErrInvalid))
	}
	if c.CPU < 0 || c.Memory < 0 || c.Pids < 0 {
		errs = append(errs, fmt.Errorf("container %s: negative limit: %w", c.Name, ErrInvalid))
	}
	for vol, path := range c.Mounts {
		if _, ok := pod.Volumes[vol]; !ok {
			errs = append(errs, fmt.Errorf("container %s: mount of unknown volume %q: %w", c.Name, vol, ErrInvalid))
		}
		if path == "" || path[0] != '/' {
			errs = append(errs, fmt.Errorf("container %s: mount path %q must be absolute: %w", c.Name, path, ErrInvalid))
		}
	}
	return errors.Join(errs...)
}

// containerID is the libcontainer id of a pod's container. Pod and container
// names are DNS labels, so "_" cannot be part of either.
func containerID(pod, name string) string { return pod + "_" + name }
