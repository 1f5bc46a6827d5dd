package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// demoRef is the image examples/web.toml runs.
const demoRef = imagetest.DemoRef

var (
	buildOnce sync.Once
	skiffBin  string
	demoTar   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (CI runs as root)")
		}
		t.Skip("needs root")
	}
	for _, tool := range []string{"iptables-save", "iptables-restore", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install iptables iproute2", tool)
		}
	}
}

// build builds skiff and the demo image archive once per test binary.
func build(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "skiff-agent-e2e-")
		if buildErr != nil {
			return
		}
		skiffBin = filepath.Join(buildDir, "skiff")
		if bin := os.Getenv("SKIFF_IDLE_BIN"); bin != "" {
			// BenchmarkIdle of another tree's build (A/B): a copy, so
			// that skiffUsage tells this run's processes by their path.
			if buildErr = copyExecutable(bin, skiffBin); buildErr != nil {
				return
			}
		} else {
			args := []string{"build", "-tags", "seccomp", "-o", skiffBin} // pods need the seccomp filter
			if raceEnabled {
				args = append(args, "-race")
			}
			cmd := exec.Command("go", append(args, "./cmd/skiff")...)
			cmd.Dir = "../.."
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build skiff: %v\n%s", err, out)
				return
			}
		}
		demoTar = filepath.Join(buildDir, "demo.tar")
		_, buildErr = imagetest.DemoArchive("../..", demoTar)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// copyExecutable copies the file at from to a new executable at to.
func copyExecutable(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("SKIFF_IDLE_BIN: %w", err)
	}
	return os.WriteFile(to, b, 0o755)
}

// node is one `skiff server --agent` process with its own dirs, bridge,
// CIDRs and cgroup parent.
type node struct {
	t        testing.TB // the test that made n: its clean-ups are t's
	cur      testing.TB // the subtest that runs now (run), or nil
	id       string
	dir      string
	cfgFile  string
	dataDir  string
	runDir   string
	bridge   string
	nodePort int
	// serviceNet is the first three octets of the service CIDR ("10.214.7.").
	serviceNet string
	c          *client.Client
	cmd        *exec.Cmd
	exited     chan struct{}
	log        *lockedBuf
	// notes are the sd_notify messages of the last start, one a line.
	notes *lockedBuf
}

// tb is the test that n's waits and starts fail: the running subtest
// (run), else the test that made n.
func (n *node) tb() testing.TB {
	if n.cur != nil {
		return n.cur
	}
	return n.t
}

// run runs f as t's subtest name, with n's waits and starts failing that
// subtest: a FailNow of the parent test from within a subtest would not
// stop the subtest but leave the confusing "subtest may have called
// FailNow on a parent test".
func (n *node) run(t *testing.T, name string, f func(t *testing.T)) bool {
	return t.Run(name, func(t *testing.T) {
		prev := n.cur
		n.cur = t
		defer func() { n.cur = prev }()
		f(t)
	})
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func randN(n uint32) uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:]) % n
}

