package ui_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/containers/images/imagetest"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/nettest"
)

// The real-pod tests run a real `skiff server --agent --listen-tcp` with
// the demo image (as orchestrator/agent's e2e tests do) and drive the
// console with a real headless Chromium (Debian's chromium, scripts/deps.sh).

const demoRef = imagetest.DemoRef

var (
	buildOnce sync.Once
	skiffBin  string
	demoTar   string
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// needs fails (in CI) or skips the test when root or a tool is missing.
func needs(t testing.TB, root bool, tools ...string) {
	t.Helper()
	missing := func(msg string) {
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI must have it: scripts/deps.sh)")
		}
		t.Skip(msg)
	}
	if root && os.Geteuid() != 0 {
		missing("needs root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " not found: apt-get install " + tool)
		}
	}
}

// build builds skiff and the demo image archive once per test binary.
func build(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "skiff-ui-e2e-"); buildErr != nil {
			return
		}
		skiffBin = filepath.Join(buildDir, "skiff")
		cmd := exec.Command("go", "build", "-tags", "seccomp", "-o", skiffBin, "./cmd/skiff") // pods need the seccomp filter
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build skiff: %v\n%s", err, out)
			return
		}
		demoTar = filepath.Join(buildDir, "demo.tar")
		_, buildErr = imagetest.DemoArchive("../..", demoTar)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// node is one `skiff server --agent --listen-tcp` in the host's network
