package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
)

// BenchmarkNode measures, on one real `skiff server --agent`, in one run:
//   - apply to all pods ready (image present) for 1, 3, 10 and 30 replicas,
//     five rounds each, beside the sum of as many bare `runc run -d` starts
//     of the demo image's busybox layer (sleep), also five rounds;
//   - the RSS of the skiff process idle and with 30 pods running;
//   - requests/s through the service VIP against straight to one pod (wrk,
//     one after the other in the same run).
//
// Run with -benchtime=1x; it prints its figures with b.Log.
func BenchmarkNode(b *testing.B) {
	n := newNode(b)
	n.start()
	ctx := context.Background()
	time.Sleep(2 * time.Second) // settle before the idle RSS (a pace, not a condition)
	idle := rssOf(n.cmd.Process.Pid)
	var report []string
	round := 0
	var rss30 int64
	for _, count := range []int{1, 3, 10, 30} {
		var times, bare []time.Duration
		for range 5 {
			round++
			app := fmt.Sprintf("b%d", round)
			m := demoManifest(app, count)
			t0 := time.Now()
			if _, err := n.c.Apply(ctx, m, false); err != nil {
				b.Fatal(err)
			}
			n.waitReadyFast(app, count, 120*time.Second)
			times = append(times, time.Since(t0))
			if count == 30 && rss30 == 0 {
				rss30 = rssOf(n.cmd.Process.Pid)
			}
			if err := n.c.DeleteApp(ctx, app); err != nil {
				b.Fatal(err)
			}
			n.waitFor("pods gone", 120*time.Second, func() (bool, error) {
				l, err := n.c.ListPods(ctx, app, "")
				return err == nil && len(l.Items) == 0, err
			})
			bare = append(bare, bareStarts(b, n, count))
		}
		report = append(report, fmt.Sprintf("apply->all ready, %2d replicas: median %7.1f ms (min %7.1f, max %7.1f) | sum of %2d bare runc run -d: median %7.1f ms (min %7.1f, max %7.1f)",
			count, msOf(median(times)), msOf(slices.Min(times)), msOf(slices.Max(times)), count, msOf(median(bare)), msOf(slices.Min(bare)), msOf(slices.Max(bare))))
	}
	report = append(report, fmt.Sprintf("RSS of skiff server --agent: idle %.1f MB, with 30 pods %.1f MB", float64(idle)/1e6, float64(rss30)/1e6))

	// Data path: wrk through the VIP, then straight to one pod.
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk not found: apt-get install wrk")
	}
	m := demoManifest("wrk", 3)
	m.Services = map[string]*configs.ServiceSpec{"wrk": {App: "wrk", Port: 80, TargetPort: configs.PortRef{Name: "http"}}}
	if _, err := n.c.Apply(ctx, m, false); err != nil {
		b.Fatal(err)
	}
	pods := n.waitReady("wrk", "wrk", 3, 60*time.Second)
	vip := n.vip("wrk")
	for _, target := range []struct{ name, url string }{
		{"VIP (3 pods)", "http://" + vip + "/"},
		{"one pod direct", "http://" + pods[0].Status.IP + ":8080/"},
		{"VIP (3 pods) again", "http://" + vip + "/"},
		{"one pod direct again", "http://" + pods[0].Status.IP + ":8080/"},
	} {
		out, err := exec.Command("wrk", "-t2", "-c32", "-d5s", target.url).CombinedOutput()
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		rps := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindStringSubmatch(string(out))
		lat := regexp.MustCompile(`Latency\s+(\S+)`).FindStringSubmatch(string(out))
		errs := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`).FindString(string(out))
		if len(rps) < 2 || len(lat) < 2 {
			b.Fatalf("wrk output: %s", out)
		}
		report = append(report, fmt.Sprintf("wrk -t2 -c32 -d5s %-22s %9s req/s, mean latency %s %s", target.name+":", rps[1], lat[1], errs))
	}
	for _, l := range report {
		b.Log(l)
	}
	fmt.Println(strings.Join(report, "\n"))
}

// demoManifest is one app of the demo image with a readiness probe, as in
// examples/web.toml.
func demoManifest(app string, replicas int) *configs.Manifest {
	r := replicas
	return &configs.Manifest{Apps: map[string]*configs.AppSpec{app: {
		Replicas: &r,
		Containers: map[string]*configs.ContainerSpec{"http": {
			Image: demoRef, Args: []string{"-listen", ":8080"}, Ports: map[string]int{"http": 8080},
			Readiness: &configs.Probe{HTTPGet: "/healthz", Port: configs.PortRef{Name: "http"}, Period: configs.Duration(time.Second)},
		}},
	}}}
}

// waitReadyFast polls every 5 ms until the app has count ready pods.
func (n *node) waitReadyFast(app string, count int, timeout time.Duration) {
	n.tb().Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n.waitReadyNow(app, count) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	n.tb().Fatalf("%s: %d pods not ready in %s", app, count, timeout)
}

// bareStarts starts count containers with bare `runc run -d` (the demo
// image's busybox layer, sleep), one after the other, and returns the sum
// of their start times; it deletes them afterwards.
func bareStarts(b *testing.B, n *node, count int) time.Duration {
	runc, err := exec.LookPath("runc")
	if err != nil {
		b.Fatal("runc not found: apt-get install runc")
	}
	layers, _ := filepath.Glob(filepath.Join(n.dataDir, "layers", "*", "bin", "busybox"))
	if len(layers) == 0 {
		b.Fatal("no unpacked busybox layer in the node's store")
	}
	rootfs := filepath.Dir(filepath.Dir(layers[0]))
	bundle := b.TempDir()
	root := b.TempDir()
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	raw, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	_ = json.Unmarshal(raw, &spec)
	spec["root"] = map[string]any{"path": rootfs, "readonly": true}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/busybox", "sleep", "600"}
	spec["linux"].(map[string]any)["cgroupsPath"] = "/skiff-e2e-" + n.id + "/bare"
	out, _ := json.Marshal(spec)
	_ = os.WriteFile(filepath.Join(bundle, "config.json"), out, 0o644)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	var sum time.Duration
	for i := range count {
		id := "skiff-bare-" + n.id + "-" + strconv.Itoa(i)
		t0 := time.Now()
		cmd := exec.Command(runc, "--root", root, "run", "-d", "--bundle", bundle, id)
		// The detached container keeps its stdio: give it /dev/null, not
		// a pipe that Run would wait on.
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
		if err := cmd.Run(); err != nil {
			b.Fatalf("runc run %s: %v", id, err)
		}
		sum += time.Since(t0)
		spec["linux"].(map[string]any)["cgroupsPath"] = "/skiff-e2e-" + n.id + "/bare" + strconv.Itoa(i+1)
		out, _ := json.Marshal(spec)
		_ = os.WriteFile(filepath.Join(bundle, "config.json"), out, 0o644)
	}
	for i := range count {
		id := "skiff-bare-" + n.id + "-" + strconv.Itoa(i)
		if out, err := exec.Command(runc, "--root", root, "delete", "-f", id).CombinedOutput(); err != nil {
			b.Errorf("runc delete: %v %s", err, out)
		}
	}
	return sum
}

func rssOf(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
