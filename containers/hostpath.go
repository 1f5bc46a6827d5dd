package containers

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// HostPathPolicy says which node paths host volumes may bind-mount. The
// zero value refuses every host path.
//
// The rule: a host path is refused when it is one of the Reserved paths,
// is inside one or contains one (mounting /var would expose
// /var/lib/skiff); otherwise it is allowed when it is one of the Allowed
// prefixes or below one. Paths are compared clean and by whole components:
// "/srv" and "/srv/" both allow "/srv" and "/srv/x", not "/srvx". On the
// node the runtime checks the path as written and the path it resolves
// to, every symlink followed, and mounts the resolved one: a symlink under
// an allowed prefix that points to /etc is refused.
type HostPathPolicy struct {
	// Allowed are the path prefixes host volumes may use: the node
	// config's host_volume_paths. They are compared as written, never
	// resolved (a prefix that a pod could turn into a symlink must not
	// widen the policy): give real paths, without symlinks.
	Allowed []string
	// Reserved are paths refused even under an allowed prefix: skiff's
	// data and run directories, its API socket. The runtime adds its own
	// Root and StateDir, and also refuses each reserved path's resolved
	// form.
	Reserved []ReservedPath
}

// ReservedPath is a path that host volumes must neither be, be inside,
// nor contain.
type ReservedPath struct {
	// Name says what the path is, for error messages: "skiff's data dir".
	Name string
	// Path is absolute.
	Path string
}

// HostPathError is a host volume refused by a HostPathPolicy: check for it
// with errors.As. Its Rule says which rule the path breaks.
type HostPathError struct {
	// Volume is the volume's name; empty from HostPathPolicy.Check.
	Volume string
	// Path is the host path as given.
	Path string
	// Resolved is the path Path resolves to on the node, when that is the
	// one that broke the rule; empty otherwise.
	Resolved string
	// Rule is the rule broken, worded to follow the path: `is not under
	// host_volume_paths ["/srv/"]`, `is inside skiff's data dir
	// "/var/lib/skiff"`, `contains skiff's run dir "/run/skiff"`.
	Rule string
}

func (e *HostPathError) Error() string {
	s := strconv.Quote(e.Path)
	if e.Resolved != "" {
		s += " resolves to " + strconv.Quote(e.Resolved) + ", which"
	}
	s += " " + e.Rule
	if e.Volume != "" {
		s = "volume " + e.Volume + ": host path " + s
	}
	return s
}

// Check checks path as written, without looking at the filesystem (a
// server checks a manifest this way for the nodes). It returns a
// *HostPathError or nil.
func (p HostPathPolicy) Check(path string) error {
	if rule := p.rule(filepath.Clean(path), p.Reserved); rule != "" {
		return &HostPathError{Path: path, Rule: rule}
	}
	return nil
}

// resolve checks a host volume's path on the node: as written, then
// resolved (every symlink followed), against the reserved paths and their
// resolved forms. It returns the resolved path, the one to mount. A path
// that does not exist is an error, not a *HostPathError.
//
// A symlink swapped in after resolve and before the mount is not caught:
// the mount follows it. Only a process that can write under an allowed
// prefix could do that.
func (p HostPathPolicy) resolve(volume, path string) (string, error) {
	reserved := slices.Clone(p.Reserved)
	for _, r := range p.Reserved {
		if real, err := filepath.EvalSymlinks(r.Path); err == nil && real != filepath.Clean(r.Path) {
			reserved = append(reserved, ReservedPath{Name: r.Name, Path: real})
		}
	}
	if rule := p.rule(filepath.Clean(path), reserved); rule != "" {
		return "", &HostPathError{Volume: volume, Path: path, Rule: rule}
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("volume %s: host path: %w", volume, err)
	}
	if rule := p.rule(real, reserved); rule != "" {
		return "", &HostPathError{Volume: volume, Path: path, Resolved: real, Rule: rule}
	}
	return real, nil
}

// rule returns the rule that the clean absolute path breaks, or "".
func (p HostPathPolicy) rule(path string, reserved []ReservedPath) string {
	if !filepath.IsAbs(path) {
		return "is not an absolute path"
	}
	// The closest relation names the rule: the API socket rather than
	// the run dir that holds it.
	for _, rel := range []struct {
		verb  string
		holds func(rp string) bool
	}{
		{"is", func(rp string) bool { return path == rp }},
		{"is inside", func(rp string) bool { return under(path, rp) }},
		{"contains", func(rp string) bool { return under(rp, path) }},
	} {
		for _, r := range reserved {
			if rel.holds(filepath.Clean(r.Path)) {
				return fmt.Sprintf("%s %s %q", rel.verb, r.Name, r.Path)
			}
		}
	}
	for _, a := range p.Allowed {
		if ap := filepath.Clean(a); filepath.IsAbs(a) && (path == ap || under(path, ap)) {
			return ""
		}
	}
	q := make([]string, len(p.Allowed))
	for i, a := range p.Allowed {
		q[i] = strconv.Quote(a)
	}
	rule := "is not under host_volume_paths [" + strings.Join(q, ", ") + "]"
	if len(p.Allowed) == 0 {
		rule += " (none are set: host volumes are refused)"
	}
	return rule
}

// under says whether the clean path is strictly below the clean dir.
func under(path, dir string) bool {
	if dir == "/" {
		return path != "/"
	}
	return strings.HasPrefix(path, dir+"/")
}