// namespace, with its own dirs, bridge, CIDRs and cgroup parent.
type node struct {
	t        testing.TB
	name     string
	dir      string
	cfgFile  string
	runDir   string
	apiAddr  string
	uiAddr   string
	nodePort int
	c        *client.Client
	cmd      *exec.Cmd
	exited   chan struct{}
	log      *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex // protects b
	b  strings.Builder
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

// hostLock serialises with the other tests that run a node in the host's
// network namespace (orchestrator/agent's e2e tests take the same lock):
// the SKIFF-* chains are the namespace's.
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

// browserNet is the network namespace the browser runs in, joined to the
// host's by a veth pair. Chromium breaks loads off with
// net::ERR_NETWORK_CHANGED when it sees the links of its namespace come and
// go, and on the host they do all the time: the node adds a veth for every
// pod it starts, and the tests of other packages that run alongside make
// their namespaces and bridges. In a namespace of its own it sees only its
// end of the pair, and reaches the node at the host's end.
type browserNet struct {
	ns     string
	hostIP string // the host's end: the node serves the browser here
}

// newBrowserNet makes the namespace; its clean-up, which runs after the
// browser's (register it first), deletes the namespace and the pair.
func newBrowserNet(t testing.TB) *browserNet {
	t.Helper()
	needs(t, true, "ip")
	id := fmt.Sprintf("%06x", randN(1<<24))
	net3 := randN(250)
	b := &browserNet{ns: "skui-" + id, hostIP: fmt.Sprintf("10.219.%d.1", net3)}
	host, inner := "skuh"+id, "skub"+id
	t.Cleanup(func() {
		for _, args := range [][]string{{"netns", "del", b.ns}, {"link", "del", host}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
				t.Errorf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})
	for _, args := range [][]string{
		{"netns", "add", b.ns},
		{"link", "add", host, "type", "veth", "peer", "name", inner, "netns", b.ns},
		{"addr", "add", b.hostIP + "/30", "dev", host},
		{"link", "set", host, "up"},
		{"-n", b.ns, "addr", "add", fmt.Sprintf("10.219.%d.2/30", net3), "dev", inner},
		// No IPv6 link-local address: it would appear a second or two
		// after the link comes up (after DAD), while the browser loads.
		{"-n", b.ns, "link", "set", inner, "addrgenmode", "none"},
		{"-n", b.ns, "link", "set", inner, "up"},
		{"-n", b.ns, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return b
}

// startNode starts a node that serves its TLS API (and the console under
// it) on host, its plain console port and gossip on loopback, and waits
// until it is Ready. Its clean-up kills
// it and runs `skiff agent --cleanup`.
func startNode(t testing.TB, host string) *node {
	t.Helper()
	needs(t, true, "iptables-save", "ip")
	build(t)
	hostLock(t)
	id := fmt.Sprintf("%06x", randN(1<<24))
	dir, err := os.MkdirTemp("", "skiff-ui-"+id+"-")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, name: "ui-" + id, dir: dir, runDir: filepath.Join(dir, "run"), apiAddr: nettest.Addr(t, host), uiAddr: nettest.Addr(t, "127.0.0.1"),
		nodePort: 30000 + int(randN(2700)), log: &lockedBuf{}, exited: make(chan struct{})}
	net3 := randN(250)
	n.cfgFile = filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf(`node_name = %q
data_dir = %q
run_dir = %q
advertise_addr = "127.0.0.1"
api_addr = %q
gossip_addr = %q
ui_addr = %q
bridge = "sku%s"
cgroup_parent = "skiff-ui-%s"
cluster_cidr = "10.215.%d.0/24"
service_cidr = "10.216.%d.0/24"
`, n.name, filepath.Join(dir, "data"), n.runDir, n.apiAddr, nettest.Addr(t, "127.0.0.1"), n.uiAddr, id, id, net3, net3)
	if err := os.WriteFile(n.cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	images := filepath.Join(dir, "data", "images")
	if err := os.MkdirAll(images, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(demoTar, filepath.Join(images, "demo.tar")); err != nil {
		t.Fatal(err)
	}
	if n.c, err = client.New("unix://"+filepath.Join(n.runDir, "skiff.sock"), ""); err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(skiffBin, "server", "--agent", "--listen-tcp", "--config", n.cfgFile)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		_ = n.cmd.Process.Kill()
		<-n.exited
		if out, err := exec.Command(skiffBin, "agent", "--cleanup", "--config", n.cfgFile).CombinedOutput(); err != nil {
			t.Errorf("skiff agent --cleanup: %v\n%s", err, out)
		}
		if t.Failed() {
			log := n.log.String()
			t.Logf("skiff log (end):\n%s", log[max(0, len(log)-6000):])
		}
		os.RemoveAll(dir)
	})
	n.waitFor("the node to be Ready", 90*time.Second, func() bool {
		nd, err := n.c.GetNode(context.Background(), n.name)
		return err == nil && nd.Ready()
	})
	return n
}

// waitFor polls cond until it holds or the timeout passes.
func (n *node) waitFor(what string, timeout time.Duration, cond func() bool) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-n.exited:
			n.t.Fatalf("skiff exited while waiting for %s", what)
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// skiff runs the CLI against the node's socket.
func (n *node) skiff(args ...string) (string, error) {
	out, err := exec.Command(skiffBin, append([]string{"--api", "unix://" + filepath.Join(n.runDir, "skiff.sock")}, args...)...).CombinedOutput()
	return string(out), err
}

// token makes a token of role with `skiff token create`: the whole token
// and its id.
func (n *node) token(role string) (full, id string) {
	n.t.Helper()
	out, err := n.skiff("token", "create", "--role", role)
	if err != nil {
		n.t.Fatalf("skiff token create: %v\n%s", err, out)
	}
	tok, err := pki.ParseToken(strings.TrimSpace(out))
	if err != nil {
		n.t.Fatal(err)
	}
	id, _, _ = strings.Cut(tok.Secret, ".")
	return strings.TrimSpace(out), id
}

// readyPods counts the app's pods that are Running, ready and not being
// deleted.
func (n *node) readyPods(app string) int {
	l, err := n.c.ListPods(context.Background(), app, "")
	if err != nil {
		return -1
	}
	k := 0
	for _, p := range l.Items {
		if p.Spec.Deleting == nil && p.Status.Ready {
			k++
		}
	}
	return k
}

// readyPod names a Running, ready pod of app that is not being deleted.
func (n *node) readyPod(app string) string {
	n.t.Helper()
	l, err := n.c.ListPods(context.Background(), app, "")
	if err != nil {
		n.t.Fatal(err)
	}
	for _, p := range l.Items {
		if p.Spec.Deleting == nil && p.Status.Ready {
			return p.Name
		}
	}
	n.t.Fatalf("no ready pod of %s", app)
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile in bn's
// namespace (chromedp speaks to it over pipes, not a port); every newTab of
// it is its own browser context (its own cookies).
func newBrowser(t testing.TB, bn *browserNet) context.Context {
	t.Helper()
	needs(t, false, "chromium")
	path, _ := exec.LookPath("chromium")
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true), // the server's certificate is its own CA's
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			// ip execs the browser in the namespace: the same process, with
			// the pipes (fds 3 and 4) and the parent-death signal kept.
			cmd.Args = append([]string{"ip", "netns", "exec", bn.ns}, cmd.Args...)
			cmd.Path = ipPath
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil { // start the browser
		cancelB()
		cancelA()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { cancelB(); cancelA() })
	// Nothing changes in the browser's namespace while it runs (its
	// clean-up runs before the browser's).
	var mon lockedBuf
	cmd := exec.Command("ip", "-n", bn.ns, "monitor", "address", "link", "route")
	cmd.Stdout, cmd.Stderr = &mon, &mon
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if s := mon.String(); s != "" {
			t.Errorf("the browser's network namespace changed while it ran (Chromium breaks loads off with net::ERR_NETWORK_CHANGED then):\n%s", s)
		}
	})
	return bctx
}

// tabLog keeps the last lines of what a tab's page did on the network and
// printed to its console, for the message of a failed wait (until).
type tabLog struct {
	mu    sync.Mutex
	lines []string
}

const tabLogLines = 200

func (l *tabLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == tabLogLines {
		l.lines = l.lines[1:]
	}
	l.lines = append(l.lines, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

func (l *tabLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// tabLogs maps a tab's context (from newTab) to its *tabLog.
var tabLogs sync.Map

// record keeps the tab's requests, their answers and failures, its live
// stream's events and its console messages.
func record(ctx context.Context, l *tabLog) error {
	return chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			l.add("request %s %s %s", ev.RequestID, ev.Request.Method, ev.Request.URL)
		case *network.EventResponseReceived:
			l.add("response %s %d", ev.RequestID, ev.Response.Status)
		case *network.EventLoadingFailed:
			l.add("failed %s %s canceled=%v", ev.RequestID, ev.ErrorText, ev.Canceled)
		case *network.EventEventSourceMessageReceived:
			l.add("stream %s event %s data %q", ev.RequestID, ev.EventName, ev.Data)
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value))
			}
			l.add("console.%s %s", ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			l.add("exception %s", ev.ExceptionDetails.Text)
		}
	})
}

// newTab opens a tab in a browser context of its own.
func newTab(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	l := &tabLog{}
	if err := record(ctx, l); err != nil {
		t.Fatalf("listen to a tab: %v", err)
	}
	tabLogs.Store(ctx, l)
	t.Cleanup(func() { tabLogs.Delete(ctx) })
	// The first run opens the tab, which lives as long as the context of
	// that run: open it here, not under a step's deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}
