package netlb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestUDPConntrackClearedOnEndpointRemoval(t *testing.T) {
	nd := newNode(t, "10.88.1.0/24")
	nd.setup()
	a, b := nd.addPod("udp-a"), nd.addPod("udp-b")
	sender := nd.addPod("sender")
	svc := []Service{{Name: "dns", ClusterIP: net.ParseIP("10.96.0.53"), Port: 53, Protocol: UDP}}
	if err := nd.sync(svc, map[string][]Endpoint{"dns": eps(9000, a)}); err != nil {
		t.Fatal(err)
	}
	// One socket, one source port: without the conntrack clean-up every
	// packet would keep following the entry to udp-a, which still answers.
	c, err := udpConn(sender.ns, "10.96.0.53:53")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 5; i++ {
		if got, err := udpAsk(c, 2*time.Second); err != nil || got != "udp-a" {
			t.Fatalf("before: got %q, %v; want udp-a", got, err)
		}
	}
	if err := nd.sync(svc, map[string][]Endpoint{"dns": eps(9000, b)}); err != nil {
		t.Fatal(err)
	}
	got, err := udpAsk(c, 2*time.Second)
	if err != nil || got != "udp-b" {
		t.Fatalf("first packet after the sync: got %q, %v; want udp-b", got, err)
	}
	for i := 0; i < 5; i++ {
		if got, err := udpAsk(c, 2*time.Second); err != nil || got != "udp-b" {
			t.Fatalf("after: got %q, %v; want udp-b", got, err)
		}
	}
}

func TestHostGWBetweenTwoNodes(t *testing.T) {
	n1, n2 := newNode(t, "10.88.1.0/24"), newNode(t, "10.88.2.0/24")
	ip1, ip2 := link(t, n1, n2, 77)
	n1.setup()
	n2.setup()
	p1, p2 := n1.addPod("pod-one"), n2.addPod("pod-two")
	// A server on node 2 itself, outside the cluster CIDR.
	startServer(t, n2.path, "node-two")
	peers := []Peer{
		{Name: "n1", NodeIP: ip1, PodCIDR: n1.cfg.PodCIDR},
		{Name: "n2", NodeIP: ip2, PodCIDR: n2.cfg.PodCIDR},
	}
	for _, nd := range []*testNode{n1, n2} {
		nd.must(func() error { return nd.net.SetPeers(peers) })
	}
	// A service on node 1 whose only endpoint lives on node 2.
	svc := []Service{
		{Name: "remote", ClusterIP: net.ParseIP("10.96.0.20"), Port: 80, NodePort: 30090},
		{Name: "external", ClusterIP: net.ParseIP("10.96.0.21"), Port: 8081, ExternalIP: ip1},
	}
	if err := n1.sync(svc, map[string][]Endpoint{"remote": eps(8080, p2), "external": eps(8080, p2)}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		from     netns.NsHandle
		addr     string
		want     string
		wantSeen string
	}{
		{"pod to pod across nodes", p1.ns, svcAddr(p2.ip.String(), 8080), "pod-two", p1.ip.String()},
		{"pod to pod, other way", p2.ns, svcAddr(p1.ip.String(), 8080), "pod-one", p2.ip.String()},
		{"cluster ip with a remote endpoint", p1.ns, "10.96.0.20:80", "pod-two", p1.ip.String()},
		{"node port from the other node", n2.nodeNS(), svcAddr(ip1.String(), 30090), "pod-two", ""},
		{"external ip from the other node", n2.nodeNS(), svcAddr(ip1.String(), 8081), "pod-two", ip1.String()},
		{"pod traffic leaving the cluster cidr is masqueraded", p1.ns, svcAddr(ip2.String(), 8080), "node-two", ip1.String()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name, seen, err := get(tc.from, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			if name != tc.want || tc.wantSeen != "" && seen != tc.wantSeen {
				t.Errorf("got %s seeing %s, want %s seeing %s", name, seen, tc.want, tc.wantSeen)
			}
		})
	}
	t.Run("a peer that leaves loses its route", func(t *testing.T) {
		if out := n1.cmd("ip", "route", "show", "proto", "83"); !strings.Contains(out, "10.88.2.0/24 via "+ip2.String()) {
			t.Fatalf("no tagged route to the peer before it leaves:\n%s", out)
		}
		n1.must(func() error { return n1.net.SetPeers(peers[:1]) })
		if out := n1.cmd("ip", "route", "show", "proto", "83"); strings.Contains(out, "10.88.2.0/24") {
			t.Errorf("route to the gone peer still there:\n%s", out)
		}
	})
}

