package clustertest

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// vipManifest is the demo app on every node behind two load-balancer
// services that ask for no address.
func vipManifest() string {
	return DemoManifest(3) + `
[service.shop]
app = "web"
port = 80
target_port = "http"
type = "load-balancer"

[service.office]
app = "web"
port = 81
target_port = "http"
type = "load-balancer"
`
}

// vipPools are the [lb] pools of node 0: two addresses on the test bridge.
func vipPools(net3 string) string {
	return fmt.Sprintf("[lb]\npools = [\"%s.240-%s.241\"]\n", net3, net3)
}

// lanClient makes a netns on the test bridge, as a LAN client of the site
// (address <net3>.200), and removes it at the end of the test.
func (c *Cluster) lanClient(tb testing.TB) string {
	tb.Helper()
	ns := "skt-" + c.id + "-lan"
	if err := ip("netns", "add", ns); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := ip("netns", "del", ns); err != nil {
			tb.Errorf("lan client: %v", err)
		}
	})
	for _, step := range []struct {
		ns   string
		args []string
	}{
		{ns, []string{"link", "set", "lo", "up"}},
		{ns, []string{"link", "add", "eth0", "type", "veth", "peer", "name", "lan", "netns", c.sw}},
		{ns, []string{"addr", "add", c.net3 + ".200/24", "dev", "eth0"}},
		{ns, []string{"link", "set", "eth0", "up"}},
		{c.sw, []string{"link", "set", "lan", "master", "br0"}},
		{c.sw, []string{"link", "set", "lan", "up"}},
	} {
		if err := ipIn(step.ns, step.args...); err != nil {
			tb.Fatal(err)
		}
	}
	return "/run/netns/" + ns
}

// vipHolders lists the nodes whose eth0 carries addr.
func (c *Cluster) vipHolders(addr string) ([]int, error) {
	var out []int
	for _, n := range c.Nodes {
		o, err := c.ipOut(n.Name, "-o", "-4", "addr", "show", "dev", "eth0")
		if err != nil {
			return nil, err
		}
		if strings.Contains(o, " "+addr+"/32 ") {
			out = append(out, n.Index)
		}
	}
	return out, nil
}

// ipOut runs `ip -n ns args...` and returns its output.
func (c *Cluster) ipOut(ns string, args ...string) (string, error) {
	o, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip -n %s %s: %w: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(string(o)))
	}
	return string(o), nil
}

// mac is the hardware address of eth0 in netns ns.
func (c *Cluster) mac(ns string) (string, error) {
	o, err := c.ipOut(ns, "-o", "link", "show", "eth0")
	if err != nil {
		return "", err
	}
	f := strings.Fields(o)
	for i, w := range f {
		if w == "link/ether" && i+1 < len(f) {
			return f[i+1], nil
		}
	}
	return "", fmt.Errorf("no link/ether in %q", o)
}

// neighMAC is the hardware address the LAN client's ARP cache has for
// addr ("" if none).
func (c *Cluster) neighMAC(addr string) (string, error) {
	o, err := c.ipOut("skt-"+c.id+"-lan", "neigh", "show", addr, "dev", "eth0")
	if err != nil {
		return "", err
	}
	f := strings.Fields(o)
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1], nil
		}
	}
	return "", nil
}

// serviceAddr waits until the service has an address and a holder in node
// 0's API and returns them.
func (c *Cluster) serviceAddr(svc string, timeout time.Duration) (addr, holder string) {
	c.t.Helper()
	c.WaitFor(svc+" address and holder", timeout, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := c.Client(0).GetService(ctx, svc)
		if err != nil {
			return false, err
		}
		addr, holder = s.Status.Address, s.Status.Holder
		return addr != "" && holder != "", fmt.Errorf("status %+v", s.Status)
	})
	return addr, holder
}

