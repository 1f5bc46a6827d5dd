package containers

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// makeNetns creates a network namespace with `ip netns add` and deletes it
// at cleanup.
func makeNetns(t *testing.T) string {
	t.Helper()
	name := "skiff-test-" + randSuffix()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add (install iproute2): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete: %v: %s", err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return "/run/netns/" + name
}

func TestTwoContainerPod(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	cfg := testConfig(t)
	hostDir := t.TempDir()
	cfg.HostPaths.Allowed = []string{hostDir}
	r := openRuntime(t, cfg)
	ctx := context.Background()
	for _, ref := range []string{reg.Addr + "/busybox:1", reg.Addr + "/demo:1"} {
		if _, err := r.Images().Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(hostDir, "from-host"), []byte("host file\n"), 0o644)
	netns := makeNetns(t)
	pod := PodConfig{Name: "web-" + randSuffix(), NetNSPath: netns, Volumes: map[string]Volume{
		"shared": {Type: VolumeEmpty},
		"mem":    {Type: VolumeMemory, Size: 1 << 20},
		"host":   {Type: VolumeHost, Path: hostDir},
	}}
	if err := r.StartPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := r.StartPod(ctx, pod); err != nil {
		t.Fatalf("StartPod is not idempotent: %v", err)
	}
	if _, err := r.StartContainer(ctx, pod.Name, ContainerConfig{Name: "server", Image: reg.Addr + "/demo:1", ReadOnlyRoot: true,
		Mounts: map[string]string{"shared": "/shared"}, Memory: 64 << 20, CPU: 0.5}); err != nil {
		t.Fatal(err)
	}
	// The client reaches the server over the pod's loopback and leaves what
	// it got in the shared volume, and proves the other volumes.
	script := `until wget -q -O /shared/answer http://127.0.0.1:8080/; do sleep 0.1; done
cat /host/from-host > /shared/host-copy
echo in-memory > /mem/x && df /mem | tail -1 > /shared/mem-df
hostname > /shared/hostname
touch /rootfs-is-writable && echo yes > /shared/client-rw
sleep 600`
	if _, err := r.StartContainer(ctx, pod.Name, ContainerConfig{Name: "client", Image: reg.Addr + "/busybox:1",
		Command: []string{"sh", "-c", script}, Mounts: map[string]string{"shared": "/shared", "mem": "/mem", "host": "/host"}}); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(cfg.Root, "pods", pod.Name, "volumes", "shared")
	eventually(t, 20*time.Second, "client writes the shared volume", func() error {
		_, err := os.Stat(filepath.Join(shared, "client-rw"))
		return err
	})
	check := map[string]string{
		"answer":    "hello from " + pod.Name + "\n",
		"host-copy": "host file\n",
		"hostname":  pod.Name + "\n",
	}
	for f, want := range check {
		b, err := os.ReadFile(filepath.Join(shared, f))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", f, b, err, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(shared, "mem-df")); !strings.Contains(string(b), "1024") {
		t.Errorf("memory volume is not a 1 MiB tmpfs: %q", b)
	}
	// Limits and the device allow-list are in the container's cgroups
	// under the configured parent.
	cg := func(ctrl, file string) string {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, cfg.CgroupParent, containerID(pod.Name, "server"), file))
		if err != nil {
			t.Errorf("cgroup file: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	if q := cg("cpu", "cpu.cfs_quota_us"); q != "50000" {
		t.Errorf("cpu quota %s, want 50000 (0.5 of a 100000 period)", q)
	}
	if m := cg("memory", "memory.limit_in_bytes"); m != "67108864" {
		t.Errorf("memory limit %s", m)
	}
	if p := cg("pids", "pids.max"); p != "1024" {
		t.Errorf("pids limit %s, want the default 1024", p)
	}
	if d := cg("devices", "devices.list"); strings.Contains(d, "a *:* rwm") || !strings.Contains(d, "c 1:3 rwm") {
		t.Errorf("device cgroup is not deny-all but the standard devices: %q", d)
	}
	// The server's root is read-only.
	var out strings.Builder
	code, err := r.Exec(ctx, pod.Name, "server", ExecOptions{Args: []string{"sh", "-c", "touch /x"}, Stderr: &out})
	if err != nil || code == 0 || !strings.Contains(out.String(), "Read-only file system") {
		t.Errorf("write to a read-only root: code %d, err %v, stderr %q", code, err, out.String())
	}
	// Both share one IPC namespace and the given network namespace.
	nsOf := func(name, ns string) string {
		st, _ := r.ContainerStatus(pod.Name, name)
		l, _ := os.Readlink("/proc/" + itoa(st.Pid) + "/ns/" + ns)
		return l
	}
	for _, ns := range []string{"ipc", "net", "uts"} {
		if a, b := nsOf("server", ns), nsOf("client", ns); a == "" || a != b {
			t.Errorf("%s namespace not shared: %q vs %q", ns, a, b)
		}
	}
	if target, _ := os.Readlink("/proc/self/ns/net"); nsOf("server", "net") == target {
		t.Error("pod runs in the host network namespace")
	}
	if err := r.RemovePod(ctx, pod.Name, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(r.Status()) != 0 {
		t.Errorf("containers left after RemovePod: %+v", r.Status())
	}
	if _, err := os.Stat(filepath.Join(cfg.Root, "pods", pod.Name)); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(hostDir, "from-host")); err != nil {
		t.Errorf("host volume content removed: %v", err)
	}
	assertNoCgroups(t, cfg)
}

func itoa(i int) string { return strconv.Itoa(i) }

// assertNoCgroups checks that no container cgroup is left under the parent.
func assertNoCgroups(t *testing.T, cfg Config) {
	t.Helper()
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + cfg.CgroupParent + "/*")
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			t.Errorf("cgroup left: %s", d)
		}
	}
}

func TestWhiteoutsAndOpaqueDirs(t *testing.T) {
	requireRoot(t)
	bbFiles, err := imagetest.BusyboxFiles()
	if err != nil {
		t.Fatal(err)
	}
	l1, _ := imagetest.Layer(append(bbFiles,
		imagetest.File{Path: "a", Dir: true}, imagetest.File{Path: "a/gone", Data: []byte("x")}, imagetest.File{Path: "a/kept", Data: []byte("k")},
		imagetest.File{Path: "b", Dir: true}, imagetest.File{Path: "b/old", Data: []byte("o")}))
	l2, _ := imagetest.Layer([]imagetest.File{
		imagetest.Whiteout("a/gone"), imagetest.Opaque("b"), {Path: "b/new", Data: []byte("n")},
	})
	img, err := imagetest.Image(v1.Config{Env: []string{"PATH=/bin"}}, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	r := openRuntime(t, cfg)
	path := filepath.Join(t.TempDir(), "wh.tar")
	if err := imagetest.WriteDockerArchive(path, "x.local/wh:1", img); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Images().Import(context.Background(), path, nil); err != nil {
		t.Fatal(err)
	}
	runToCompletion(t, r, "x.local/wh:1", "echo a: $(ls /a) b: $(ls /b)", "a: kept b: new\n")
}
