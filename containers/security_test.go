package containers

import (
	"context"
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
)

// procStatus returns the Seccomp and NoNewPrivs lines of a process's
// /proc/PID/status, read from the node.
func procStatus(t *testing.T, pid int) (seccomp, nnp string) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		switch k {
		case "Seccomp":
			seccomp = strings.TrimSpace(v)
		case "NoNewPrivs":
			nnp = strings.TrimSpace(v)
		}
	}
	return seccomp, nnp
}

// hostAllowsUserns says whether the node's kernel lets an unprivileged
// process make a user namespace (Debian's and Ubuntu's switches).
func hostAllowsUserns() bool {
	for f, off := range map[string]string{
		"/proc/sys/user/max_user_namespaces":                     "0",
		"/proc/sys/kernel/unprivileged_userns_clone":             "0",
		"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1",
	} {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == off {
			return false
		}
	}
	return true
}

// execOut runs a shell script in a container and returns its exit code and
// its stdout and stderr together.
func execOut(t *testing.T, r *Runtime, pod, name, script string) (int, string) {
	t.Helper()
	var out strings.Builder
	code, err := r.Exec(context.Background(), pod, name, ExecOptions{Args: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return code, out.String()
}

// TestPodSecurityDefault: a container that asks for nothing runs under
// Docker's seccomp profile with no_new_privs (its first process and an exec
// alike), cannot make a user namespace, sees only its own cgroup, and finds
// Docker's masked paths empty.
func TestPodSecurityDefault(t *testing.T) {
	requireRoot(t)
	r, _, pod, ref := podWithBusybox(t, nil)
	st, err := r.StartContainer(context.Background(), pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}})
	if err != nil {
		t.Fatal(err)
	}
	if sc, nnp := procStatus(t, st.Pid); sc != "2" || nnp != "1" {
		t.Errorf("first process: Seccomp %q NoNewPrivs %q, want 2 (filter) and 1", sc, nnp)
	}
	if _, out := execOut(t, r, pod, "c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"); !strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "NoNewPrivs:\t1") {
		t.Errorf("exec'd process: %q, want Seccomp 2 and NoNewPrivs 1", out)
	}
	if code, out := execOut(t, r, pod, "c", "unshare -U true"); code == 0 || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("unshare -U: exit %d %q; want EPERM from the filter", code, out)
	}
	// In its cgroup namespace, every hierarchy's path is the root.
	_, out := execOut(t, r, pod, "c", "cat /proc/self/cgroup")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		t.Fatalf("/proc/self/cgroup: %q", out)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, ":/") {
			t.Errorf("/proc/self/cgroup line %q: the node's cgroup tree shows (want a path of /)", l)
		}
	}
	// Masked: a file reads empty, a directory lists nothing.
	masked := []string{"/proc/interrupts", "/proc/keys", "/sys/firmware", "/sys/devices/virtual/powercap"}
	for _, p := range masked {
		if _, err := os.Stat(p); err != nil {
			t.Logf("%s: not on this node, nothing to mask", p)
			continue
		}
		code, out := execOut(t, r, pod, "c", "if [ -d "+p+" ]; then ls -A "+p+"; else cat "+p+"; fi")
		if code != 0 || out != "" {
			t.Errorf("%s is not masked: exit %d, %q", p, code, out)
		}
	}
	if code, out := execOut(t, r, pod, "c", "echo x > /proc/sysrq-trigger"); code == 0 {
		t.Errorf("/proc/sysrq-trigger is writable: %q", out)
	}
}

// TestPodSecurityUnconfined: seccomp "unconfined" runs without a filter on
// a node that allows it (the default), and fails to start, naming the
// rule, on one that does not.
func TestPodSecurityUnconfined(t *testing.T) {
	requireRoot(t)
	t.Run("allowed", func(t *testing.T) {
		r, _, pod, ref := podWithBusybox(t, nil)
		st, err := r.StartContainer(context.Background(), pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}, Seccomp: SeccompUnconfined})
		if err != nil {
			t.Fatal(err)
		}
		if sc, nnp := procStatus(t, st.Pid); sc != "0" || nnp != "1" {
			t.Errorf("Seccomp %q NoNewPrivs %q, want 0 (none) and 1", sc, nnp)
		}
		if _, out := execOut(t, r, pod, "c", "grep '^Seccomp:' /proc/self/status"); !strings.Contains(out, "Seccomp:\t0") {
			t.Errorf("exec'd process: %q, want Seccomp 0", out)
		}
		// What the default filter stops in TestPodSecurityDefault: without
		// it, the kernel lets an unprivileged process make a user namespace.
		code, out := execOut(t, r, pod, "c", "unshare -U true")
		if !hostAllowsUserns() {
			t.Logf("the node forbids unprivileged user namespaces; unshare -U: exit %d %q", code, out)
		} else if code != 0 {
			t.Errorf("unshare -U without a filter: exit %d %q; want it to work", code, out)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		r, _, pod, ref := podWithBusybox(t, func(c *Config) { c.AllowUnconfined = false })
		ctx := context.Background()
		_, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}, Seccomp: SeccompUnconfined})
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "allow_unconfined = false") {
			t.Fatalf("start unconfined on a node that forbids it: %v; want ErrForbidden naming allow_unconfined", err)
		}
		if len(r.Status()) != 0 {
			t.Errorf("refused container is kept: %+v", r.Status())
		}
		if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}}); err != nil {
			t.Errorf("default profile on the same node: %v", err)
		}
	})
}