// vipLoop GETs addr from the LAN client until stop is called, and records
// when each answer came: vipLoopWorkers loops, started vipLoopStagger
// apart, each one new connection at a time with a 250 ms timeout, so that
// the first answer after a failover is seen within about 60 ms of the
// address working again (one loop alone would see it only at its next
// attempt after a timeout).
type vipLoop struct {
	mu      sync.Mutex
	answers []time.Time // end of each answered request
	starts  []time.Time // its start
	fails   int
	stop    func()
	wg      sync.WaitGroup
}

const (
	vipLoopWorkers = 4
	vipLoopStagger = 60 * time.Millisecond
)

func startVIPLoop(lan, addr string) *vipLoop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &vipLoop{stop: cancel}
	for w := range vipLoopWorkers {
		l.wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(w) * vipLoopStagger):
			}
			for ctx.Err() == nil {
				start := time.Now()
				body, err := GetIn(lan, addr, 250*time.Millisecond)
				l.mu.Lock()
				if err == nil && strings.HasPrefix(body, "hello from") {
					l.answers = append(l.answers, time.Now())
					l.starts = append(l.starts, start)
				} else {
					l.fails++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// firstAfter is the earliest end of an answered request started after t.
func (l *vipLoop) firstAfter(t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for i, s := range l.starts {
		if s.After(t) && (first.IsZero() || l.answers[i].Before(first)) {
			first = l.answers[i]
		}
	}
	return first, !first.IsZero()
}

func (l *vipLoop) end() { l.stop(); l.wg.Wait() }

// vipFailover kills the node holding addr (its link cut, then SIGKILL of
// its skiff) while the LAN client loops on addr:port, and returns the
// victim, the new holder and the seconds from the cut to the first answer
// of a request started after it. It checks that the client's ARP cache
// then points at the new holder and that exactly one running node holds
// the address.
func (c *Cluster) vipFailover(tb testing.TB, lan, addr string, port int) (victim, next int, secs float64) {
	tb.Helper()
	var hs []int
	c.WaitFor("one holder of "+addr, 30*time.Second, func() (bool, error) {
		var err error
		hs, err = c.vipHolders(addr)
		return err == nil && len(hs) == 1, fmt.Errorf("holders %v, %v", hs, err)
	})
	victim = hs[0]
	// The client has reached the address through the holder: its ARP
	// cache has the holder's MAC.
	vmac, err := c.mac(c.Nodes[victim].Name)
	if err != nil {
		tb.Fatal(err)
	}
	c.WaitFor("an answer through "+addr, 30*time.Second, func() (bool, error) {
		_, err := GetIn(lan, fmt.Sprintf("%s:%d", addr, port), 2*time.Second)
		return err == nil, err
	})
	// Every node's rules take the address, so a client whose entry still
	// names the node that held it before is answered too (through that
	// node): check the entry itself. The holder's burst of gratuitous ARP
	// after a membership change lasts about 3 s.
	c.WaitFor("the client's ARP entry for "+addr+" names the holder", 20*time.Second, func() (bool, error) {
		m, err := c.neighMAC(addr)
		return err == nil && m == vmac, fmt.Errorf("entry %q (%v), want the holder %d's %s", m, err, victim, vmac)
	})
	loop := startVIPLoop(lan, fmt.Sprintf("%s:%d", addr, port))
	defer loop.end()
	c.WaitFor("the loop answered", 10*time.Second, func() (bool, error) {
		_, ok := loop.firstAfter(time.Time{})
		return ok, nil
	})
	// The link goes first: a killed skiff leaves its pods and rules
	// answering until the link is cut, so the clock starts once the cut
	// is done (a request started while `ip` runs may still be answered by
	// the victim).
	c.Cut(victim)
	killed := time.Now()
	c.Kill(victim)
	var answered time.Time
	c.WaitFor("an answer through "+addr+" after the kill", 30*time.Second, func() (bool, error) {
		var ok bool
		answered, ok = loop.firstAfter(killed)
		return ok, nil
	})
	secs = answered.Sub(killed).Seconds()
	next = -1
	c.WaitFor("exactly one running node holds "+addr, 10*time.Second, func() (bool, error) {
		hs, err := c.vipHolders(addr)
		if err != nil {
			return false, err
		}
		var running []int
		for _, h := range hs {
			if h != victim {
				running = append(running, h)
			}
		}
		if len(running) == 1 {
			next = running[0]
		}
		return len(running) == 1, fmt.Errorf("holders %v (victim %d)", hs, victim)
	})
	nmac, err := c.mac(c.Nodes[next].Name)
	if err != nil {
		tb.Fatal(err)
	}
	if m, err := c.neighMAC(addr); err != nil || m != nmac {
		tb.Errorf("after the failover the client's ARP entry for %s is %q (%v), want the new holder %d's %s", addr, m, err, next, nmac)
	}
	return victim, next, secs
}

// waitStatusHolder waits until exactly one node holds addr and service
// svc's status names it; it returns that node's index.
func (c *Cluster) waitStatusHolder(svc, addr string) int {
	c.t.Helper()
	h := -1
	c.WaitFor("the status of "+svc+" names the one node that holds "+addr, 30*time.Second, func() (bool, error) {
		hs, err := c.vipHolders(addr)
		if err != nil || len(hs) != 1 {
			return false, fmt.Errorf("holders %v, %v", hs, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := c.Client(0).GetService(ctx, svc)
		if err != nil {
			return false, err
		}
		h = hs[0]
		return s.Status.Holder == c.Nodes[h].Name, fmt.Errorf("status holder %s, link holder %d", s.Status.Holder, h)
	})
	return h
}

// logVIPEvents logs every node's "vip taken"/"vip released" lines: who
// held what when.
func (c *Cluster) logVIPEvents(tb testing.TB) {
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.Log)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "msg=\"vip ") {
				tb.Logf("n%d: %s", n.Index, l)
			}
		}
	}
}

