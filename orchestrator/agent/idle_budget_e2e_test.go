package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// budgetWriteBytesPerSec is issue 14's idle write budget for one `skiff
// server --agent` (the skiff process and its shims together) with 30 pods
// probed every second.
const budgetWriteBytesPerSec = 1024

// budgetCPU30 and budgetCPU100 are issue 14's idle CPU budgets for the same
// node, as the CPU time of skiff and its shims (utime+stime and their
// waited-for children's) per second of the window: 1% of a core with 30
// pods probed every second, 2% with 100 pods probed every 5 s.
const (
	budgetCPU30  = 0.01
	budgetCPU100 = 0.02
)

// TestIdleBudget is a BUDGET TEST, measured over windows long enough to be
// stable (60 s each; SKIFF_IDLE_WINDOW, a Go duration, for longer): it
// fails when an idle node writes more to disk than budgetWriteBytesPerSec
// or uses more CPU than its budget, with 30 pods probed every second
// (writes and budgetCPU30) and then with 100 pods probed every 5 s
// (budgetCPU100). A real `skiff server --agent` (own data and run dirs,
// bridge, cgroup parent) runs the pods of the demo image in a network
// namespace of its own, each with an HTTP readiness probe; once they are
// ready and the node settled, the write_bytes (/proc/PID/io: bytes sent
// to the block layer) and the CPU time (/proc/PID/stat) of the skiff
// process and every shim are read at the start and the end of the
// window. Both count only skiff's own processes, so other work on the
// machine does not count; but on a loaded machine the same work costs
// more CPU time (contended caches, scheduler), never less. So a window
// over the CPU budget is measured again, up to twice, and the test fails
// when the lowest is over it: a regression shows in every window, a
// neighbour's burst rarely does in three. Takes about 3 minutes (a minute
// more for each window over its budget); needs root.
func TestIdleBudget(t *testing.T) {
	n := newPrivateNode(t)
	window := time.Minute
	if v := os.Getenv("SKIFF_IDLE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SKIFF_IDLE_WINDOW=%q: %v", v, err)
		}
		window = d
	}
	f := n.idle(30, time.Second, window)
	t.Logf("idle, 30 pods probed every 1s, %s window: %s", window, f)
	if f.writesPerSec() > budgetWriteBytesPerSec {
		t.Errorf("idle disk writes %.0f B/s, budget %d B/s (%s)", f.writesPerSec(), budgetWriteBytesPerSec, f)
	}
	n.checkCPU(f, budgetCPU30, window)

	n.deleteIdle()
	f = n.idle(100, 5*time.Second, window)
	t.Logf("idle, 100 pods probed every 5s, %s window: %s", window, f)
	n.checkCPU(f, budgetCPU100, window)
}

// checkCPU fails the test if f's CPU is over budget in f's window and in
// each of up to two more windows measured now (see TestIdleBudget).
func (n *node) checkCPU(f idleFigures, budget float64, window time.Duration) {
	n.tb().Helper()
	for range 2 {
		if f.cpu() <= budget {
			return
		}
		again := n.measure(f.pods, window)
		n.tb().Logf("over the CPU budget; again: %s", again)
		if again.cpu() < f.cpu() {
			f = again
		}
	}
	if f.cpu() > budget {
		n.tb().Errorf("idle CPU with %d pods: %.2f%% of a core (the lowest of three windows), budget %.2f%% (%s)", f.pods, 100*f.cpu(), 100*budget, f)
	}
}

// deleteIdle deletes the app of idle and waits until its pods are gone.
func (n *node) deleteIdle() {
	n.tb().Helper()
	ctx := context.Background()
	if err := n.c.DeleteApp(ctx, "idle"); err != nil {
		n.tb().Fatal(err)
	}
	n.waitFor("pods gone", 5*time.Minute, func() (bool, error) {
		l, err := n.c.ListPods(ctx, "idle", "")
		return err == nil && len(l.Items) == 0, err
	})
}

