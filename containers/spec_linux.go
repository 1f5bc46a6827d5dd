package containers

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/sys/user"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// processSpec is what the container's first process runs as.
type processSpec struct {
	Args   []string `json:"args"`
	Env    []string `json:"env"`
	Cwd    string   `json:"cwd"`
	UID    int      `json:"uid"`
	GID    int      `json:"gid"`
	Groups []int    `json:"groups,omitempty"`
}

// mergeCommand merges the image's entrypoint and cmd with the container's
// as Kubernetes does: Command replaces the entrypoint and drops the image's
// cmd; Args replace the cmd.
func mergeCommand(img v1.Config, c ContainerConfig) []string {
	switch {
	case len(c.Command) > 0:
		return slices.Concat(c.Command, c.Args)
	case len(c.Args) > 0:
		return slices.Concat(img.Entrypoint, c.Args)
	default:
		return slices.Concat(img.Entrypoint, img.Cmd)
	}
}

// mergeEnv puts the container's variables over the image's, in a stable
// order, and adds PATH if neither sets it.
func mergeEnv(img v1.Config, c ContainerConfig, extra ...string) []string {
	var out []string
	idx := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			return
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range img.Env {
		set(kv)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		set(k + "=" + c.Env[k])
	}
	for _, kv := range extra {
		if k, _, _ := strings.Cut(kv, "="); !hasKey(idx, k) {
			set(kv)
		}
	}
	if !hasKey(idx, "PATH") {
		set(defaultPath)
	}
	return out
}

// buildProcess resolves the merged command, env, workdir and user against
// the container's root filesystem.
func buildProcess(img v1.Config, c ContainerConfig, rootfs, hostname string) (processSpec, error) {
	p := processSpec{Args: mergeCommand(img, c)}
	if len(p.Args) == 0 {
		return p, fmt.Errorf("container %s: no command: the image has no entrypoint or cmd and the container sets none: %w", c.Name, ErrInvalid)
	}
	p.Cwd = c.Workdir
	if p.Cwd == "" {
		p.Cwd = img.WorkingDir
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	spec := c.User
	if spec == "" {
		spec = img.User
	}
	passwd, _ := securejoin.SecureJoin(rootfs, "/etc/passwd")
	group, _ := securejoin.SecureJoin(rootfs, "/etc/group")
	eu, err := user.GetExecUserPath(spec, &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}, passwd, group)
	if err != nil {
		return p, fmt.Errorf("container %s: user %q: %w", c.Name, spec, err)
	}
	p.UID, p.GID, p.Groups = eu.Uid, eu.Gid, eu.Sgids
	p.Env = mergeEnv(img, c, "HOSTNAME="+hostname, "HOME="+eu.Home)
	return p, nil
}

// sandbox is what the containers of a pod share, as paths on the node.
type sandbox struct {
	netns, ipcns, utsns string
	volumes             map[string]string // volume name -> directory on the node
	readOnly            map[string]bool   // volume name -> mounted read-only (hostpath_linux.go)
	resolvConf          string            // a file bind-mounted read-only at /etc/resolv.conf, if set
}

// maskedPaths are the paths Docker masks (moby's oci.DefaultLinuxSpec):
// `runc spec`'s list plus /proc/interrupts and
// /sys/devices/virtual/powercap (RAPL energy counters, a side channel:
// CVE-2020-8694). A masked file reads as /dev/null, a masked directory as
// an empty read-only tmpfs; a path the host lacks is skipped.
var maskedPaths = []string{
	"/proc/acpi",
	"/proc/asound",
	"/proc/interrupts",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/sys/devices/virtual/powercap",
	"/sys/firmware",
}

// readonlyPaths are the paths Docker (and `runc spec`) remount read-only.
var readonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// buildConfig makes the libcontainer config of a container from runc's
// `runc spec` profile (only AUDIT_WRITE, KILL and NET_BIND_SERVICE,
// no_new_privs, devices denied but the standard ones) hardened as Docker
// is: its masked and read-only paths, its default seccomp profile unless
// the container is unconfined (and the node allows that), and a cgroup
// namespace of the container's own. It is joined to the pod's namespaces,
// with the container's limits and volume mounts.
func buildConfig(cfg Config, id, rootfs string, c ContainerConfig, sb sandbox) (*configs.Config, error) {
	spec := specconv.Example()
	spec.Process.Terminal = false
	spec.Root = &specs.Root{Path: rootfs, Readonly: c.ReadOnlyRoot}
	spec.Hostname = "" // set in the pod's UTS namespace
	// The cgroup namespace hides the node's cgroup tree: the container
	// sees its own cgroup as / in /proc/self/cgroup and, on cgroup v1, in
	// the per-hierarchy cgroupfs mounts libcontainer makes under
	// /sys/fs/cgroup (read-only, as `runc spec` has it).
	spec.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.CgroupNamespace},
		{Type: specs.NetworkNamespace, Path: sb.netns},
		{Type: specs.IPCNamespace, Path: sb.ipcns},
		{Type: specs.UTSNamespace, Path: sb.utsns},
	}
	spec.Linux.MaskedPaths = slices.Clone(maskedPaths)
	spec.Linux.ReadonlyPaths = slices.Clone(readonlyPaths)
	filter, err := seccompFor(c, spec.Process.Capabilities.Bounding, cfg.AllowUnconfined)
	if err != nil {
		return nil, err
	}
	spec.Linux.CgroupsPath = "/" + filepath.Join(cfg.CgroupParent, id)
	pids := c.Pids
	if pids == 0 {
		pids = 1024
	}
	res := &specs.LinuxResources{
		Devices: spec.Linux.Resources.Devices,
		Pids:    &specs.LinuxPids{Limit: &pids},
	}
	if c.Memory > 0 {
		m := c.Memory
		res.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if c.CPU > 0 {
		period := uint64(100000)
		quota := int64(c.CPU * float64(period))
		if quota < 1000 {
			quota = 1000
		}
		res.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	spec.Linux.Resources = res
	for _, vol := range slices.Sorted(maps.Keys(c.Mounts)) {
		src, ok := sb.volumes[vol]
		if !ok {
			return nil, fmt.Errorf("container %s: volume %s is not in the pod: %w", c.Name, vol, ErrInvalid)
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: c.Mounts[vol], Type: "bind", Source: src,
			Options: bindOptions(sb.readOnly[vol]),
		})
	}
	if sb.resolvConf != "" {
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: "/etc/resolv.conf", Type: "bind", Source: sb.resolvConf, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	lcfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName: id,
		Spec:       spec,
	})
	if err != nil {
		return nil, fmt.Errorf("container %s: libcontainer config: %w", c.Name, err)
	}
	lcfg.Seccomp = filter
	return lcfg, nil
}

func hasKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}