func TestRestoreFailureKeepsOldRules(t *testing.T) {
	nd := newNode(t, "10.88.1.0/24")
	nd.setup()
	a, b := nd.addPod("keep-a"), nd.addPod("keep-b")
	svc := []Service{{Name: "web", ClusterIP: net.ParseIP("10.96.0.30"), Port: 80}}
	both := map[string][]Endpoint{"web": eps(8080, a, b)}
	if err := nd.sync(svc, both); err != nil {
		t.Fatal(err)
	}
	before := nd.skiffRules()
	// A foreign rule that jumps into the endpoint chain of keep-b makes its
	// deletion, and so the whole restore, fail, as a real conflict would.
	sepB := sepChain(svc[0], eps(8080, b)[0])
	nd.cmd("iptables-nft", "-t", "nat", "-N", "TESTREF")
	nd.cmd("iptables-nft", "-t", "nat", "-A", "TESTREF", "-j", sepB)
	t.Cleanup(func() {
		nd.do(func() error {
			exec.Command("iptables-nft", "-t", "nat", "-F", "TESTREF").Run()
			return exec.Command("iptables-nft", "-t", "nat", "-X", "TESTREF").Run()
		})
	})
	onlyA := map[string][]Endpoint{"web": eps(8080, a)}
	// The failing sync also adds a service without endpoints, whose reject
	// goes to the filter table: that must not be applied either.
	withEmpty := append(svc, Service{Name: "empty", ClusterIP: net.ParseIP("10.96.0.31"), Port: 80})
	err := nd.sync(withEmpty, onlyA)
	if !errors.Is(err, ErrRestore) {
		t.Fatalf("sync with the conflict: got %v, want ErrRestore", err)
	}
	var after []string
	for _, l := range strings.Split(nd.skiffRules(), "\n") {
		if !strings.Contains(l, "TESTREF") {
			after = append(after, l)
		}
	}
	if after := strings.Join(after, "\n"); after != before {
		t.Errorf("a failed restore changed the rules:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		name, _, err := get(nd.nodeNS(), "10.96.0.30:80")
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = true
	}
	if !seen["keep-b"] {
		t.Errorf("old rules not in force: keep-b got no traffic (%v)", seen)
	}
	nd.cmd("iptables-nft", "-t", "nat", "-F", "TESTREF")
	nd.cmd("iptables-nft", "-t", "nat", "-X", "TESTREF")
	if err := nd.sync(withEmpty, onlyA); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if rules := nd.skiffRules(); !strings.Contains(rules, "10.96.0.31/32") {
		t.Errorf("the resync did not write the reject of the new empty service")
	}
	if rules := nd.skiffRules(); strings.Contains(rules, sepB) {
		t.Errorf("the full resync left %s behind", sepB)
	}
	want, err := buildRules(&nd.cfg, svc, onlyA)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nd.skiffRules(), strings.Join(want.rules("nat", svcChain(svc[0])), "\n")) {
		t.Errorf("the resync did not write the new service chain")
	}
}

