package containers

import "errors"

// SeccompProfile names the seccomp filter a container runs under.
type SeccompProfile string

// Seccomp profiles.
const (
	// SeccompDefault is Docker's default profile (moby/profiles/seccomp):
	// the syscalls a container needs are allowed, the rest (unshare,
	// mount, keyctl, bpf, ptrace, kexec, ...) fail with EPERM. The empty
	// value means this too.
	SeccompDefault SeccompProfile = "default"
	// SeccompUnconfined runs the container without a filter. A node may
	// refuse it (Config.AllowUnconfined).
	SeccompUnconfined SeccompProfile = "unconfined"
)

// Errors of the pod security rules, checked with errors.Is.
var (
	// ErrForbidden: the node's config does not allow what the container
	// asks for (SeccompUnconfined with Config.AllowUnconfined false).
	ErrForbidden = errors.New("forbidden on this node")
	// ErrSeccompUnsupported: a container asks for a seccomp filter and the
	// binary was built without seccomp support (the "seccomp" build tag
	// and libseccomp). The runtime refuses to start it rather than run it
	// unconfined.
	ErrSeccompUnsupported = errors.New("seccomp support not compiled in (build with -tags seccomp and libseccomp-dev)")
)
