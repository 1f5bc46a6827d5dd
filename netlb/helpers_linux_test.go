package netlb

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the pods' server: with NETLB_TEST_SERVE set it
// answers HTTP on :8080 and UDP on :9000 with its name (and, over HTTP, the
// client address it saw).
func TestMain(m *testing.M) {
	if name := os.Getenv("NETLB_TEST_SERVE"); name != "" {
		serve(name)
		return
	}
	os.Exit(m.Run())
}

func serve(name string) {
	ln, err := net.Listen("tcp4", ":8080")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	pc, err := net.ListenPacket("udp4", ":9000")
	if err != nil {
		fmt.Println("listen udp:", err)
		os.Exit(1)
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_ = n
			pc.WriteTo([]byte(name), addr)
		}
	}()
	fmt.Println("ready")
	// The parent holds our stdin; when it goes away, so do we.
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "%s %s", name, host)
	}))
}

// requireRoot fails in CI and skips elsewhere when not root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("these tests need root (CI runs as root)")
	}
	t.Skip("needs root")
}

// requireTools fails with what to install when a tool is missing.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install iptables iproute2 util-linux nftables wrk", tool)
		}
	}
}

func randSuffix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// inNS runs fn on an OS thread switched into ns. The thread is never handed
// back: the goroutine ends locked, and the runtime ends the thread.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// testNode is a "node": a network namespace that the test made, with a
// Network acting in it.
type testNode struct {
	t    testing.TB
	name string
	path string // netns mount
	ns   netns.NsHandle
	net  *Network
	cfg  Config
	root string
}

// newNode makes a node netns with lo up and a Network for podCIDR. It does
// not call SetupNode. Everything goes away in t.Cleanup.
func newNode(t testing.TB, podCIDR string) *testNode {
	t.Helper()
	requireRoot(t)
	requireTools(t, "iptables-nft", "iptables-nft-restore", "iptables-nft-save", "nsenter", "ip", "nft")
	root := t.TempDir()
	nd := &testNode{t: t, name: "skt" + randSuffix(t), root: root}
	nd.path = filepath.Join(root, "node-netns")
	if err := ensureNetns(nd.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Unmount(nd.path, unix.MNT_DETACH)
		os.Remove(nd.path)
	})
	ns, err := netns.GetFromPath(nd.path)
	if err != nil {
		t.Fatal(err)
	}
	nd.ns = ns
	t.Cleanup(func() { ns.Close() })
	if err := nd.do(func() error {
		// No IPv6 duplicate address detection in the node: its "tentative"
		// flags would make before/after snapshots differ by timing alone.
		for _, dev := range []string{"all", "default"} {
			if err := writeSysctl("net/ipv6/conf/"+dev+"/accept_dad", "0"); err != nil && !os.IsNotExist(errors.Unwrap(err)) {
				return err
			}
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.PodCIDR = mustCIDR(podCIDR)
	cfg.StateDir = filepath.Join(root, "state")
	cfg.RunDir = filepath.Join(root, "run")
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	nd.cfg = cfg
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nd.net = n
	// Pod netns mounts go with the node, whatever the test did.
	t.Cleanup(func() {
		ents, _ := os.ReadDir(filepath.Join(cfg.RunDir, "netns"))
		for _, e := range ents {
			p := filepath.Join(cfg.RunDir, "netns", e.Name())
			unix.Unmount(p, unix.MNT_DETACH)
			os.Remove(p)
		}
	})
	return nd
}

// do runs fn inside the node's netns.
func (nd *testNode) do(fn func() error) error { return inNS(nd.ns, fn) }

// must runs fn inside the node and fails the test on error.
func (nd *testNode) must(fn func() error) {
	nd.t.Helper()
	if err := nd.do(fn); err != nil {
		nd.t.Fatal(err)
	}
}

// setup runs SetupNode in the node.
func (nd *testNode) setup() {
	nd.t.Helper()
	nd.must(nd.net.SetupNode)
}

// sync runs Sync in the node.
func (nd *testNode) sync(svcs []Service, eps map[string][]Endpoint) error {
	return nd.do(func() error { return nd.net.Sync(svcs, eps) })
}

// cmd runs a command inside the node's netns (nsenter, so that it sees the
// node's network and nothing else changes) and returns its output.
func (nd *testNode) cmd(args ...string) string {
	nd.t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + nd.path}, args...)...).CombinedOutput()
	if err != nil {
		nd.t.Fatalf("%v: %v: %s", args, err, out)
	}
	return string(out)
}

