package containers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHostPathPolicyCheck: the rule on paths as written. Needs no root.
func TestHostPathPolicyCheck(t *testing.T) {
	srv := HostPathPolicy{
		Allowed: []string{"/srv/", "/data"},
		Reserved: []ReservedPath{
			{Name: "skiff's data dir", Path: "/srv/skiff"},
			{Name: "skiff's run dir", Path: "/run/skiff"},
			{Name: "skiff's API socket", Path: "/run/skiff/skiff.sock"},
		},
	}
	tests := []struct {
		name   string
		policy HostPathPolicy
		path   string
		rule   string // "" for allowed
	}{
		{"under a prefix", srv, "/srv/x", ""},
		{"the prefix itself", srv, "/data", ""},
		{"the prefix with a slash", srv, "/data/", ""},
		{"a prefix without a slash", srv, "/data/a/b", ""},
		{"unclean but under", srv, "/srv//a/./b/", ""},
		{"a sibling that shares the prefix's letters", srv, "/srvx", `is not under host_volume_paths ["/srv/", "/data"]`},
		{"another sibling", srv, "/datax/y", `is not under host_volume_paths ["/srv/", "/data"]`},
		{"outside", srv, "/etc", `is not under host_volume_paths ["/srv/", "/data"]`},
		{"out through dot-dot", srv, "/srv/../etc", `is not under host_volume_paths ["/srv/", "/data"]`},
		{"the root", srv, "/", `contains skiff's data dir "/srv/skiff"`},
		{"the data dir", srv, "/srv/skiff", `is skiff's data dir "/srv/skiff"`},
		{"inside the data dir", srv, "/srv/skiff/pki", `is inside skiff's data dir "/srv/skiff"`},
		{"the data dir unclean", srv, "/srv/x/../skiff/", `is skiff's data dir "/srv/skiff"`},
		{"a parent of the run dir", srv, "/run", `contains skiff's run dir "/run/skiff"`},
		{"the API socket", srv, "/run/skiff/skiff.sock", `is skiff's API socket "/run/skiff/skiff.sock"`},
		{"relative", srv, "srv/x", "is not an absolute path"},
		{"no prefixes: all refused", HostPathPolicy{}, "/srv/x", `is not under host_volume_paths [] (none are set: host volumes are refused)`},
		{"a prefix of / allows all", HostPathPolicy{Allowed: []string{"/"}}, "/etc", ""},
		{"but never the reserved", HostPathPolicy{Allowed: []string{"/"}, Reserved: srv.Reserved}, "/", `contains skiff's data dir "/srv/skiff"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.path)
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("Check(%q) = %v, want allowed", tt.path, err)
				}
				return
			}
			var he *HostPathError
			if !errors.As(err, &he) {
				t.Fatalf("Check(%q) = %v, want a *HostPathError", tt.path, err)
			}
			if he.Rule != tt.rule || he.Path != tt.path {
				t.Errorf("Check(%q): path %q, rule %q; want rule %q", tt.path, he.Path, he.Rule, tt.rule)
			}
		})
	}
	e := &HostPathError{Volume: "v", Path: "/srv/x", Resolved: "/etc", Rule: `is not under host_volume_paths ["/srv/"]`}
	if want := `volume v: host path "/srv/x" resolves to "/etc", which is not under host_volume_paths ["/srv/"]`; e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

// TestHostVolumePolicy runs host volumes against a policy on the node: a
// pod whose host path is refused gets no sandbox and a *HostPathError
// naming the rule; a symlink is judged by where it points, at every
// container start; an allowed path is mounted, read-only when asked (down
// to the mounts below it).
func TestHostVolumePolicy(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	cfg := testConfig(t)
	// base holds the runtime's Root and StateDir and is the allowed
	// prefix: the runtime's own directories are refused under it.
	base := filepath.Dir(cfg.Root)
	cfg.Root = filepath.Join(base, "node", "data")
	skiffRun := filepath.Join(base, "skiff-run")
	cfg.HostPaths = HostPathPolicy{Allowed: []string{base + "/"},
		Reserved: []ReservedPath{{Name: "skiff's run dir", Path: skiffRun}}}
	r := openRuntime(t, cfg)
	ctx := context.Background()
	ref := reg.Addr + "/busybox:1"
	if _, err := r.Images().Pull(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	mkdir := func(p string) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	symlink := func(target, p string) string {
		t.Helper()
		_ = os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ro, rw, other := mkdir(filepath.Join(base, "ro")), mkdir(filepath.Join(base, "rw")), mkdir(filepath.Join(base, "other"))
	mkdir(filepath.Join(skiffRun, "sub"))
	if err := os.WriteFile(filepath.Join(ro, "file"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sibling := mkdir(base + "x")
	t.Cleanup(func() { os.RemoveAll(sibling) })
	notUnder := `is not under host_volume_paths ["` + base + `/"]`

	refused := []struct {
		name, path, resolved, rule string
	}{
		{"the root", "/", "", `contains skiff's run dir "` + skiffRun + `"`},
		{"the runtime's root", cfg.Root, "", `is the container runtime's root "` + cfg.Root + `"`},
		{"inside the runtime's root", filepath.Join(cfg.Root, "pods"), "", `is inside the container runtime's root "` + cfg.Root + `"`},
		{"the prefix, which contains them", base, "", `contains skiff's run dir "` + skiffRun + `"`},
		{"a parent of the runtime's root", filepath.Dir(cfg.Root), "", `contains the container runtime's root "` + cfg.Root + `"`},
		{"the runtime's state dir", cfg.StateDir, "", `is the container runtime's state dir "` + cfg.StateDir + `"`},
		{"inside a reserved path", filepath.Join(skiffRun, "sub"), "", `is inside skiff's run dir "` + skiffRun + `"`},
		{"outside the prefix", "/etc", "", notUnder},
		{"a sibling of the prefix", sibling, "", notUnder},
		{"a symlink to /etc", symlink("/etc", filepath.Join(base, "etc-link")), "/etc", notUnder},
		{"a symlink to the root", symlink(cfg.Root, filepath.Join(base, "root-link")), cfg.Root, `is the container runtime's root "` + cfg.Root + `"`},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			pod := "refused-" + randSuffix()
			err := r.StartPod(ctx, PodConfig{Name: pod, Volumes: map[string]Volume{"v": {Type: VolumeHost, Path: tt.path}}})
			var he *HostPathError
			if !errors.As(err, &he) {
				t.Fatalf("StartPod = %v, want a *HostPathError", err)
			}
			if he.Volume != "v" || he.Path != tt.path || he.Resolved != tt.resolved || he.Rule != tt.rule {
				t.Errorf("refused %+v, want path %q resolved %q rule %q", *he, tt.path, tt.resolved, tt.rule)
			}
			for _, p := range r.Pods() {
				if p.Name == pod {
					t.Errorf("a refused pod got a sandbox")
				}
			}
		})
	}

	// An allowed pod: ro read-only with a mount below it, rw writable, and
	// "swap" a symlink that points inside the prefix at StartPod and to
	// /etc when a container starts.
	sub := mkdir(filepath.Join(ro, "sub"))
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	swap := symlink(other, filepath.Join(base, "swap"))
	pod := PodConfig{Name: "hostvol-" + randSuffix(), Volumes: map[string]Volume{
		"ro":   {Type: VolumeHost, Path: ro, ReadOnly: true},
		"rw":   {Type: VolumeHost, Path: rw},
		"swap": {Type: VolumeHost, Path: swap},
	}}
	if err := r.StartPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	start := func(name string) error {
		_, err := r.StartContainer(ctx, pod.Name, ContainerConfig{Name: name, Image: ref, Command: []string{"sleep", "600"},
			Mounts: map[string]string{"ro": "/ro", "rw": "/rw", "swap": "/swap"}})
		return err
	}
	if err := start("c"); err != nil {
		t.Fatal(err)
	}
	run := func(script string) (int, string) {
		t.Helper()
		var out strings.Builder
		code, err := r.Exec(ctx, pod.Name, "c", ExecOptions{Args: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("exec %q: %v", script, err)
		}
		return code, out.String()
	}
	if code, out := run("cat /ro/file"); code != 0 || out != "from the host\n" {
		t.Errorf("read a read-only volume: code %d, %q", code, out)
	}
	for _, f := range []string{"/ro/new", "/ro/file", "/ro/sub/new"} {
		if code, out := run("echo x > " + f); code == 0 || !strings.Contains(out, "Read-only file system") {
			t.Errorf("write %s in a read-only volume: code %d, %q; want EROFS", f, code, out)
		}
	}
	if code, out := run("echo x > /rw/new && echo y > /swap/new"); code != 0 {
		t.Errorf("write a read-write volume: code %d, %q", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "new")); err != nil || string(b) != "x\n" {
		t.Errorf("the host does not see the container's write: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
		t.Error("a write through the read-only volume reached the host")
	}

	// The symlink now points to /etc: the next container start refuses it.
	symlink("/etc", swap)
	err := start("d")
	var he *HostPathError
	if !errors.As(err, &he) || he.Volume != "swap" || he.Resolved != "/etc" || he.Rule != notUnder {
		t.Fatalf("start with a symlink swapped to /etc: %v, want a *HostPathError resolving to /etc", err)
	}
	if err := r.RemovePod(ctx, pod.Name, 0); err != nil {
		t.Fatal(err)
	}
}