// idleFigures are what a node's skiff processes used over a window.
type idleFigures struct {
	pods       int
	window     time.Duration
	writeBytes int64
	cpuTicks   int64 // utime+stime+cutime+cstime, in clock ticks (USER_HZ, 100/s)
	skiffTicks int64 // of them, the skiff process's (the rest: shims)
	pssKB      int64 // PSS of skiff and its shims at the end
	procs      int
}

func (f idleFigures) writesPerSec() float64 { return float64(f.writeBytes) / f.window.Seconds() }
func (f idleFigures) cpu() float64          { return float64(f.cpuTicks) / 100 / f.window.Seconds() }

func (f idleFigures) String() string {
	skiff := float64(f.skiffTicks) / 100 / f.window.Seconds()
	return fmt.Sprintf("pods %d: CPU %.2f%% of a core (skiff %.2f%%, shims %.2f%%), writes %.0f B/s (%d B in %s), PSS %.1f MB over %d processes",
		f.pods, 100*f.cpu(), 100*skiff, 100*(f.cpu()-skiff), f.writesPerSec(), f.writeBytes, f.window, float64(f.pssKB)/1024, f.procs)
}

// idle runs an app of count demo pods probed every period, waits until they
// are ready and the node settled, and measures the skiff processes (the
// server and its shims: every process running the test's skiff binary)
// over window.
func (n *node) idle(count int, period, window time.Duration) idleFigures {
	n.tb().Helper()
	ctx := context.Background()
	if count > 0 {
		m := demoManifest("idle", count)
		m.Apps["idle"].Containers["http"].Readiness.Period = configs.Duration(period)
		if _, err := n.c.Apply(ctx, m, false); err != nil {
			n.tb().Fatal(err)
		}
		n.waitFor(fmt.Sprintf("%d ready pods", count), time.Duration(count)*3*time.Second+60*time.Second, func() (bool, error) {
			return n.waitReadyNow("idle", count), nil
		})
	}
	// Settle: the pods' first statuses, the cache's first write, the
	// load balancer's first sync are start-up, not idle. (A pace, not a
	// condition: nothing signals "idle".)
	time.Sleep(10 * time.Second)
	return n.measure(count, window)
}

// measure reads the skiff processes' figures over window.
func (n *node) measure(count int, window time.Duration) idleFigures {
	n.tb().Helper()
	pid := n.cmd.Process.Pid
	profiled := n.profile(count, window)
	w0, c0, s0, _, _ := skiffUsage(n.t, pid)
	t0 := time.Now()
	time.Sleep(window)
	w1, c1, s1, pss, procs := skiffUsage(n.t, pid)
	if err := <-profiled; err != nil {
		n.tb().Logf("CPU profile: %v", err)
	}
	return idleFigures{pods: count, window: time.Since(t0), writeBytes: w1 - w0, cpuTicks: c1 - c0, skiffTicks: s1 - s0, pssKB: pss, procs: procs}
}

// profile, when $SKIFF_IDLE_PPROF names a directory, takes a CPU profile
// of the skiff process over window from its unix socket's pprof into
// <dir>/idle-<id>-<count>pods.pprof; the channel gives its error at the
// end. (The profiler's own cost is in the window's figures then.)
func (n *node) profile(count int, window time.Duration) <-chan error {
	done := make(chan error, 1)
	dir := os.Getenv("SKIFF_IDLE_PPROF")
	if dir == "" {
		done <- nil
		return done
	}
	sock := filepath.Join(n.runDir, "skiff.sock")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	go func() {
		url := fmt.Sprintf("http://x/debug/pprof/profile?seconds=%d", int(window.Seconds()))
		resp, err := hc.Get(url)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("idle-%s-%dpods.pprof", n.id, count)), b, 0o644)
		}
		done <- err
	}()
	return done
}