// TestLBVIP: a load-balancer service gets an address from node 0's pools
// (two services, two addresses; a third is refused, an address outside the
// pools is a 400 naming the field); exactly one node holds it and the
// status names it; a LAN client reaches it; the holder is killed and cut
// off: the client's loop is answered again through another node, its ARP
// cache points at that node, exactly one running node holds the address;
// the victim comes back and the address is still on exactly one node; a
// deleted service's address leaves every node and returns to the pool; a
// stopped agent takes its address off (another node takes it), a killed
// one leaves it and `skiff agent --cleanup` removes it.
func TestLBVIP(t *testing.T) {
	c := New(t, Options{Nodes: 3, ServerTables: vipPools})
	lan := c.lanClient(t)
	t.Cleanup(func() { c.logVIPEvents(t) })
	c.Apply(vipManifest())
	c.WaitAppReady("web", 3, appTimeout)
	shop, holder := c.serviceAddr("shop", 30*time.Second)
	office, _ := c.serviceAddr("office", 30*time.Second)
	if shop == office || !strings.HasPrefix(shop, c.net3+".24") || !strings.HasPrefix(office, c.net3+".24") {
		t.Fatalf("addresses shop %s office %s: want two different ones from %s.240-241", shop, office, c.net3)
	}
	t.Logf("shop %s held by %s, office %s", shop, holder, office)

	// The pool is full: a third service is refused, and one asking for an
	// address outside the pools names the field.
	f := filepath.Join(c.dir, "extra.toml")
	for _, tt := range []struct{ extra, want string }{
		{"", "service.extra.address"},
		{fmt.Sprintf("address = \"%s.9\"\n", c.net3), "service.extra.address: " + c.net3 + ".9 is not in the server's [lb] pools"},
	} {
		m := "[service.extra]\napp = \"web\"\nport = 82\ntype = \"load-balancer\"\n" + tt.extra
		if err := os.WriteFile(f, []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := c.CLI(0, "apply", "-f", f); err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("apply extra (%q): %v\n%s\nwant an error with %q", tt.extra, err, out, tt.want)
		}
	}
	// Endpoints that turn ready may move the address (a node with one is
	// preferred) until every pod is ready: wait for the status to name the
	// node that holds it.
	holder = c.Nodes[c.waitStatusHolder("shop", shop)].Name
	if out, err := c.CLI(0, "get", "services"); err != nil || !strings.Contains(out, shop) || !strings.Contains(out, holder) {
		t.Errorf("get services:\n%s (%v)\nwant %s held by %s", out, err, shop, holder)
	}

	victim, next, secs := c.vipFailover(t, lan, shop, 80)
	t.Logf("holder %s killed: first answer through %s after %.2fs, from %s", c.Nodes[victim].Name, shop, secs, c.Nodes[next].Name)

	// Bring the victim back: the address is on exactly one node again
	// (the victim drops the copy its kill left, or takes it back and the
	// other drops it).
	c.Heal(victim)
	c.Start(victim)
	c.WaitFor("exactly one node holds "+shop+" after the victim's return", 30*time.Second, func() (bool, error) {
		hs, err := c.vipHolders(shop)
		return err == nil && len(hs) == 1, fmt.Errorf("holders %v, %v", hs, err)
	})
	c.waitStatusHolder("shop", shop)
	c.WaitFor("an AddressTaken event", 30*time.Second, func() (bool, error) {
		out, err := c.CLI(0, "get", "events")
		return err == nil && strings.Contains(out, "AddressTaken") && strings.Contains(out, shop), fmt.Errorf("%v\n%s", err, out)
	})
	c.WaitFor("the client reaches "+shop, 30*time.Second, func() (bool, error) {
		_, err := GetIn(lan, shop+":80", 2*time.Second)
		return err == nil, err
	})

	// Delete shop: its address leaves every node and returns to the pool.
	if out, err := c.CLI(0, "delete", "service", "shop"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c.WaitFor(shop+" off every node", 30*time.Second, func() (bool, error) {
		hs, err := c.vipHolders(shop)
		return err == nil && len(hs) == 0, fmt.Errorf("holders %v, %v", hs, err)
	})
	if err := os.WriteFile(f, []byte("[service.extra]\napp = \"web\"\nport = 82\ntype = \"load-balancer\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.CLI(0, "apply", "-f", f); err != nil {
		t.Fatalf("apply extra after shop's delete: %v\n%s", err, out)
	}
	if extra, _ := c.serviceAddr("extra", 30*time.Second); extra != shop {
		t.Errorf("extra got %s, want shop's freed %s", extra, shop)
	}

	// A stopped agent (SIGTERM) takes its addresses off and another node
	// takes them; a killed one leaves them, and `skiff agent --cleanup`
	// removes them.
	var hs []int
	c.WaitFor("one holder of "+office, 30*time.Second, func() (bool, error) {
		var err error
		hs, err = c.vipHolders(office)
		return err == nil && len(hs) == 1, fmt.Errorf("holders %v, %v", hs, err)
	})
	stopped := hs[0]
	c.Stop(stopped, 10*time.Second)
	c.WaitFor(office+" moved off the stopped node", 30*time.Second, func() (bool, error) {
		var err error
		hs, err = c.vipHolders(office)
		return err == nil && len(hs) == 1 && hs[0] != stopped, fmt.Errorf("holders %v (stopped n%d), %v", hs, stopped, err)
	})
	killed := hs[0]
	c.Kill(killed)
	if hs, err := c.vipHolders(office); err != nil || !slices.Contains(hs, killed) {
		t.Fatalf("holders %v (%v) after a kill: want the address left on n%d", hs, err, killed)
	}
	n := c.Nodes[killed]
	if out, err := exec.Command("nsenter", "--net="+n.NetnsPath(), bin.skiff, "agent", "--cleanup", "--config", n.Config).CombinedOutput(); err != nil {
		t.Fatalf("skiff agent --cleanup: %v\n%s", err, out)
	}
	if o, err := c.ipOut(n.Name, "-o", "-4", "addr", "show"); err != nil || strings.Contains(o, ":skvip") {
		t.Errorf("after --cleanup n%d has:\n%s (%v)\nwant no :skvip address", killed, o, err)
	}
}

// rendezvousWinner is the node the agents choose for addr among names with
// the default policy (agent.vipHolders: the highest FNV-1a 64 of
// addr, NUL, node name).
func rendezvousWinner(addr string, names []string) string {
	best, bestScore := "", uint64(0)
	for _, n := range names {
		h := fnv.New64a()
		h.Write([]byte(addr))
		h.Write([]byte{0})
		h.Write([]byte(n))
		if sc := h.Sum64(); best == "" || sc > bestScore || (sc == bestScore && n < best) {
			best, bestScore = n, sc
		}
	}
	return best
}

// TestLBVIPServerHolder: the node that holds the address is the server
// (node 0, `skiff server --agent`): cut off and killed, the agents move the
// address from the gossip alone, with no API to ask; the LAN client is
// answered through another node, whose MAC its ARP cache then has. When
// the server returns, the status names the node that holds the address,
// and the address it had picked for another service is unchanged (the
// allocation was in its store before the kill -9).
func TestLBVIPServerHolder(t *testing.T) {
	c := New(t, Options{Nodes: 3, ServerTables: func(net3 string) string {
		return fmt.Sprintf("[lb]\npools = [\"%s.201-%s.254\"]\n", net3, net3) // not .200, the LAN client
	}})
	lan := c.lanClient(t)
	t.Cleanup(func() { c.logVIPEvents(t) })
	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.Name)
	}
	// An address of the pool that the server wins.
	addr := ""
	for i := 201; i <= 254 && addr == ""; i++ {
		if a := fmt.Sprintf("%s.%d", c.net3, i); rendezvousWinner(a, names) == c.Nodes[0].Name {
			addr = a
		}
	}
	if addr == "" {
		t.Fatalf("node 0 wins none of the 54 addresses of the pool (chance (2/3)^54)")
	}
	c.Apply(DemoManifest(3) + fmt.Sprintf(`
[service.shop]
app = "web"
port = 80
target_port = "http"
type = "load-balancer"
address = %q

[service.auto]
app = "web"
port = 81
target_port = "http"
type = "load-balancer"
`, addr))
	c.WaitAppReady("web", 3, appTimeout)
	auto, _ := c.serviceAddr("auto", 30*time.Second)
	if h := c.waitStatusHolder("shop", addr); h != 0 {
		t.Fatalf("holder n%d, want the server n0", h)
	}
	victim, next, secs := c.vipFailover(t, lan, addr, 80)
	t.Logf("server %s cut and killed: first answer through %s after %.2fs, from %s", c.Nodes[victim].Name, addr, secs, c.Nodes[next].Name)
	// Back: node 0 wins again, takes the address back and reports it;
	// exactly one node holds it.
	c.Heal(0)
	c.Start(0)
	if h := c.waitStatusHolder("shop", addr); h != 0 {
		t.Errorf("after the server's return n%d holds %s, want n0 (it wins the hash)", h, addr)
	}
	// The address the server picked for auto survived its kill -9.
	if got, _ := c.serviceAddr("auto", 30*time.Second); got != auto {
		t.Errorf("auto has %s after the server's kill -9, had %s", got, auto)
	}
	c.WaitFor("the client reaches "+addr, 30*time.Second, func() (bool, error) {
		_, err := GetIn(lan, addr+":80", 2*time.Second)
		return err == nil, err
	})
}