// TestSeccompFor checks the profile choice without a container: Docker's
// default filter (EPERM by default, no unshare, mount or keyctl for a
// process without CAP_SYS_ADMIN), none for unconfined where allowed, and the
// refusals.
func TestSeccompFor(t *testing.T) {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	tests := []struct {
		name        string
		profile     SeccompProfile
		allow       bool
		unsupported bool // play a binary built without the seccomp tag
		wantFilter  bool
		wantErr     error
	}{
		{name: "empty is default", profile: "", allow: true, wantFilter: true},
		{name: "default", profile: SeccompDefault, allow: false, wantFilter: true},
		{name: "unconfined allowed", profile: SeccompUnconfined, allow: true},
		{name: "unconfined forbidden", profile: SeccompUnconfined, allow: false, wantErr: ErrForbidden},
		{name: "unknown", profile: "strict", allow: true, wantErr: ErrInvalid},
		{name: "default without seccomp support", profile: SeccompDefault, allow: true, unsupported: true, wantErr: ErrSeccompUnsupported},
		{name: "unconfined without seccomp support", profile: SeccompUnconfined, allow: true, unsupported: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.unsupported {
				defer func(old bool) { seccompSupported = old }(seccompSupported)
				seccompSupported = false
			} else if tt.wantFilter && !seccompSupported {
				t.Fatal("this test binary has no seccomp support: run go test -tags seccomp (needs libseccomp-dev)")
			}
			f, err := seccompFor(ContainerConfig{Name: "c", Seccomp: tt.profile}, caps, tt.allow)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if (f != nil) != tt.wantFilter {
				t.Fatalf("filter = %v, want one: %v", f != nil, tt.wantFilter)
			}
			if f == nil {
				return
			}
			if f.DefaultAction != configs.Errno || len(f.Syscalls) < 300 {
				t.Errorf("default action %v with %d rules; want Errno and Docker's ~400 rules", f.DefaultAction, len(f.Syscalls))
			}
			allowed := map[string]bool{}
			for _, s := range f.Syscalls {
				if s.Action == configs.Allow && len(s.Args) == 0 {
					allowed[s.Name] = true
				}
			}
			for _, name := range []string{"read", "write", "openat", "execve", "mmap"} {
				if !allowed[name] {
					t.Errorf("%s is not allowed", name)
				}
			}
			for _, name := range []string{"unshare", "mount", "keyctl", "bpf", "kexec_load", "setns", "pivot_root"} {
				if allowed[name] {
					t.Errorf("%s is allowed without CAP_SYS_ADMIN", name)
				}
			}
		})
	}
}

// TestBuildConfigHardening: the libcontainer config masks Docker's paths,
// has its own cgroup namespace, keeps no_new_privs, and carries the
// filter.
func TestBuildConfigHardening(t *testing.T) {
	if !seccompSupported {
		t.Fatal("this test binary has no seccomp support: run go test -tags seccomp (needs libseccomp-dev)")
	}
	cfg := DefaultConfig()
	sb := sandbox{netns: "/run/netns/x", ipcns: "/x/ipc", utsns: "/x/uts"}
	lc, err := buildConfig(cfg, "p_c", "/rootfs", ContainerConfig{Name: "c", Image: "x"}, sb)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/proc/interrupts", "/sys/devices/virtual/powercap", "/proc/kcore", "/sys/firmware", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/scsi", "/proc/acpi", "/proc/asound", "/proc/latency_stats", "/proc/timer_stats"} {
		if !slices.Contains(lc.MaskPaths, p) {
			t.Errorf("%s is not masked", p)
		}
	}
	for _, p := range []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"} {
		if !slices.Contains(lc.ReadonlyPaths, p) {
			t.Errorf("%s is not read-only", p)
		}
	}
	if !lc.Namespaces.IsPrivate(configs.NEWCGROUP) {
		t.Error("no cgroup namespace of its own")
	}
	if !lc.NoNewPrivileges || lc.Seccomp == nil {
		t.Errorf("no_new_privs %v, filter %v", lc.NoNewPrivileges, lc.Seccomp != nil)
	}
	lc, err = buildConfig(cfg, "p_c", "/rootfs", ContainerConfig{Name: "c", Image: "x", Seccomp: SeccompUnconfined}, sb)
	if err != nil || lc.Seccomp != nil {
		t.Errorf("unconfined: filter %v, err %v", lc != nil && lc.Seccomp != nil, err)
	}
	cfg.AllowUnconfined = false
	if _, err := buildConfig(cfg, "p_c", "/rootfs", ContainerConfig{Name: "c", Image: "x", Seccomp: SeccompUnconfined}, sb); !errors.Is(err, ErrForbidden) {
		t.Errorf("unconfined on a node that forbids it: %v", err)
	}
}

// TestSeccompArchitectures: the default filter covers the host's and the
// 32-bit architectures Docker lists, but not x32 (its section cost a third
// of a container start, and no edge image uses it).
func TestSeccompArchitectures(t *testing.T) {
	if !seccompSupported {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI builds with -tags seccomp; this binary has no seccomp support")
		}
		t.Skip("built without -tags seccomp")
	}
	p, err := defaultSeccomp(nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(p.Architectures, "x32") {
		t.Errorf("architectures %v include x32", p.Architectures)
	}
	if runtime.GOARCH == "amd64" && !slices.Contains(p.Architectures, "x86") {
		t.Errorf("architectures %v lack x86 (i386 binaries)", p.Architectures)
	}
}