// testPod is a pod sandbox made by AddPod, with the test server in it.
type testPod struct {
	name string
	path string
	ip   net.IP
	ns   netns.NsHandle
}

// addPod makes a pod with AddPod and starts the server in it.
func (nd *testNode) addPod(name string) *testPod {
	nd.t.Helper()
	var p testPod
	p.name = name
	nd.must(func() error {
		var err error
		p.path, p.ip, err = nd.net.AddPod(context.Background(), name)
		return err
	})
	ns, err := netns.GetFromPath(p.path)
	if err != nil {
		nd.t.Fatal(err)
	}
	p.ns = ns
	nd.t.Cleanup(func() { ns.Close() })
	startServer(nd.t, p.path, name)
	return &p
}

// startServer runs the test binary as a server in the netns at path and
// waits until it listens.
func startServer(t testing.TB, path, name string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command("nsenter", "--net="+path, exe)
	c.Env = append(os.Environ(), "NETLB_TEST_SERVE="+name)
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		c.Process.Kill()
		c.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("server %s: %q %v", name, line, err)
	}
}

// client makes HTTP requests from inside a netns, one connection each.
func client(ns netns.NsHandle) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(ns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{
		Timeout:   8 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}

// get fetches http://addr/ from ns and returns the server's name and the
// client address it saw.
func get(ns netns.NsHandle, addr string) (name, seen string, err error) {
	resp, err := client(ns).Get("http://" + addr + "/")
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	name, seen, _ = strings.Cut(string(b), " ")
	return name, seen, nil
}

// udpConn opens a UDP socket in ns connected to addr.
func udpConn(ns netns.NsHandle, addr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := inNS(ns, func() error {
		raddr, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", nil, raddr)
		return err
	})
	return c, err
}

// udpAsk sends one datagram on c and returns the answer.
func udpAsk(c *net.UDPConn, timeout time.Duration) (string, error) {
	if _, err := c.Write([]byte("hi")); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// nodeNS returns the node's own netns handle (for clients on the node).
func (nd *testNode) nodeNS() netns.NsHandle { return nd.ns }

// link connects two nodes with a veth pair, a in 192.168.<sub>.1/24 and b in
// .2, and returns both addresses.
func link(t testing.TB, a, b *testNode, sub int) (net.IP, net.IP) {
	t.Helper()
	ipa, ipb := net.IPv4(192, 168, byte(sub), 1).To4(), net.IPv4(192, 168, byte(sub), 2).To4()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "up0"
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "up0", PeerNamespace: netlink.NsFd(int(b.ns))}
	a.must(func() error { return netlink.LinkAdd(veth) })
	for _, x := range []struct {
		nd *testNode
		ip net.IP
	}{{a, ipa}, {b, ipb}} {
		x.nd.must(func() error {
			l, err := netlink.LinkByName("up0")
			if err != nil {
				return err
			}
			if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: x.ip, Mask: net.CIDRMask(24, 32)}}); err != nil {
				return err
			}
			return netlink.LinkSetUp(l)
		})
	}
	// Wait for the carrier, so that snapshots taken next see a settled link.
	for _, nd := range []*testNode{a, b} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var up bool
			nd.must(func() error {
				l, err := netlink.LinkByName("up0")
				up = err == nil && l.Attrs().OperState == netlink.OperUp
				return err
			})
			if up {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("up0 never came up")
			}
			time.Sleep(10 * time.Millisecond) // polling the carrier, not a wait in place of it
		}
	}
	return ipa, ipb
}
