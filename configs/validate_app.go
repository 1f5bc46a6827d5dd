package configs

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"
)

// Limits that catch typos rather than policy. They also keep every sum
// the scheduler makes (cpu in millicores, memory in bytes, over every pod of
// a node) far from overflowing an int64.
const (
	maxCPU    = 1024     // cores
	minCPU    = 0.001    // one millicore, the runtime's granularity
	minMemory = 4 << 20  // below this a container cannot start
	maxMemory = 16 << 40 // 16Ti
	// MaxReplicas is the most replicas an app may ask for.
	MaxReplicas = 10000
	// minProbePeriod is the shortest probe period: a probe every
	// nanosecond would only burn the node's CPU (and an edge node's CPU
	// budget is small). A pod that is not ready yet is still probed sooner
	// (the agent retries from 25ms, doubling up to the period).
	minProbePeriod = Duration(time.Second)
	// minProbeTimeout is the shortest probe timeout: sub-second timeouts
	// are fine for a local HTTP or TCP check.
	minProbeTimeout = Duration(100 * time.Millisecond)
)

// ValidateApp checks the app spec a named name. Zero values of defaulted
// fields are accepted (they mean the default). The error is an ErrorList
// without positions, with field paths "app.NAME....".
func ValidateApp(name string, a *AppSpec) error {
	var e errs
	validateApp(&e, name, a)
	return e.list.err()
}

func validateApp(e *errs, name string, a *AppSpec) {
	validateTemplate(e, path{"app", name}, name, a)
}

// validateTemplate checks app spec a at base, whose last element is name:
// an app's, or a pod's with the pod's template (see ValidatePod).
func validateTemplate(e *errs, base path, name string, a *AppSpec) {
	if !ValidName(name) {
		e.addKey(base, "%s", nameMsg(name))
	}
	if a == nil {
		e.add(base, "is empty")
		return
	}
	switch a.Mode {
	case "", ModeReplicas, ModePerNode:
	default:
		e.add(base.with("mode"), "%s", enumMsg(a.Mode, "mode", ModeReplicas, ModePerNode))
	}
	if a.Replicas != nil {
		if a.Mode == ModePerNode {
			e.add(base.with("replicas"), `cannot be set with mode "per-node" (it runs one pod on every matching node)`)
		} else if *a.Replicas < 0 {
			e.add(base.with("replicas"), "must be >= 0")
		} else if *a.Replicas > MaxReplicas {
			e.add(base.with("replicas"), "%d is too large (at most %d)", *a.Replicas, MaxReplicas)
		}
	}
	switch a.Restart {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		e.add(base.with("restart"), "%s", enumMsg(a.Restart, "restart policy", RestartAlways, RestartOnFailure, RestartNever))
	}
	checkLabels(e, base.with("node_selector"), a.NodeSelector)
	if a.TerminationGrace < 0 {
		e.add(base.with("termination_grace"), "must be >= 0")
	}

	for _, vn := range sortedKeys(a.Volumes) {
		validateVolume(e, base.with("volume", vn), vn, a.Volumes[vn])
	}
	if len(a.Containers) == 0 {
		e.add(base.with("container"), "at least one container is required")
	}
	pod := podPorts{numbers: map[int]string{}, names: map[string]string{}, hostPorts: map[int]string{}}
	for _, cn := range sortedKeys(a.Containers) {
		validateContainer(e, base.with("container", cn), cn, a.Containers[cn], a.Volumes, &pod)
	}
	if a.Update != nil {
		validateUpdate(e, base.with("update"), a.Update, a.Mode == ModePerNode)
	}
	if a.Autoscale != nil {
		validateAutoscale(e, base.with("autoscale"), a)
	}
}

// podPorts tracks the ports of a pod's containers, which share one network
// namespace: a number or a name may appear only once in the pod.
type podPorts struct {
	numbers   map[int]string // port number -> "container/name"
	names     map[string]string
	hostPorts map[int]string
}