// newNode prepares a node (the demo image dropped in its data dir) and
// registers its clean-up: kill, `skiff agent --cleanup`, and a check that
// iptables is as it was.
func newNode(t testing.TB) *node {
	t.Helper()
	requireRoot(t)
	build(t)
	hostLock(t)
	before := iptablesSave(t)
	id := fmt.Sprintf("%06x", randN(1<<24))
	dir, err := os.MkdirTemp("", "skiff-e2e-"+id+"-")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, id: id, dir: dir, dataDir: filepath.Join(dir, "data"), runDir: filepath.Join(dir, "run"),
		bridge: "ske" + id, nodePort: 30000 + int(randN(2700)), log: &lockedBuf{}}
	n.cfgFile = filepath.Join(dir, "config.toml")
	net3 := randN(250)
	cfg := fmt.Sprintf(`node_name = "e2e-%s"
data_dir = %q
run_dir = %q
advertise_addr = "127.0.0.1"
bridge = %q
cgroup_parent = "skiff-e2e-%s"
cluster_cidr = "10.213.%d.0/24"
service_cidr = "10.214.%d.0/24"
`, id, n.dataDir, n.runDir, n.bridge, id, net3, net3)
	n.serviceNet = fmt.Sprintf("10.214.%d.", net3)
	if err := os.WriteFile(n.cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(n.dataDir, "images"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(demoTar, filepath.Join(n.dataDir, "images", "demo.tar")); err != nil {
		t.Fatal(err)
	}
	n.c, err = client.New("unix://"+filepath.Join(n.runDir, "skiff.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.kill()
		out, err := exec.Command(skiffBin, "agent", "--cleanup", "--config", n.cfgFile).CombinedOutput()
		if err != nil {
			t.Errorf("skiff agent --cleanup: %v\n%s", err, out)
		}
		if after := iptablesSave(t); after != before {
			t.Errorf("iptables differ after cleanup:\n%s", lineDiff(before, after))
		}
		if out, _ := exec.Command("ip", "link", "show", n.bridge).CombinedOutput(); !strings.Contains(string(out), "does not exist") {
			t.Errorf("bridge %s left: %s", n.bridge, out)
		}
		if m := mountsUnder(dir); len(m) > 0 {
			t.Errorf("mounts left: %v", m)
		}
		if cg, _ := filepath.Glob("/sys/fs/cgroup/*/skiff-e2e-" + id); len(cg) > 0 {
			t.Errorf("cgroups left: %v", cg)
		}
		if strings.Contains(n.log.String(), "WARNING: DATA RACE") {
			t.Errorf("data race in skiff's log")
		}
		if t.Failed() {
			f := filepath.Join(os.TempDir(), "skiff-e2e-"+id+".log")
			_ = os.WriteFile(f, []byte(n.log.String()), 0o644)
			t.Logf("skiff log in %s; its end:\n%s", f, tail(n.log.String(), 40))
		}
		os.RemoveAll(dir)
	})
	return n
}

// start starts the server with its agent and waits for its READY=1
// (sd_notify, sent once the agent's first sync converged) and the node to
// be Ready.
func (n *node) start() {
	n.tb().Helper()
	// READY=1 comes over NOTIFY_SOCKET as under systemd (Type=notify).
	sock := filepath.Join(n.dir, fmt.Sprintf("notify-%d.sock", time.Now().UnixNano()))
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		n.tb().Fatal(err)
	}
	// Kept open for the test (WATCHDOG=1 comes later); closed at its end.
	n.t.Cleanup(func() { notify.Close() })
	readyc := make(chan string, 1)
	notes := &lockedBuf{}
	n.notes = notes
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := notify.ReadFromUnix(buf)
			if err != nil {
				return
			}
			notes.Write(append(buf[:k:k], '\n'))
			if strings.Contains(string(buf[:k]), "READY=1") {
				select {
				case readyc <- string(buf[:k]):
				default:
				}
			}
		}
	}()
	cmd := exec.Command(skiffBin, "server", "--agent", "--config", n.cfgFile, "--log-level", "debug")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	// Its own process group: a kill of the test does not reach the
	// containers' shims, which are in their own sessions anyway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.tb().Fatal(err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(n.exited) }()
	select {
	case <-readyc:
	case <-n.exited:
		n.tb().Fatalf("skiff exited before READY:\n%s", tail(n.log.String(), 60))
	case <-time.After(60 * time.Second):
		n.tb().Fatalf("no READY=1 from skiff in 60s:\n%s", tail(n.log.String(), 60))
	}
	n.waitFor("node ready", 30*time.Second, func() (bool, error) {
		nd, err := n.c.GetNode(context.Background(), "e2e-"+n.id)
		if err != nil {
			return false, nil
		}
		return nd.Ready(), nil
	})
}

// kill sends SIGKILL to the skiff process (not to its containers).
func (n *node) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}

