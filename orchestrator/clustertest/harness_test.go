package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/client"
)

// Options shape a test cluster.
type Options struct {
	// Nodes is how many nodes (default 3): node 0 is `skiff server
	// --agent`, the others are agents.
	Nodes int
	// GossipProfile is the nodes' gossip.profile (default "edge").
	GossipProfile string
	// NodeGrace is the nodes' node_grace (default 3s).
	NodeGrace time.Duration
	// NoStart leaves every node stopped: the test starts them with Start
	// (node 0 first) or StartAgent.
	NoStart bool
	// ReadyTimeout bounds the wait for a started node to be Ready in the
	// server's view (default 45s).
	ReadyTimeout time.Duration
	// ExtraConfig is appended to every node's config.toml.
	ExtraConfig string
	// ServerTables, if set, returns TOML tables (such as [lb]) appended
	// to node 0's config.toml; net3 is the node subnet's first three
	// octets ("10.99.17"), for addresses on the test bridge.
	ServerTables func(net3 string) string
}

// Cluster is a test cluster; its methods fail the test on errors. It is
// safe for use by one test goroutine (the HTTP helpers may be called from
// several).
type Cluster struct {
	t     testing.TB
	opts  Options
	id    string // random suffix of every name
	dir   string // the cluster's temp dir
	sw    string // the switch netns name
	net3  string // first three octets of the node subnet, "10.99.17"
	Nodes []*Node

	mu      sync.Mutex // guards token and clients
	clients map[int]*client.Client
	token   string
}

// Node is one node of a Cluster.
type Node struct {
	// Index is the node's position in Cluster.Nodes.
	Index int
	// Name is the node name and the name of its netns.
	Name string
	// Addr is the node's address on the test bridge.
	Addr string
	// Dir holds Config, DataDir, RunDir.
	Dir, Config, DataDir, RunDir string
	// CgroupParent is the node's cgroup_parent.
	CgroupParent string
	// Log is the file the node's skiff writes to (appended across restarts).
	Log string

	c    *Cluster
	proc *proc // nil while stopped
}

// proc is a running skiff process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's result, set before exited closes
}

// NetnsPath is the bind mount of the node's netns.
func (n *Node) NetnsPath() string { return "/run/netns/" + n.Name }

// Socket is the node's API socket (agents may not serve one).
func (n *Node) Socket() string { return filepath.Join(n.RunDir, "skiff.sock") }

// Running reports whether the node's skiff process runs.
func (n *Node) Running() bool {
	if n.proc == nil {
		return false
	}
	select {
	case <-n.proc.exited:
		return false
	default:
		return true
	}
}

// PID is the node's skiff process id, 0 when stopped.
func (n *Node) PID() int {
	if !n.Running() {
		return 0
	}
	return n.proc.cmd.Process.Pid
}

func randN(n uint32) uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:]) % n
}

// RequireRoot fails the test when not root in CI (CI=true) and skips it
// otherwise, and fails naming the package to install when a tool is
// missing.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (CI runs as root)")
		}
		t.Skip("needs root")
	}
	for tool, pkg := range map[string]string{"ip": "iproute2", "nsenter": "util-linux", "iptables-save": "iptables", "go": "golang (Go 1.26 in PATH)"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install %s", tool, pkg)
		}
	}
}

// New builds skiff (once per test binary) and the demo image, makes the
// namespaces, links and per-node dirs and configs, registers the clean-up,
// and unless opts.NoStart starts node 0 then the agents and waits until
// every node is Ready in the server's view.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	RequireRoot(t)
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.Nodes > 200 {
		t.Fatalf("clustertest: %d nodes is too many", opts.Nodes)
	}
	if opts.GossipProfile == "" {
		opts.GossipProfile = "edge"
	}
	if opts.NodeGrace == 0 {
		opts.NodeGrace = 3 * time.Second
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 45 * time.Second
	}
	b := build(t)
	id := fmt.Sprintf("%05x", randN(1<<20))
	dir, err := os.MkdirTemp("", "skiff-clustertest-"+id+"-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, opts: opts, id: id, dir: dir, sw: "skt-" + id + "-sw",
		net3: fmt.Sprintf("10.99.%d", randN(256))}
	t.Cleanup(c.cleanup)
	if err := c.makeSwitch(); err != nil {
		t.Fatal(err)
	}
	for i := range opts.Nodes {
		n := &Node{Index: i, Name: fmt.Sprintf("skt-%s-n%d", id, i), Addr: fmt.Sprintf("%s.%d", c.net3, i+1), c: c}
		n.Dir = filepath.Join(dir, fmt.Sprintf("n%d", i))
		n.Config = filepath.Join(n.Dir, "config.toml")
		n.DataDir = filepath.Join(n.Dir, "data")
		n.RunDir = filepath.Join(n.Dir, "run")
		n.CgroupParent = fmt.Sprintf("skt-%s-n%d", id, i)
		n.Log = filepath.Join(dir, fmt.Sprintf("n%d.log", i))
		c.Nodes = append(c.Nodes, n)
		if err := c.makeNode(n); err != nil {
			t.Fatal(err)
		}
		if err := c.writeConfig(n); err != nil {
			t.Fatal(err)
		}
		images := filepath.Join(n.DataDir, "images")
		if err := os.MkdirAll(images, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(b.demoTar, filepath.Join(images, "skiff-demo.tar")); err != nil {
			t.Fatal(err)
		}
	}
	if !opts.NoStart {
		for i := range c.Nodes {
			c.Start(i)
		}
	}
	return c
}