func TestIPAMAndSandboxAcrossRestart(t *testing.T) {
	nd := newNode(t, "10.88.1.0/29") // 5 pod IPs: .2 to .6
	nd.setup()
	var path1 string
	var ip1 net.IP
	nd.must(func() (err error) {
		path1, ip1, err = nd.net.AddPod(context.Background(), "p1")
		return err
	})
	startServer(t, path1, "p1")

	// A new Network with the same dirs stands for the agent after a
	// restart: it must find p1's sandbox and IP, and never give p1's IP away.
	restarted, err := New(nd.cfg)
	if err != nil {
		t.Fatal(err)
	}
	nd.must(restarted.SetupNode)
	var path2 string
	var ip2 net.IP
	nd.must(func() (err error) {
		path2, ip2, err = restarted.AddPod(context.Background(), "p1")
		return err
	})
	if path2 != path1 || !ip2.Equal(ip1) {
		t.Fatalf("after restart: %s %s, want the same %s %s", path2, ip2, path1, ip1)
	}
	if pods, err := restarted.Pods(); err != nil || len(pods) != 1 || !pods["p1"].Equal(ip1) {
		t.Fatalf("Pods() after restart = %v, %v; want p1 %s", pods, err, ip1)
	}
	// The server started before the restart still answers: the sandbox was
	// reused, not made anew.
	if name, _, err := get(nd.nodeNS(), svcAddr(ip1.String(), 8080)); err != nil || name != "p1" {
		t.Fatalf("reused sandbox: %q, %v", name, err)
	}
	// The netns mount lost while a process keeps the netns alive (the
	// server above): AddPod builds a new sandbox with the same IP.
	if err := unix.Unmount(path1, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	nd.must(func() (err error) {
		path2, ip2, err = restarted.AddPod(context.Background(), "p1")
		return err
	})
	if !ip2.Equal(ip1) {
		t.Fatalf("rebuilt sandbox got %s, want %s", ip2, ip1)
	}
	if out, err := exec.Command("nsenter", "--net="+path2, "ip", "-o", "-4", "addr", "show", "eth0").CombinedOutput(); err != nil || !strings.Contains(string(out), ip1.String()+"/29") {
		t.Fatalf("rebuilt sandbox: %s %v", out, err)
	}
	if name, _, err := get(nd.nodeNS(), svcAddr(ip1.String(), 8080)); err == nil {
		t.Fatalf("the old sandbox (%s) still owns %s", name, ip1)
	}
	got := map[string]string{ip1.String(): "p1"}
	for _, p := range []string{"p2", "p3", "p4", "p5"} {
		var ip net.IP
		nd.must(func() (err error) { _, ip, err = restarted.AddPod(context.Background(), p); return err })
		if owner, dup := got[ip.String()]; dup {
			t.Fatalf("%s got %s, already %s's", p, ip, owner)
		}
		got[ip.String()] = p
	}
	err = nd.do(func() error { _, _, err := restarted.AddPod(context.Background(), "p6"); return err })
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("sixth pod in a /29: got %v, want ErrPoolExhausted", err)
	}
	nd.must(func() error { return restarted.RemovePod("p3") })
	nd.must(func() error { return restarted.RemovePod("p3") }) // idempotent
	var ip6 net.IP
	nd.must(func() (err error) { _, ip6, err = restarted.AddPod(context.Background(), "p6"); return err })
	var p3ip string
	for ip, p := range got {
		if p == "p3" {
			p3ip = ip
		}
	}
	if ip6.String() != p3ip {
		t.Errorf("p6 got %s, want the freed %s", ip6, p3ip)
	}
	if _, err := os.Stat(restarted.NetnsPath("p3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns of removed p3: %v", err)
	}
}

// snapshot is what the cleanup must leave as it found it.
func (nd *testNode) snapshot() map[string]string {
	strip := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "#") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	// IPv6 link-local addresses settle (DAD) in the background: wait for
	// that, so that the comparison sees only what skiff changed.
	for deadline := time.Now().Add(5 * time.Second); strings.Contains(nd.cmd("ip", "-o", "addr"), "tentative"); {
		if time.Now().After(deadline) {
			nd.t.Fatal("addresses still tentative after 5s")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		nd.t.Fatal(err)
	}
	var ours []string
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], filepath.Join(nd.root, "run")) {
			ours = append(ours, f[4])
		}
	}
	sort.Strings(ours)
	return map[string]string{
		"iptables-save":        strip(nd.cmd("iptables-nft-save")),
		"iptables-legacy-save": strip(nd.cmd("iptables-legacy-save")),
		"ip link":              nd.cmd("ip", "-o", "link"),
		"ip addr":              nd.cmd("ip", "-o", "addr"),
		"ip route":             nd.cmd("ip", "route", "show", "table", "all"),
		"mounts under run dir": strings.Join(ours, "\n"),
		routeLocalnet:          nd.sysctl(routeLocalnet),
	}
}