// skiff runs the CLI against the node.
func (n *node) skiff(args ...string) (string, error) {
	cmd := exec.Command(skiffBin, append([]string{"--api", "unix://" + filepath.Join(n.runDir, "skiff.sock")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitFor polls cond until it holds or the timeout passes.
func (n *node) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	n.tb().Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if err != nil {
			lastErr = err
		}
		if ok {
			return
		}
		if n.cmd != nil {
			select {
			case <-n.exited:
				n.tb().Fatalf("skiff exited while waiting for %s:\n%s", what, tail(n.log.String(), 80))
			default:
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.tb().Fatalf("timed out waiting for %s (last error: %v)", what, lastErr)
}

// pods lists the app's pods that are not being deleted.
func (n *node) pods(app string) []api.Pod {
	l, err := n.c.ListPods(context.Background(), app, "")
	if err != nil {
		return nil
	}
	var out []api.Pod
	for _, p := range l.Items {
		if p.Spec.Deleting == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// waitReady waits until the app has exactly count pods, all Running and
// ready, and the service's endpoints list them all.
func (n *node) waitReady(app, svc string, count int, timeout time.Duration) []api.Pod {
	n.tb().Helper()
	var pods []api.Pod
	n.waitFor(fmt.Sprintf("%d ready pods of %s", count, app), timeout, func() (bool, error) {
		all, err := n.c.ListPods(context.Background(), app, "")
		if err != nil || len(all.Items) != count {
			return false, err
		}
		pods = all.Items
		for _, p := range pods {
			if p.Spec.Deleting != nil || p.Status.Phase != api.PodRunning || !p.Status.Ready {
				return false, nil
			}
		}
		if svc == "" {
			return true, nil
		}
		ep, err := n.c.GetEndpoints(context.Background(), svc)
		return err == nil && len(ep.Endpoints) == count, err
	})
	return pods
}

// vip returns the cluster IP:port of a service.
func (n *node) vip(svc string) string {
	n.tb().Helper()
	s, err := n.c.GetService(context.Background(), svc)
	if err != nil {
		n.tb().Fatal(err)
	}
	return fmt.Sprintf("%s:%d", s.Status.ClusterIP, s.Spec.Port)
}

// httpClient makes a new connection per request, as a stream of new
// clients would.
var httpClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

func get(url string) (string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("http %d", resp.StatusCode)
	}
	return string(b), err
}

// looper requests url in a loop until stopped, counting failures.
type looper struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	ok, fail int
	errs     []string
}

func loop(url string) *looper {
	l := &looper{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			_, err := get(url)
			l.mu.Lock()
			if err != nil {
				l.fail++
				if len(l.errs) < 5 {
					l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
			} else {
				l.ok++
			}
			l.mu.Unlock()
			time.Sleep(5 * time.Millisecond) // pace, not a condition
		}
	}()
	return l
}

func (l *looper) end() (ok, fail int, errs []string) {
	close(l.stop)
	<-l.done
	return l.ok, l.fail, l.errs
}

// hostLock serialises the nodes of concurrent test runs on this host: each
// node runs in the host's network namespace, and the SKIFF-* chains are
// the namespace's, so two nodes there would rewrite each other's rules.
func hostLock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "skiff-agent-e2e.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

var counterRE = regexp.MustCompile(`\[\d+:\d+\]`)

// iptablesSave returns both tables' rules without counters and comments.
func iptablesSave(t testing.TB) string {
	t.Helper()
	var out []string
	for _, table := range []string{"nat", "filter"} {
		b, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Fatalf("iptables-save: %v", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "#") || line == "" {
				continue
			}
			out = append(out, counterRE.ReplaceAllString(line, ""))
		}
	}
	return strings.Join(out, "\n")
}

// skiffRules returns the rules that mention this node's bridge or SKIFF-
// chains.
func lineDiff(a, b string) string {
	in := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		in[l]++
	}
	var d []string
	for _, l := range strings.Split(b, "\n") {
		if in[l] > 0 {
			in[l]--
			continue
		}
		d = append(d, "+ "+l)
	}
	for l, c := range in {
		for range c {
			d = append(d, "- "+l)
		}
	}
	return strings.Join(d, "\n")
}

func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