func validateContainer(e *errs, p path, name string, c *ContainerSpec, volumes map[string]*VolumeSpec, pod *podPorts) {
	if !ValidName(name) {
		e.addKey(p, "%s", nameMsg(name))
	}
	if c == nil {
		e.add(p, "is empty")
		return
	}
	switch {
	case c.Image == "":
		e.add(p.with("image"), "is required")
	case !validImage(c.Image):
		msg := quoteShort(c.Image) + " is not a valid image reference"
		if strings.ToLower(c.Image) != c.Image && validImage(strings.ToLower(c.Image)) {
			msg += " (repository names are lower-case)"
		}
		e.add(p.with("image"), "%s", msg)
	}
	checkArgs(e, p.with("command"), c.Command)
	if len(c.Command) > 0 && c.Command[0] == "" {
		e.add(p.with("command").index(0), "must not be empty")
	}
	checkArgs(e, p.with("args"), c.Args)
	for _, k := range sortedKeys(c.Env) {
		if !validEnvName(k) {
			e.addKey(p.with("env", k), "%s is not a valid environment variable name", quoteShort(k))
		}
		if strings.ContainsRune(c.Env[k], 0) {
			e.add(p.with("env", k), "must not contain a NUL character")
		}
	}
	for _, k := range sortedKeys(c.EnvFrom) {
		if !validEnvName(k) {
			e.addKey(p.with("env_from", k), "%s is not a valid environment variable name", quoteShort(k))
		}
		if _, dup := c.Env[k]; dup {
			e.addKey(p.with("env_from", k), "%s is also set in env", quoteShort(k))
		}
		if _, err := ParseEnvRef(c.EnvFrom[k]); err != nil {
			e.add(p.with("env_from", k), "%v", err)
		}
	}
	if c.Workdir != "" && !filepath.IsAbs(c.Workdir) {
		e.add(p.with("workdir"), "%s is not an absolute path", quoteShort(c.Workdir))
	}
	if c.User != "" && !userRE.MatchString(c.User) {
		e.add(p.with("user"), `%s is not a user (use "uid" or "uid:gid", numeric)`, quoteShort(c.User))
	}
	for _, pn := range sortedKeys(c.Ports) {
		n := c.Ports[pn]
		pp := p.with("ports", pn)
		if !validPortName(pn) {
			e.addKey(pp, "%s", portNameMsg(pn))
		}
		if other, dup := pod.names[pn]; dup {
			e.addKey(pp, "port name %q is also used by container %q", pn, other)
		} else {
			pod.names[pn] = name
		}
		if n < 1 || n > 65535 {
			e.add(pp, "%s", portRangeMsg(int64(n)))
			continue
		}
		if other, dup := pod.numbers[n]; dup {
			e.add(pp, "port %d is also used by %s (containers of a pod share the network)", n, other)
		} else {
			pod.numbers[n] = fmt.Sprintf("container %q port %q", name, pn)
		}
	}
	for _, pn := range sortedKeys(c.HostPorts) {
		n := c.HostPorts[pn]
		pp := p.with("host_ports", pn)
		if _, ok := c.Ports[pn]; !ok {
			e.addKey(pp, "%q is not a port of this container%s", pn, hint(sortedKeys(c.Ports)))
		}
		if n < 1 || n > 65535 {
			e.add(pp, "%s", portRangeMsg(int64(n)))
			continue
		}
		if other, dup := pod.hostPorts[n]; dup {
			e.add(pp, "host port %d is also used by %s", n, other)
		} else {
			pod.hostPorts[n] = fmt.Sprintf("container %q port %q", name, pn)
		}
	}
	switch {
	case math.IsNaN(c.CPU) || math.IsInf(c.CPU, 0) || c.CPU < 0:
		e.add(p.with("cpu"), "must be >= 0")
	case c.CPU > maxCPU:
		e.add(p.with("cpu"), "must be at most %d cores", maxCPU)
	case c.CPU > 0 && c.CPU < minCPU:
		e.add(p.with("cpu"), "must be at least 0.001 (one millicore)")
	}
	switch {
	case c.Memory < 0:
		e.add(p.with("memory"), "must be >= 0")
	case c.Memory > 0 && c.Memory < minMemory:
		e.add(p.with("memory"), "must be at least 4Mi")
	case c.Memory > maxMemory:
		size, _ := c.Memory.MarshalText()
		e.add(p.with("memory"), "%s is too large (at most 16Ti)", size)
	}
	if c.Pids < 0 {
		e.add(p.with("pids"), "must be >= 0")
	}
	switch c.Seccomp {
	case "", SeccompDefault, SeccompUnconfined:
	default:
		e.add(p.with("seccomp"), "%s", enumMsg(c.Seccomp, "seccomp profile", SeccompDefault, SeccompUnconfined))
	}
	mountPaths := map[string]string{}
	for _, vn := range sortedKeys(c.Mounts) {
		mp := p.with("mounts", vn)
		if _, ok := volumes[vn]; !ok {
			e.addKey(mp, "%q is not a volume of this app%s", vn, hint(sortedKeys(volumes)))
		}
		dst := c.Mounts[vn]
		if !filepath.IsAbs(dst) {
			e.add(mp, "%s is not an absolute path", quoteShort(dst))
			continue
		}
		clean := filepath.Clean(dst)
		if clean == "/" {
			e.add(mp, "cannot mount over /")
		} else if other, dup := mountPaths[clean]; dup {
			e.add(mp, "%s is also the mount path of volume %q", quoteShort(dst), other)
		} else {
			mountPaths[clean] = vn
		}
	}
	validateProbe(e, p.with("readiness"), c.Readiness, c)
	validateProbe(e, p.with("liveness"), c.Liveness, c)
	validateProbe(e, p.with("startup"), c.Startup, c)
}