func TestCleanupLeavesNothing(t *testing.T) {
	n1, n2 := newNode(t, "10.88.1.0/24"), newNode(t, "10.88.2.0/24")
	ip1, ip2 := link(t, n1, n2, 78)
	// A new netns copies the host's conf/all values; start from the
	// kernel's default so that turning route_localnet on shows.
	n1.must(func() error { return writeSysctl(routeLocalnet, "0") })
	before := n1.snapshot()
	n1.setup()
	p := n1.addPod("c1")
	n1.addPod("c2")
	n1.must(func() error {
		return n1.net.SetPeers([]Peer{{Name: "n2", NodeIP: ip2, PodCIDR: n2.cfg.PodCIDR}})
	})
	svc := []Service{
		{Name: "a", ClusterIP: net.ParseIP("10.96.0.40"), Port: 80, NodePort: 30100, Affinity: true},
		{Name: "b", ClusterIP: net.ParseIP("10.96.0.41"), Port: 53, Protocol: UDP, ExternalIP: ip1},
		{Name: "c", ClusterIP: net.ParseIP("10.96.0.42"), Port: 80},
	}
	if err := n1.sync(svc, map[string][]Endpoint{"a": eps(8080, p), "b": eps(9000, p)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(n1.nodeNS(), "10.96.0.40:80"); err != nil {
		t.Fatal(err)
	}
	n1.must(n1.net.Cleanup)
	after := n1.snapshot()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s differs after cleanup:\nbefore:\n%s\nafter:\n%s", k, v, after[k])
		}
	}
	if _, err := os.Stat(n1.cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(n1.cfg.RunDir, "netns")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns dir left: %v", err)
	}
	n1.must(n1.net.Cleanup) // a second cleanup finds nothing and is fine
}

// TestCleanupLegacyBackend: chains left in the other iptables build (an
// older skiff, or a node switched between builds) are removed too.
func TestCleanupLegacyBackend(t *testing.T) {
	requireTools(t, "iptables-legacy", "iptables-legacy-save")
	nd := newNode(t, "10.88.1.0/24")
	nd.setup()
	nd.cmd("iptables-legacy", "-t", "nat", "-N", "SKIFF-SERVICES")
	nd.cmd("iptables-legacy", "-t", "nat", "-A", "SKIFF-SERVICES", "-j", "RETURN")
	nd.cmd("iptables-legacy", "-t", "nat", "-I", "OUTPUT", "-m", "comment", "--comment", "skiff services", "-j", "SKIFF-SERVICES")
	nd.cmd("iptables-legacy", "-t", "filter", "-N", "SKIFF-FILTER")
	nd.cmd("iptables-legacy", "-t", "filter", "-A", "INPUT", "-j", "SKIFF-FILTER")
	nd.cmd("iptables-legacy", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	nd.must(nd.net.Cleanup)
	out := nd.cmd("iptables-legacy-save")
	if strings.Contains(out, "SKIFF-") {
		t.Errorf("legacy rules left:\n%s", out)
	}
	if !strings.Contains(out, "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT") {
		t.Errorf("cleanup removed a rule that is not skiff's:\n%s", out)
	}
	if out := nd.cmd("iptables-nft-save"); strings.Contains(out, "SKIFF-") {
		t.Errorf("nft rules left:\n%s", out)
	}
}

// TestPartialFailureRetriedFull: a chain removed behind netlb's back makes
// the next partial restore fail; Sync retries at once with a full one.
func TestPartialFailureRetriedFull(t *testing.T) {
	nd := newNode(t, "10.88.1.0/24")
	nd.setup()
	a, b, c := nd.addPod("r-a"), nd.addPod("r-b"), nd.addPod("r-c")
	svc := []Service{{Name: "web", ClusterIP: net.ParseIP("10.96.0.32"), Port: 80}}
	if err := nd.sync(svc, map[string][]Endpoint{"web": eps(8080, a, b)}); err != nil {
		t.Fatal(err)
	}
	sepA := sepChain(svc[0], eps(8080, a)[0])
	nd.cmd("iptables-nft", "-t", "nat", "-F", svcChain(svc[0]))
	nd.cmd("iptables-nft", "-t", "nat", "-F", sepA)
	nd.cmd("iptables-nft", "-t", "nat", "-X", sepA)
	// The partial restore would jump to the missing SKIFF-SEP of r-a.
	if err := nd.sync(svc, map[string][]Endpoint{"web": eps(8080, a, c)}); err != nil {
		t.Fatalf("sync after the outside change: %v", err)
	}
	if rules := nd.skiffRules(); !strings.Contains(rules, ":"+sepA+" ") {
		t.Errorf("the full retry did not restore %s", sepA)
	}
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		name, _, err := get(nd.nodeNS(), "10.96.0.32:80")
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = true
	}
	if !seen["r-a"] || !seen["r-c"] || seen["r-b"] {
		t.Errorf("backends reached: %v, want r-a and r-c", seen)
	}
}