// writeConfig writes the node's config.toml.
func (c *Cluster) writeConfig(n *Node) error {
	cfg := fmt.Sprintf(`node_name = %q
data_dir = %q
run_dir = %q
advertise_addr = %q
api_addr = "%s:7443"
gossip_addr = "%s:7946"
bridge = "skb%d%s"
cgroup_parent = %q
cluster_cidr = "10.210.0.0/16"
service_cidr = "10.211.0.0/24"
node_grace = %q

[gossip]
profile = %q
`, n.Name, n.DataDir, n.RunDir, n.Addr, n.Addr, n.Addr, n.Index, c.id, n.CgroupParent,
		c.opts.NodeGrace.String(), c.opts.GossipProfile)
	if c.opts.ExtraConfig != "" {
		// Top-level keys must come before the [gossip] table.
		cfg = c.opts.ExtraConfig + "\n" + cfg
	}
	if n.Index == 0 && c.opts.ServerTables != nil {
		cfg += "\n" + c.opts.ServerTables(c.net3) + "\n"
	}
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(n.Config, []byte(cfg), 0o600)
}

// Server is node 0, the one that runs `skiff server --agent`.
func (c *Cluster) Server() *Node { return c.Nodes[0] }

// Client is an API client of node i's unix socket (agents may not serve
// one: use node 0's for cluster-wide reads). It is made once per node and
// reused: a client per call would leave a keep-alive connection each.
func (c *Cluster) Client(i int) *client.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl := c.clients[i]; cl != nil {
		return cl
	}
	cl, err := client.New("unix://"+c.Nodes[i].Socket(), "")
	if err != nil {
		c.t.Fatal(err)
	}
	if c.clients == nil {
		c.clients = map[int]*client.Client{}
	}
	c.clients[i] = cl
	c.t.Cleanup(cl.CloseIdleConnections)
	return cl
}

// Token returns the join token of node 0 (`skiff token`), read once node 0
// has started.
func (c *Cluster) Token() string {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" {
		return c.token
	}
	var tok string
	c.WaitFor("the server's join token", 30*time.Second, func() (bool, error) {
		out, err := exec.Command(bin.skiff, "token", "--data-dir", c.Nodes[0].DataDir).CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("skiff token: %w: %s", err, strings.TrimSpace(string(out)))
		}
		tok = strings.TrimSpace(string(out))
		return tok != "", nil
	})
	c.token = tok
	return tok
}

// serverArgs are the arguments of node 0's skiff.
func (c *Cluster) serverArgs(n *Node) []string {
	args := []string{"server", "--agent", "--config", n.Config, "--log-level", "debug"}
	if bin.listenTCPFlag {
		// Until the cluster wiring serves TLS on api_addr by default.
		args = append(args, "--listen-tcp")
	}
	return args
}

// agentArgs are the arguments of an agent's skiff with this token: the
// token goes in a file of the node's (0600), never in argv.
func (c *Cluster) agentArgs(n *Node, token string) []string {
	file := filepath.Join(n.Dir, "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return []string{"agent", "--server", c.Nodes[0].Addr + ":7443", "--token-file", file,
		"--config", n.Config, "--log-level", "debug"}
}

// Start starts node i (the server for 0, an agent with the server's token
// otherwise) and waits until it is Ready in the server's view.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	n := c.Nodes[i]
	if i == 0 {
		c.StartProcess(i, c.serverArgs(n)...)
	} else {
		c.StartProcess(i, c.agentArgs(n, c.Token())...)
	}
	c.WaitNodeReady(i, c.opts.ReadyTimeout)
}