// gossipRules drops (add) or lets through again (delete) every gossip
// packet in and out of node i's netns, TCP and UDP on 7946: the node and
// the others each see the other side fail while the LAN, the API and the
// pods keep working (a split of the gossip alone, the worst case).
func (c *Cluster) gossipRules(tb testing.TB, i int, op string) {
	tb.Helper()
	for _, r := range [][]string{
		{"INPUT", "--dport"}, {"INPUT", "--sport"}, {"OUTPUT", "--dport"}, {"OUTPUT", "--sport"},
	} {
		for _, proto := range []string{"udp", "tcp"} {
			out, err := exec.Command("nsenter", "--net="+c.Nodes[i].NetnsPath(), "iptables", op, r[0],
				"-p", proto, r[1], "7946", "-j", "DROP").CombinedOutput()
			if err != nil {
				tb.Fatalf("iptables %s %s in node %d: %v: %s", op, r[0], i, err, out)
			}
		}
	}
}

// TestLBVIPSplit: the holder's gossip is cut off from the others while the
// LAN still reaches everyone. Each side sees the other fail: the others
// choose a holder among themselves, the cut-off node keeps its address,
// and for the split two nodes answer ARP for it (the LAN follows the last
// gratuitous ARP; the client is still answered). When the gossip heals,
// one node keeps the address, sends gratuitous ARP again, and the client's
// ARP cache points at it.
func TestLBVIPSplit(t *testing.T) {
	c := New(t, Options{Nodes: 3, ServerTables: vipPools})
	lan := c.lanClient(t)
	t.Cleanup(func() { c.logVIPEvents(t) })
	c.Apply(vipManifest())
	c.WaitAppReady("web", 3, appTimeout)
	addr, _ := c.serviceAddr("shop", 30*time.Second)
	h := c.waitStatusHolder("shop", addr)
	c.WaitFor("an answer through "+addr, 30*time.Second, func() (bool, error) {
		_, err := GetIn(lan, addr+":80", 2*time.Second)
		return err == nil, err
	})
	c.gossipRules(t, h, "-I")
	healed := false
	t.Cleanup(func() {
		if !healed {
			c.gossipRules(t, h, "-D")
		}
	})
	c.WaitFor("two holders of "+addr+" during the split", 30*time.Second, func() (bool, error) {
		hs, err := c.vipHolders(addr)
		return err == nil && len(hs) == 2 && slices.Contains(hs, h), fmt.Errorf("holders %v, %v", hs, err)
	})
	hs, _ := c.vipHolders(addr)
	t.Logf("split: %s held by %v (n%d cut off from the gossip)", addr, hs, h)
	c.WaitFor("the client answered during the split", 30*time.Second, func() (bool, error) {
		_, err := GetIn(lan, addr+":80", 2*time.Second)
		return err == nil, err
	})

	c.gossipRules(t, h, "-D")
	healed = true
	var one int
	c.WaitFor("one holder of "+addr+" after the heal", 60*time.Second, func() (bool, error) {
		hs, err := c.vipHolders(addr)
		if err == nil && len(hs) == 1 {
			one = hs[0]
		}
		return err == nil && len(hs) == 1, fmt.Errorf("holders %v, %v", hs, err)
	})
	if one != h {
		t.Errorf("after the heal n%d holds %s, want n%d (it wins the hash)", one, addr, h)
	}
	m, err := c.mac(c.Nodes[one].Name)
	if err != nil {
		t.Fatal(err)
	}
	c.WaitFor("the client's ARP entry for "+addr+" is the holder's", 30*time.Second, func() (bool, error) {
		got, err := c.neighMAC(addr)
		return err == nil && got == m, fmt.Errorf("entry %q, want %s (%v)", got, m, err)
	})
	c.WaitFor("the client reaches "+addr, 30*time.Second, func() (bool, error) {
		_, err := GetIn(lan, addr+":80", 2*time.Second)
		return err == nil, err
	})
}