// TestTCPConntrackOnlyWhenAsked: an open TCP connection to a removed
// endpoint keeps working by default, and is cut when Config.ConntrackTCP
// asks for its conntrack entries to go.
func TestTCPConntrackOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flush   bool
		wantCut bool
	}{
		{"default keeps the connection", false, false},
		{"ConntrackTCP cuts it", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nd := newNode(t, "10.88.1.0/24")
			cfg := nd.cfg
			cfg.ConntrackTCP = tc.flush
			n, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			nd.net = n
			nd.setup()
			a, b, client := nd.addPod("t-a"), nd.addPod("t-b"), nd.addPod("t-client")
			svc := []Service{{Name: "web", ClusterIP: net.ParseIP("10.96.0.33"), Port: 80}}
			if err := nd.sync(svc, map[string][]Endpoint{"web": eps(8080, a)}); err != nil {
				t.Fatal(err)
			}
			var conn net.Conn
			if err := inNS(client.ns, func() (err error) {
				conn, err = net.DialTimeout("tcp4", "10.96.0.33:80", 3*time.Second)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			ask := func() (string, error) {
				conn.SetDeadline(time.Now().Add(3 * time.Second))
				if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
					return "", err
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				return string(body), err
			}
			if got, err := ask(); err != nil || !strings.HasPrefix(got, "t-a ") {
				t.Fatalf("before: %q %v", got, err)
			}
			if err := nd.sync(svc, map[string][]Endpoint{"web": eps(8080, b)}); err != nil {
				t.Fatal(err)
			}
			got, err := ask()
			if cut := err != nil; cut != tc.wantCut {
				t.Errorf("after the endpoint left: got %q, %v; want the connection cut: %v", got, err, tc.wantCut)
			}
		})
	}
}

// TestHostVethHasNoLinkLocal: a pod's host-side veth and the bridge get no
// IPv6 address (the node has no use for one, and one per pod coming and
// going is a change of the host's addresses to whatever watches them). The
// pod's own eth0 keeps its link-local address: once that has come, the
// host end and the bridge, up and with carrier since before it, would have
// their own.
func TestHostVethHasNoLinkLocal(t *testing.T) {
	nd := newNode(t, "10.88.3.0/29")
	nd.setup()
	var path string
	nd.must(func() (err error) {
		path, _, err = nd.net.AddPod(context.Background(), "p1")
		return err
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("nsenter", "--net="+path, "ip", "-o", "-6", "addr", "show", "dev", "eth0", "scope", "link").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr in the pod: %v: %s", err, out)
		}
		if strings.Contains(string(out), "fe80::") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod's eth0 got no IPv6 link-local address in 10s: %q", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, dev := range []string{vethName("p1"), nd.cfg.Bridge} {
		if out := nd.cmd("ip", "-o", "-6", "addr", "show", "dev", dev); strings.TrimSpace(out) != "" {
			t.Errorf("%s has IPv6 addresses:\n%s", dev, out)
		}
	}
}
