package clustertest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestColdBootWithoutServer: a node whose server is unreachable reboots
// (every skiff process, shim and container of the node killed, its pod
// network namespaces unmounted, its cgroups removed, its run dir emptied,
// its bridge and iptables rules gone: only the data dir is kept) and its
// agent starts again with the server still cut off. From its local cache it
// brings every pod back with the IP it had, and programs its load
// balancer: each pod answers at its old IP and the service VIP answers
// from them. When the server is reachable again the node reconciles
// without restarting a pod that is still wanted: the same pods, the same
// container processes. (The grace before a down node's pods are replaced
// is long here, so that they are all still wanted.)
func TestColdBootWithoutServer(t *testing.T) {
	c := New(t, Options{Nodes: 2, NodeGrace: 10 * time.Minute})
	const node = 1
	c.Apply(DemoManifest(8))
	pods := c.WaitAppReady("web", 8, appTimeout)
	vip := c.VIP("web")
	mine := c.podsOn(pods)[node]
	if len(mine) == 0 {
		t.Fatalf("no pod on node %d: %s", node, podSummary(pods))
	}
	c.waitCacheHolds(node, mine)

	c.Cut(0)
	took := c.coldBoot(node, mine, vip)
	t.Logf("cold boot of node %d with the server cut off: its %d pods answer at their old IPs, and the VIP from them, %.2fs after the agent started", node, len(mine), took.Seconds())

	booted := c.AppProcs(node, "app")
	sort.Strings(booted)
	if len(booted) != len(mine) {
		t.Fatalf("node %d runs %d app processes after the cold boot, want %d: %v", node, len(booted), len(mine), booted)
	}
	c.Heal(0)
	healed := time.Now()
	c.WaitNodeReady(node, 60*time.Second)
	// Reconciled: the server lists the same pods on the node, ready, with
	// the processes that the cold boot started (the agent reported them).
	c.WaitFor("the node's pods reported ready with the cold boot's processes", 60*time.Second, func() (bool, error) {
		l, err := c.Pods("web")
		if err != nil {
			return false, err
		}
		on := c.podsOn(l)[node]
		if !slices.Equal(podNames(on), podNames(mine)) {
			return false, fmt.Errorf("pods on node %d: %v, want %v", node, podNames(on), podNames(mine))
		}
		var pids []string
		for _, p := range on {
			if !p.Status.Ready {
				return false, fmt.Errorf("pod %s not ready", p.Name)
			}
			for _, cs := range p.Status.Containers {
				pids = append(pids, fmt.Sprint(cs.PID))
			}
		}
		sort.Strings(pids)
		return slices.Equal(pids, booted), fmt.Errorf("reported pids %v, running %v", pids, booted)
	})
	after := c.AppProcs(node, "app")
	sort.Strings(after)
	if !slices.Equal(after, booted) {
		t.Errorf("the reconcile restarted pods: app processes %v before the heal, %v after", booted, after)
	}
	t.Logf("node %d Ready and reconciled %.1fs after the heal, no pod restarted", node, time.Since(healed).Seconds())
}

// BenchmarkColdBoot measures a cold boot of a node with 10 pods (images
// present, the server cut off): from the agent's start to every pod
// answering at its old IP and the VIP answering from them. Three rounds;
// it prints the median and the spread.
func BenchmarkColdBoot(b *testing.B) {
	c := New(b, Options{Nodes: 2, NodeGrace: 10 * time.Minute})
	const node = 1
	c.Apply(DemoManifest(20))
	pods := c.WaitAppReady("web", 20, appTimeout)
	vip := c.VIP("web")
	mine := c.podsOn(pods)[node]
	c.waitCacheHolds(node, mine)
	var secs []float64
	for range 3 {
		c.Cut(0)
		secs = append(secs, c.coldBoot(node, mine, vip).Seconds())
		c.Heal(0)
		c.WaitNodeReady(node, 60*time.Second)
		c.WaitAppReady("web", 20, appTimeout)
	}
	sort.Float64s(secs)
	line := fmt.Sprintf("cold boot, %d pods on the node, server cut off: agent start -> every pod and the VIP answering: median %.2fs (min %.2fs, max %.2fs, %d rounds)",
		len(mine), median(secs), secs[0], secs[len(secs)-1], len(secs))
	b.Log(line)
	fmt.Println(line)
}

// waitCacheHolds waits until node i's agent cache holds the pods and the
// endpoints of their IPs (the cache is saved asynchronously, and a cache
// without the endpoints programs no service rule).
func (c *Cluster) waitCacheHolds(i int, pods []api.Pod) {
	c.t.Helper()
	cacheFile := filepath.Join(c.Nodes[i].DataDir, "agent-cache.json")
	c.WaitFor("the agent's cache holding its pods and their endpoints", 30*time.Second, func() (bool, error) {
		b, err := os.ReadFile(cacheFile)
		if err != nil {
			return false, err
		}
		var cached struct {
			Pods      []api.Pod       `json:"pods"`
			Endpoints []api.Endpoints `json:"endpoints"`
		}
		if err := json.Unmarshal(b, &cached); err != nil {
			return false, err
		}
		have := map[string]bool{}
		for _, p := range cached.Pods {
			have[p.Name] = true
		}
		for _, e := range cached.Endpoints {
			for _, ep := range e.Endpoints {
				have[ep.IP] = true
			}
		}
		for _, p := range pods {
			if !have[p.Name] || !have[p.Status.IP] {
				return false, fmt.Errorf("%s lacks pod %s or its endpoint %s", cacheFile, p.Name, p.Status.IP)
			}
		}
		return true, nil
	})
}