// checkArgs rejects NUL characters, which no exec can pass.
func checkArgs(e *errs, p path, args []string) {
	for i, a := range args {
		if strings.ContainsRune(a, 0) {
			e.add(p.index(i), "must not contain a NUL character")
		}
	}
}

// hint lists what a name could have been.
func hint(names []string) string {
	if len(names) == 0 {
		return " (it has none)"
	}
	return " (it has " + strings.Join(names, ", ") + ")"
}

// ResolvePort returns the number of the port ref refers to in c: a number
// as is, a name through c.Ports. ok is false for an unknown name or a zero
// ref.
func (c ContainerSpec) ResolvePort(ref PortRef) (int, bool) {
	if ref.Name != "" {
		n, ok := c.Ports[ref.Name]
		return n, ok
	}
	return ref.Number, ref.Number != 0
}

// ResolvePort returns the number of the port ref refers to in any container
// of a, as a service's target_port does. ok is false when no container has
// the port name.
func (a *AppSpec) ResolvePort(ref PortRef) (int, bool) {
	if ref.Name == "" {
		return ref.Number, ref.Number != 0
	}
	for _, cn := range sortedKeys(a.Containers) {
		if c := a.Containers[cn]; c != nil {
			if n, ok := c.Ports[ref.Name]; ok {
				return n, true
			}
		}
	}
	return 0, false
}

func validateProbe(e *errs, p path, pr *Probe, c *ContainerSpec) {
	if pr == nil {
		return
	}
	kinds := 0
	if pr.HTTPGet != "" {
		kinds++
		if !strings.HasPrefix(pr.HTTPGet, "/") {
			e.add(p.with("http_get"), "%s is not a path (start it with /)", quoteShort(pr.HTTPGet))
		}
	}
	if pr.TCP {
		kinds++
	}
	if len(pr.Exec) > 0 {
		kinds++
		checkArgs(e, p.with("exec"), pr.Exec)
		if pr.Exec[0] == "" {
			e.add(p.with("exec").index(0), "must not be empty")
		}
	}
	switch {
	case kinds == 0:
		e.add(p, "needs one of http_get, tcp or exec")
	case kinds > 1:
		e.add(p, "only one of http_get, tcp and exec may be set")
	case len(pr.Exec) > 0:
		if !pr.Port.IsZero() {
			e.add(p.with("port"), "is only for http_get and tcp probes")
		}
	default:
		validatePortRef(e, p.with("port"), pr.Port, true)
		if pr.Port.Name != "" && validPortName(pr.Port.Name) {
			if _, ok := c.ResolvePort(pr.Port); !ok {
				e.add(p.with("port"), "%q is not a port of this container%s", pr.Port.Name, hint(sortedKeys(c.Ports)))
			}
		}
	}
	if pr.InitialDelay < 0 {
		e.add(p.with("initial_delay"), "must be >= 0")
	}
	checkInterval(e, p.with("period"), pr.Period, minProbePeriod)
	checkInterval(e, p.with("timeout"), pr.Timeout, minProbeTimeout)
	if pr.FailureThreshold < 0 {
		e.add(p.with("failure_threshold"), "must be >= 1")
	}
	if pr.SuccessThreshold < 0 {
		e.add(p.with("success_threshold"), "must be >= 1")
	}
}

// checkInterval checks a probe's period or timeout d against its floor;
// zero means the default.
func checkInterval(e *errs, p path, d, floor Duration) {
	switch {
	case d < 0:
		e.add(p, "must be > 0")
	case d > 0 && d < floor:
		e.add(p, "%s is too short (at least %s)", d.D(), floor.D())
	}
}

// validatePortRef checks a port number's range or a port name's form.
func validatePortRef(e *errs, p path, ref PortRef, required bool) {
	switch {
	case ref.IsZero():
		if required {
			e.add(p, "is required")
		}
	case ref.Name != "":
		if !validPortName(ref.Name) {
			e.add(p, "%s is not a port number or a valid port name", quoteShort(ref.Name))
		}
	case ref.Number < 1 || ref.Number > 65535:
		e.add(p, "%s", portRangeMsg(int64(ref.Number)))
	}
}