// skiffUsage sums write_bytes, CPU time (utime+stime, and cutime+cstime of
// the children each waited for) and PSS over every process
// running the test's skiff binary: the server and its shims (skiffTicks:
// the CPU of the server, process pid, alone). A process that ends within
// the window takes its counts with it; the test's pods run for the whole
// window.
func skiffUsage(t testing.TB, pid int) (writeBytes, ticks, skiffTicks, pssKB int64, procs int) {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		exe, err := os.Readlink(filepath.Join(dir, "exe"))
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != skiffBin {
			continue
		}
		procs++
		writeBytes += procField(filepath.Join(dir, "io"), "write_bytes:")
		pssKB += procField(filepath.Join(dir, "smaps_rollup"), "Pss:")
		if b, err := os.ReadFile(filepath.Join(dir, "stat")); err == nil {
			// Fields after the command (which may hold spaces): state is
			// field 3, utime 14, stime 15, and the children it waited
			// for (iptables-restore and such) cutime 16, cstime 17.
			s := string(b)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
			if len(f) > 14 {
				var sum int64
				for _, i := range []int{11, 12, 13, 14} {
					v, _ := strconv.ParseInt(f[i], 10, 64)
					sum += v
				}
				ticks += sum
				if e.Name() == strconv.Itoa(pid) {
					skiffTicks += sum
				}
			}
		}
	}
	return writeBytes, ticks, skiffTicks, pssKB, procs
}

// procField reads the number after key in a /proc file of "key value"
// lines (0 if absent).
func procField(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == key {
			v, _ := strconv.ParseInt(fields[1], 10, 64)
			return v
		}
	}
	return 0
}

// BenchmarkIdle prints the idle figures of one `skiff server --agent`
// (the skiff process and its shims: CPU as utime+stime+cutime+cstime over the window,
// write_bytes, PSS at the end) with 0, 10 and 30 pods probed every second
// and 100 pods probed every 5 s, one after the other on the same node.
// SKIFF_IDLE_WINDOW sets the window (default 60s); SKIFF_IDLE_CLUSTER=1
// runs the server in cluster mode (listen_tcp: TLS API, gossip, the store
// over raft with one voter). SKIFF_IDLE_PODS picks the runs (see
// idleRuns), SKIFF_IDLE_BIN measures a prebuilt skiff (another tree's,
// for an A/B) and SKIFF_IDLE_PPROF=DIR takes a CPU profile over each
// window into DIR. bench/idle.sh runs it.
func BenchmarkIdle(b *testing.B) {
	n := newPrivateNode(b)
	window := time.Minute
	if v := os.Getenv("SKIFF_IDLE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("SKIFF_IDLE_WINDOW=%q: %v", v, err)
		}
		window = d
	}
	runs, err := idleRuns(os.Getenv("SKIFF_IDLE_PODS"))
	if err != nil {
		b.Fatal(err)
	}
	var lines []string
	for _, run := range runs {
		f := n.idle(run.pods, run.period, window)
		lines = append(lines, fmt.Sprintf("probe period %s, %s", run.period, f))
		fmt.Println(lines[len(lines)-1])
		if run.pods > 0 {
			n.deleteIdle()
		}
	}
	for _, l := range lines {
		b.Log(l)
	}
}

// idleRun is one of BenchmarkIdle's measurements: pods probed every period.
type idleRun struct {
	pods   int
	period time.Duration
}