// StartAgent starts node i as an agent joining with token and does not
// wait: see WaitExit and WaitNodeReady.
func (c *Cluster) StartAgent(i int, token string) {
	c.t.Helper()
	c.StartProcess(i, c.agentArgs(c.Nodes[i], token)...)
}

// Restart is Kill (SIGKILL, containers keep running) then Start.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Kill(i)
	c.Start(i)
}

// StartProcess starts `skiff args...` in node i's netns with its output
// appended to the node's log, and returns at once.
func (c *Cluster) StartProcess(i int, args ...string) {
	c.t.Helper()
	n := c.Nodes[i]
	if n.Running() {
		c.t.Fatalf("clustertest: node %d already runs", i)
	}
	f, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s clustertest: skiff %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	// nsenter execs skiff (no --fork), so the pid is skiff's.
	cmd := exec.Command("nsenter", append([]string{"--net=" + n.NetnsPath(), bin.skiff}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that a ^C of the test does not reach it
	// before the clean-up does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatalf("start node %d: %v", i, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	n.proc = p
}

// WaitExit waits up to timeout for node i's process to exit and returns its
// exit code; it fails the test if the process still runs.
func (c *Cluster) WaitExit(i int, timeout time.Duration) int {
	c.t.Helper()
	n := c.Nodes[i]
	if n.proc == nil {
		c.t.Fatalf("clustertest: node %d was never started", i)
	}
	select {
	case <-n.proc.exited:
	case <-time.After(timeout):
		c.t.Fatalf("node %d still runs after %s", i, timeout)
	}
	var ee *exec.ExitError
	if errors.As(n.proc.err, &ee) {
		return ee.ExitCode()
	}
	if n.proc.err != nil {
		c.t.Fatalf("node %d: %v", i, n.proc.err)
	}
	return 0
}

// Kill sends SIGKILL to node i's skiff (not to its containers, which run in
// their own sessions) and waits for it to exit. Harmless when stopped.
func (c *Cluster) Kill(i int) {
	n := c.Nodes[i]
	if n.proc == nil {
		return
	}
	_ = n.proc.cmd.Process.Kill()
	<-n.proc.exited
	n.proc = nil
}

// Stop sends SIGTERM to node i's skiff and waits up to grace, then kills
// it.
func (c *Cluster) Stop(i int, grace time.Duration) {
	n := c.Nodes[i]
	if n.proc == nil {
		return
	}
	_ = n.proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.proc.exited:
	case <-time.After(grace):
		c.t.Logf("node %d ignored SIGTERM for %s: SIGKILL", n.Index, grace)
	}
	c.Kill(i)
}

// Cut takes node i's link down on the switch side: the node is cut off from
// every other node; its processes keep running.
func (c *Cluster) Cut(i int) {
	c.t.Helper()
	if err := ipIn(c.sw, "link", "set", c.swPort(i), "down"); err != nil {
		c.t.Fatal(err)
	}
}

// Heal undoes Cut.
func (c *Cluster) Heal(i int) {
	c.t.Helper()
	if err := ipIn(c.sw, "link", "set", c.swPort(i), "up"); err != nil {
		c.t.Fatal(err)
	}
}

// WaitFor polls cond every 50ms until it holds, failing the test after
// timeout with the last error cond returned. It fails at once if a node
// the test started exits on its own.
func (c *Cluster) WaitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	c.t.Helper()
	if err := c.Poll(timeout, cond); err != nil {
		c.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// Poll is WaitFor that returns the failure instead of failing the test.
func (c *Cluster) Poll(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		for _, n := range c.Nodes {
			if n.proc == nil {
				continue
			}
			select {
			case <-n.proc.exited:
				return fmt.Errorf("node %d (%s) exited: %v; its log ends:\n%s", n.Index, n.Name, n.proc.err, tailFile(n.Log, 30))
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s (last error: %v)", timeout, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitNodeReady waits until node i is Ready in node 0's API.
func (c *Cluster) WaitNodeReady(i int, timeout time.Duration) {
	c.t.Helper()
	cl := c.Client(0)
	name := c.Nodes[i].Name
	c.WaitFor(fmt.Sprintf("node %d (%s) Ready", i, name), timeout, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		nd, err := cl.GetNode(ctx, name)
		if err != nil {
			return false, err
		}
		if !nd.Ready() {
			return false, fmt.Errorf("node %s not Ready", name)
		}
		return true, nil
	})
}

// NodeIndex returns the index of the node named name, or -1.
func (c *Cluster) NodeIndex(name string) int {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n.Index
		}
	}
	return -1
}