func validateVolume(e *errs, p path, name string, v *VolumeSpec) {
	if !ValidName(name) {
		e.addKey(p, "%s", nameMsg(name))
	}
	if v == nil {
		e.add(p, "is empty")
		return
	}
	switch v.Type {
	case "", VolumeEmpty, VolumeMemory, VolumeHost:
		if v.Name != "" {
			e.add(p.with("name"), `is only for volumes of type "config" or "secret"`)
		}
	case VolumeConfig, VolumeSecret:
		switch {
		case v.Name == "":
			e.add(p.with("name"), "is required for %s volumes (the [%s.NAME] to mount)", v.Type, v.Type)
		case !ValidName(v.Name):
			e.add(p.with("name"), "%s", nameMsg(v.Name))
		}
	default:
		e.add(p.with("type"), "%s", enumMsg(v.Type, "volume type", VolumeEmpty, VolumeMemory, VolumeHost, VolumeConfig, VolumeSecret))
	}
	switch {
	case v.Type == VolumeHost && v.Path == "":
		e.add(p.with("path"), "is required for host volumes")
	case v.Type == VolumeHost && !filepath.IsAbs(v.Path):
		e.add(p.with("path"), "%s is not an absolute path", quoteShort(v.Path))
	case v.Type != VolumeHost && v.Path != "":
		e.add(p.with("path"), `is only for volumes of type "host"`)
	}
	switch {
	case v.Size < 0:
		e.add(p.with("size"), "must be >= 0")
	case v.Size > 0 && v.Type != VolumeMemory:
		e.add(p.with("size"), `is only for volumes of type "memory"`)
	}
	if v.ReadOnly && v.Type != VolumeHost {
		e.add(p.with("read_only"), `is only for volumes of type "host"`)
	}
}

// validateUpdate checks u; perNode selects the defaults of unset fields.
func validateUpdate(e *errs, p path, u *UpdateSpec, perNode bool) {
	surge, unavailable := 1, 0
	if perNode {
		surge, unavailable = 0, 1
	}
	if u.MaxSurge != nil {
		surge = *u.MaxSurge
		if surge < 0 {
			e.add(p.with("max_surge"), "must be >= 0")
		}
	}
	if u.MaxUnavailable != nil {
		unavailable = *u.MaxUnavailable
		if unavailable < 0 {
			e.add(p.with("max_unavailable"), "must be >= 0")
		}
	}
	if surge == 0 && unavailable == 0 {
		e.add(p, "max_surge and max_unavailable cannot both be 0 (the update could never start)")
	}
	if u.ProgressDeadline < 0 {
		e.add(p.with("progress_deadline"), "must be > 0")
	}
}

func validateAutoscale(e *errs, p path, a *AppSpec) {
	as := a.Autoscale
	if a.Mode == ModePerNode {
		e.add(p, `cannot be used with mode "per-node"`)
	}
	if as.Min < 0 {
		e.add(p.with("min"), "must be >= 0")
	} else if as.Min == 0 && !(as.TargetRPS > 0) {
		e.add(p.with("min"), "0 (scale to zero) needs target_rps: a new connection is what wakes the app")
	}
	if as.IdleWindow < 0 {
		e.add(p.with("idle_window"), "must be >= 0")
	}
	if as.Max < as.Min {
		e.add(p.with("max"), "must be >= min (%d)", as.Min)
	} else if as.Max > MaxReplicas {
		e.add(p.with("max"), "%d is too large (at most %d)", as.Max, MaxReplicas)
	}
	if as.ScaleDownWindow < 0 {
		e.add(p.with("scale_down_window"), "must be >= 0")
	}
	if math.IsNaN(as.Tolerance) || as.Tolerance < 0 || as.Tolerance >= 1 {
		e.add(p.with("tolerance"), "must be >= 0 and < 1 (a fraction: 0.1 is ±10%%)")
	}
	rpsOK := !math.IsNaN(as.TargetRPS) && !math.IsInf(as.TargetRPS, 0) && as.TargetRPS >= 0
	if !rpsOK {
		e.add(p.with("target_rps"), "must be > 0")
	}
	cpuOK := !math.IsNaN(as.TargetCPU) && as.TargetCPU >= 0 && as.TargetCPU <= 1
	if !cpuOK {
		e.add(p.with("target_cpu"), "must be > 0 and <= 1 (a fraction of the requested cpu)")
	}
	if rpsOK && cpuOK && as.TargetRPS == 0 && as.TargetCPU == 0 {
		e.add(p, "needs target_rps or target_cpu")
	}
	if cpuOK && as.TargetCPU > 0 {
		var without []string
		for _, cn := range sortedKeys(a.Containers) {
			if c := a.Containers[cn]; c != nil && !(c.CPU > 0) {
				without = append(without, cn)
			}
		}
		if len(without) > 0 {
			e.add(p.with("target_cpu"), "needs cpu set on every container (missing on %s)", strings.Join(without, ", "))
		}
	}
}