// coldBoot reboots node i as a power cut would and starts its agent again
// (the caller cuts the server off first); it returns how long after the
// agent's start the last of pods answered at its IP from the node and the
// VIP answered from one of them. Each target is polled on its own with a
// short timeout, so that a slow failure does not delay the next look.
func (c *Cluster) coldBoot(i int, pods []api.Pod, vip string) time.Duration {
	c.t.Helper()
	c.powerOff(i)
	c.StartProcess(i, c.agentArgs(c.Nodes[i], c.Token())...)
	started := time.Now()
	ns := c.Nodes[i].NetnsPath()
	mine := map[string]bool{}
	for _, p := range pods {
		mine[p.Name] = true
	}
	type answer struct {
		what string
		at   time.Time
	}
	answers := make(chan answer, len(pods)+1)
	stop := make(chan struct{})
	defer close(stop)
	poll := func(what, addr string, ok func(body string) bool) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if body, err := GetIn(ns, addr, 300*time.Millisecond); err == nil && ok(body) {
				answers <- answer{what, time.Now()}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, p := range pods {
		go poll("pod "+p.Name+" at "+p.Status.IP, p.Status.IP+":8080", func(string) bool { return true })
	}
	go poll("the VIP from one of the node's pods", vip, func(body string) bool {
		return mine[strings.TrimSpace(strings.TrimPrefix(body, "hello from "))]
	})
	var last time.Time
	waiting := len(pods) + 1
	timeout := time.After(60 * time.Second)
	for waiting > 0 {
		select {
		case a := <-answers:
			waiting--
			if a.at.After(last) {
				last = a.at
			}
		case <-timeout:
			c.t.Fatalf("node %d: %d of %d pods and the VIP not answering 60s after a cold boot", i, waiting, len(pods)+1)
		}
	}
	return last.Sub(started)
}

// powerOff leaves node i as a reboot would: its skiff process, its shims
// and its containers killed (SIGKILL), every mount under its dirs (the
// pods' netns and root filesystems) gone, its cgroups removed, its run dir
// empty, its bridge deleted and its iptables rules flushed. Only the data
// dir stays.
func (c *Cluster) powerOff(i int) {
	c.t.Helper()
	n := c.Nodes[i]
	c.Kill(i)
	// Shims run the skiff binary with a spec under the node's run dir.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		procs := procsInCgroup(n.CgroupParent)
		procs = append(procs, procsMentioning(n.RunDir)...)
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d: processes survive SIGKILL: %v", i, procs)
		}
		for _, p := range procs {
			var pid int
			if _, err := fmt.Sscan(p, &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	mounts := mountsUnder(n.Dir)
	sort.Slice(mounts, func(a, b int) bool { return len(mounts[a]) > len(mounts[b]) })
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			c.t.Fatalf("node %d: unmount %s: %v", i, m, err)
		}
	}
	for _, d := range cgroupDirs(n.CgroupParent) {
		removeCgroup(c.t, d)
	}
	if err := os.RemoveAll(n.RunDir); err != nil {
		c.t.Fatal(err)
	}
	if err := os.MkdirAll(n.RunDir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	bridge := fmt.Sprintf("skb%d%s", n.Index, c.id)
	if err := ipIn(n.Name, "link", "del", bridge); err != nil {
		c.t.Fatalf("node %d: %v", i, err)
	}
	for _, table := range []string{"nat", "filter", "mangle"} {
		for _, op := range []string{"-F", "-X"} {
			if out, err := c.Exec(i, "iptables", "-t", table, op); err != nil {
				c.t.Fatalf("node %d: iptables -t %s %s: %v\n%s", i, table, op, err, out)
			}
		}
	}
	if m := mountsUnder(n.Dir); len(m) > 0 {
		c.t.Fatalf("node %d: mounts left after the power-off: %v", i, m)
	}
}

// procsMentioning lists the live processes whose command line holds s.
func procsMentioning(s string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), s) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && zombie(string(st)) {
			continue
		}
		out = append(out, e.Name())
	}
	return out
}

// removeCgroup removes the cgroup directory dir and every one below it,
// deepest first (their processes must be gone).
func removeCgroup(t testing.TB, dir string) {
	t.Helper()
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for k := len(dirs) - 1; k >= 0; k-- {
		// A cgroup whose last process just died may be busy a moment.
		var err error
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if err = syscall.Rmdir(dirs[k]); err == nil || os.IsNotExist(err) {
				break
			}
		}
		if err != nil && !os.IsNotExist(err) {
			t.Fatalf("remove cgroup %s: %v", dirs[k], err)
		}
	}
}