// idleRuns parses $SKIFF_IDLE_PODS, a comma-separated list of pod counts,
// each with an optional probe period ("0,30" or "30@1s,100@5s"; 1s if none);
// empty is BenchmarkIdle's default 0, 10, 30 @ 1s and 100 @ 5s.
func idleRuns(v string) ([]idleRun, error) {
	if v == "" {
		return []idleRun{{0, time.Second}, {10, time.Second}, {30, time.Second}, {100, 5 * time.Second}}, nil
	}
	var out []idleRun
	for _, f := range strings.Split(v, ",") {
		count, period, _ := strings.Cut(strings.TrimSpace(f), "@")
		r := idleRun{period: time.Second}
		var err error
		if r.pods, err = strconv.Atoi(count); err != nil || r.pods < 0 {
			return nil, fmt.Errorf("SKIFF_IDLE_PODS=%q: %q is not a pod count", v, count)
		}
		if period != "" {
			if r.period, err = time.ParseDuration(period); err != nil || r.period <= 0 {
				return nil, fmt.Errorf("SKIFF_IDLE_PODS=%q: %q is not a probe period", v, period)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// newPrivateNode starts `skiff server --agent` in a network namespace of
// its own (its bridge, iptables rules and pods live there), with its own
// data and run dirs and cgroup parent, and waits until its node is Ready.
// Unlike newNode it shares nothing with the host's network, so it needs
// no host lock. Clean-up: kill, `skiff agent --cleanup`, the namespace
// deleted, no mount or cgroup left.
func newPrivateNode(t testing.TB) *node {
	t.Helper()
	requireRoot(t)
	build(t)
	id := fmt.Sprintf("%06x", randN(1<<24))
	ns := "skidle-" + id
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	// Should a step below fail before the full clean-up is registered:
	// these run last, and find nothing left when it ran.
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	nsPath := "/run/netns/" + ns
	dir, err := os.MkdirTemp("", "skiff-idle-"+id+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &node{t: t, id: id, dir: dir, dataDir: filepath.Join(dir, "data"), runDir: filepath.Join(dir, "run"),
		bridge: "ski" + id, log: &lockedBuf{}}
	n.cfgFile = filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf(`node_name = "e2e-%s"
data_dir = %q
run_dir = %q
advertise_addr = "127.0.0.1"
bridge = %q
cgroup_parent = "skiff-idle-%s"
cluster_cidr = "10.213.1.0/24"
service_cidr = "10.214.1.0/24"
`, id, n.dataDir, n.runDir, n.bridge, id)
	if os.Getenv("SKIFF_IDLE_CLUSTER") == "1" { // the netns is the node's own: these ports are free
		cfg += "listen_tcp = true\napi_addr = \"127.0.0.1:7443\"\ngossip_addr = \"127.0.0.1:7946\"\n"
	}
	if err := os.WriteFile(n.cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(n.dataDir, "images"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(demoTar, filepath.Join(n.dataDir, "images", "demo.tar")); err != nil {
		t.Fatal(err)
	}
	if n.c, err = client.New("unix://"+filepath.Join(n.runDir, "skiff.sock"), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.kill()
		out, err := exec.Command("nsenter", "--net="+nsPath, skiffBin, "agent", "--cleanup", "--config", n.cfgFile).CombinedOutput()
		if err != nil {
			t.Errorf("skiff agent --cleanup: %v\n%s", err, out)
		}
		if m := mountsUnder(dir); len(m) > 0 {
			t.Errorf("mounts left: %v", m)
		}
		if cg, _ := filepath.Glob("/sys/fs/cgroup/*/skiff-idle-" + id); len(cg) > 0 {
			t.Errorf("cgroups left: %v", cg)
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", ns, err, out)
		}
		if strings.Contains(n.log.String(), "WARNING: DATA RACE") {
			t.Errorf("data race in skiff's log:\n%s", n.log.String())
		}
		if t.Failed() {
			t.Logf("skiff log ends:\n%s", tail(n.log.String(), 40))
		}
		os.RemoveAll(dir)
	})
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	// nsenter, not ip netns exec, which would hide /sys/fs/cgroup.
	cmd := exec.Command("nsenter", "--net="+nsPath, skiffBin, "server", "--agent", "--config", n.cfgFile)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(n.exited) }()
	n.waitFor("node ready", 60*time.Second, func() (bool, error) {
		nd, err := n.c.GetNode(context.Background(), "e2e-"+n.id)
		return err == nil && nd.Ready(), nil
	})
	return n
}
