package containers

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	mobyseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runc/libcontainer/configs"
	lcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// seccompSupported says whether libcontainer can load a seccomp filter. It
// can only when the binary was built with cgo and the "seccomp" build tag
// (runc's libcontainer/seccomp then compiles against libseccomp); without
// them libcontainer's init fails on any filter with a bare "seccomp: config
// provided but seccomp not supported" from inside the container's init. We
// check first, so that the error names the fix, and never start a
// container unconfined that asked for a filter. A variable, so that a test
// can play the build without it.
var seccompSupported = lcseccomp.Enabled

// seccompFor returns the filter of container c (nil for none), whose
// process has the bounding capability set caps, or the reason it may not
// start: ErrForbidden for unconfined on a node that forbids it,
// ErrSeccompUnsupported for a filter in a binary built without seccomp.
func seccompFor(c ContainerConfig, caps []string, allowUnconfined bool) (*configs.Seccomp, error) {
	switch c.Seccomp {
	case SeccompUnconfined:
		if !allowUnconfined {
			return nil, fmt.Errorf("container %s: seccomp %q is not allowed on this node (node config allow_unconfined = false): %w", c.Name, c.Seccomp, ErrForbidden)
		}
		return nil, nil
	case "", SeccompDefault:
		if !seccompSupported {
			return nil, fmt.Errorf("container %s: seccomp profile %q: %w", c.Name, SeccompDefault, ErrSeccompUnsupported)
		}
		p, err := defaultSeccomp(caps)
		if err != nil {
			return nil, fmt.Errorf("container %s: seccomp profile %q: %w", c.Name, SeccompDefault, err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("container %s: unknown seccomp profile %q: %w", c.Name, c.Seccomp, ErrInvalid)
}

// seccompProfiles caches the default profile per bounding capability set:
// Docker's profile allows some syscalls only to holders of a capability
// (CAP_SYS_ADMIN: mount, unshare, setns...), so the filter depends on the
// set. Building it (about 400 rules) on every start would be wasted work;
// the cached filters are shared and never modified.
var seccompProfiles = struct {
	mu sync.Mutex                  // guards m
	m  map[string]*configs.Seccomp // by the bounding set, comma-joined
}{m: map[string]*configs.Seccomp{}}

// defaultSeccomp returns Docker's default profile (moby/profiles/seccomp,
// the one `docker run` applies) for a process with the bounding capability
// set caps, as libcontainer's filter config: moby turns its profile into an
// OCI LinuxSeccomp for this architecture, kernel and capability set, and
// runc's specconv turns that into libcontainer's config, as `runc run` does
// with a bundle's config.json.
func defaultSeccomp(caps []string) (*configs.Seccomp, error) {
	key := strings.Join(caps, ",")
	seccompProfiles.mu.Lock()
	defer seccompProfiles.mu.Unlock()
	if p, ok := seccompProfiles.m[key]; ok {
		return p, nil
	}
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	oci, err := mobyseccomp.GetDefaultProfile(rs)
	if err != nil {
		return nil, fmt.Errorf("docker default profile: %w", err)
	}
	p, err := specconv.SetupSeccomp(oci)
	if err != nil {
		return nil, fmt.Errorf("convert docker default profile: %w", err)
	}
	// Docker's profile also lists x32 on amd64. Nothing at the edge runs
	// x32 binaries (Debian's kernel does not even enable the ABI), and
	// libseccomp compiling its section at every container start made a
	// start 1.5x one without the filter (1.18x without it, measured with
	// BenchmarkPodStart). A syscall of an architecture not listed is
	// refused by the filter. i386 (x86) stays: 32-bit binaries in images
	// are real.
	p.Architectures = slices.DeleteFunc(p.Architectures, func(a string) bool { return a == "x32" })
	seccompProfiles.m[key] = p
	return p, nil
}

// logSecurity warns once, when a runtime opens, that containers with the
// default seccomp profile will not start in a binary built without seccomp
// support, so that the cause is in the node's log before the first pod fails.
func logSecurity(log *slog.Logger) {
	if !seccompSupported {
		log.Warn("built without seccomp support: containers with the default seccomp profile will not start; rebuild with -tags seccomp (libseccomp-dev)")
	}
}
