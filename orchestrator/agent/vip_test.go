package agent

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

func lbService(name, addr string) *api.Service {
	return &api.Service{Meta: api.Meta{Name: name},
		Spec:   configs.ServiceSpec{App: name, Port: 80, Type: configs.ServiceLoadBalancer},
		Status: api.ServiceStatus{ClusterIP: "10.96.0.10", Address: addr}}
}

func alivePeers(names ...string) []Peer {
	var out []Peer
	for _, n := range names {
		out = append(out, Peer{Name: n, Alive: true})
	}
	return out
}

func listedNodes(names ...string) []peerNode {
	var out []peerNode
	for _, n := range names {
		out = append(out, peerNode{Name: n, Addr: "192.0.2.1"})
	}
	return out
}

// TestVIPHolders: one holder per address, the same for any order of the
// members; nodes with a ready endpoint preferred; failed, unlisted and
// address-less nodes never chosen; the holder changes only for the
// addresses the failed node held.
func TestVIPHolders(t *testing.T) {
	svcs := map[string]*api.Service{}
	for i, a := range []string{"192.0.2.240", "192.0.2.241", "192.0.2.242", "192.0.2.243", "192.0.2.244", "192.0.2.245"} {
		name := string(rune('a' + i))
		svcs[name] = lbService(name, a)
	}
	svcs["cluster"] = &api.Service{Meta: api.Meta{Name: "cluster"}, Spec: configs.ServiceSpec{App: "x", Port: 80}}
	nodes := listedNodes("n1", "n2", "n3")
	all := vipHolders(svcs, nil, alivePeers("n1", "n2", "n3"), nodes)
	if len(all) != 6 {
		t.Fatalf("holders %v: want one per load-balancer address", all)
	}
	rev := alivePeers("n3", "n2", "n1")
	if got := vipHolders(svcs, nil, rev, nodes); !mapsEqual(got, all) {
		t.Fatalf("member order changed the choice: %v vs %v", got, all)
	}
	used := map[string]bool{}
	for _, w := range all {
		used[w.node] = true
	}
	if len(used) < 2 {
		t.Errorf("6 addresses over 3 nodes all went to %v", used)
	}
	// n2 fails: only its addresses move, and never to n2.
	ps := []Peer{{Name: "n1", Alive: true}, {Name: "n2", Failed: true}, {Name: "n3", Alive: true}}
	after := vipHolders(svcs, nil, ps, nodes)
	for addr, w := range all {
		switch {
		case after[addr].node == "n2":
			t.Errorf("%s still on failed n2", addr)
		case w.node != "n2" && after[addr] != w:
			t.Errorf("%s moved from %s to %s though %s is alive", addr, w.node, after[addr].node, w.node)
		}
	}
	// A ready endpoint on the node that a does not pick by hash: the
	// default policy (any-node) ignores it, ready-node follows it.
	other := "n1"
	if all["192.0.2.240"].node == "n1" {
		other = "n3"
	}
	eps := map[string]*api.Endpoints{"a": {Meta: api.Meta{Name: "a"}, Endpoints: []api.Endpoint{{Node: other, IP: "10.88.2.5", Port: 80}}}}
	if got := vipHolders(svcs, eps, alivePeers("n1", "n2", "n3"), nodes)["192.0.2.240"]; got != all["192.0.2.240"] {
		t.Errorf("any-node: a's holder %v moved with its endpoint, want %v", got, all["192.0.2.240"])
	}
	ready := *svcs["a"]
	ready.Spec.Announce = configs.AnnounceReadyNode
	svcs["a"] = &ready
	if got := vipHolders(svcs, eps, alivePeers("n1", "n2", "n3"), nodes)["192.0.2.240"].node; got != other {
		t.Errorf("ready-node: a's holder %s, want %s (its only ready endpoint)", got, other)
	}
	// Its node failed: any alive node.
	down := []Peer{{Name: other, Failed: true}}
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != other {
			down = append(down, Peer{Name: n, Alive: true})
		}
	}
	if got := vipHolders(svcs, eps, down, nodes)["192.0.2.240"].node; got == other || got == "" {
		t.Errorf("ready-node: a's holder %q with its endpoint's node failed, want another alive node", got)
	}
	// Alive but not listed by the server, or listed without an address:
	// never a holder.
	odd := []peerNode{{Name: "n1"}, {Name: "n2", Addr: "192.0.2.2"}}
	for _, w := range vipHolders(svcs, nil, alivePeers("n1", "n2", "intruder"), odd) {
		if w.node != "n2" {
			t.Errorf("holder %s, want only n2", w.node)
		}
	}
	if got := vipHolders(svcs, nil, nil, nodes); len(got) != 0 {
		t.Errorf("no alive member: %v, want no holder", got)
	}
}

func mapsEqual(a, b map[string]vipWant) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// fakeLink models a LAN link: the addresses on it and the announcements
// sent.
type fakeLink struct {
	mu        sync.Mutex
	addrs     map[string]bool
	announced []string
}

func (f *fakeLink) Add(ip net.IP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs[ip.String()] = true
	return nil
}

func (f *fakeLink) Del(ip net.IP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.addrs, ip.String())
	return nil
}

func (f *fakeLink) Held(map[string]bool) ([]net.IP, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []net.IP
	for a := range f.addrs {
		out = append(out, net.ParseIP(a))
	}
	return out, nil
}

func (f *fakeLink) Announce(ip net.IP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announced = append(f.announced, ip.String())
	return nil
}

func (f *fakeLink) state() (addrs []string, announced []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a := range f.addrs {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	return addrs, slices.Clone(f.announced)
}

// TestVIPSync: two agents over the same inputs: exactly one takes the
// address, announces it and reports itself; when the holder fails the
// other takes it and the failed one, seeing itself alone after a restart,
// takes nothing while the listed peers are unknown; a deleted service's
// address is released; a stop releases all.
func TestVIPSync(t *testing.T) {
	svcs := map[string]*api.Service{"web": lbService("web", "192.0.2.240")}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var mu sync.Mutex
	reports := map[string]int{}
	mk := func(name string) (*vips, *fakeLink) {
		v := newVIPs(name, log)
		l := &fakeLink{addrs: map[string]bool{}}
		v.net = l
		v.source = func() (map[string]*api.Service, map[string]*api.Endpoints) {
			mu.Lock()
			defer mu.Unlock()
			return maps2(svcs), nil
		}
		v.report = func(_ context.Context, service, addr string) error {
			mu.Lock()
			defer mu.Unlock()
			reports[name+" "+service+" "+addr]++
			return nil
		}
		v.started = time.Now().Add(-time.Hour)
		v.burst = []time.Duration{time.Millisecond}
		return v, l
	}
	nodes := listedNodes("n1", "n2")
	v1, l1 := mk("n1")
	v2, l2 := mk("n2")
	ctx := context.Background()
	var wg sync.WaitGroup
	rep := make(chan string, 16)
	syncBoth := func(ps []Peer) {
		for _, v := range []*vips{v1, v2} {
			v.setMembers(ps, nodes)
			v.sync(ctx, &wg, rep)
		}
		wg.Wait()
	}
	syncBoth(alivePeers("n1", "n2"))
	holder, other, hl, ol := v1, v2, l1, l2
	if a, _ := l2.state(); len(a) == 1 {
		holder, other, hl, ol = v2, v1, l2, l1
	}
	ha, hann := hl.state()
	oa, _ := ol.state()
	if !slices.Equal(ha, []string{"192.0.2.240"}) || len(oa) != 0 {
		t.Fatalf("holder %s has %v, other %s has %v: want the address on exactly one", holder.self, ha, other.self, oa)
	}
	if len(hann) == 0 {
		t.Error("the holder sent no gratuitous arp")
	}
	mu.Lock()
	if reports[holder.self+" web 192.0.2.240"] != 1 || len(reports) != 1 {
		t.Errorf("reports %v, want one from %s", reports, holder.self)
	}
	mu.Unlock()

	// The holder fails: the other takes over.
	failed := []Peer{{Name: holder.self, Failed: true}, {Name: other.self, Alive: true}}
	other.setMembers(failed, nodes)
	other.sync(ctx, &wg, rep)
	wg.Wait()
	if oa, oann := ol.state(); !slices.Equal(oa, []string{"192.0.2.240"}) || len(oann) == 0 {
		t.Fatalf("after the holder failed the other has %v (announced %v)", oa, oann)
	}

	// The failed holder restarts seeing only itself: it keeps what it
	// has (settling) instead of taking or dropping; then it sees the other
	// alive and keeps the address off its link.
	restarted, rl := mk(holder.self)
	restarted.started = time.Now()
	rl.addrs["192.0.2.240"] = true // left from before the kill
	restarted.setMembers(alivePeers(holder.self), nodes)
	restarted.sync(ctx, &wg, rep)
	if a, _ := rl.state(); len(a) != 1 {
		t.Fatalf("settling agent changed its link: %v", a)
	}
	restarted.setMembers(append(alivePeers(holder.self), Peer{Name: other.self, Alive: true}), nodes)
	restarted.sync(ctx, &wg, rep)
	wg.Wait()
	rs, _ := rl.state()
	ots, _ := ol.state()
	if want := vipHolders(svcs, nil, alivePeers("n1", "n2"), nodes)["192.0.2.240"].node; want == restarted.self {
		if len(rs) != 1 {
			t.Errorf("restarted preferred holder has %v", rs)
		}
	} else if len(rs) != 0 || len(ots) != 1 {
		t.Errorf("restarted %v, other %v: want the address only on the other", rs, ots)
	}

	// Delete the service: the address leaves the link.
	mu.Lock()
	delete(svcs, "web")
	mu.Unlock()
	other.kick()
	other.sync(ctx, &wg, rep)
	if a, _ := ol.state(); len(a) != 0 {
		t.Errorf("deleted service's address still held: %v", a)
	}
	// A stop releases everything held.
	hl.addrs["192.0.2.241"] = true
	holder.held = map[string]bool{"192.0.2.241": true}
	holder.releaseAll()
	if a, _ := hl.state(); len(a) != 0 {
		t.Errorf("after stop the link holds %v", a)
	}
}

func maps2(m map[string]*api.Service) map[string]*api.Service { return maps.Clone(m) }

// TestVIPReportRetriesTooMany: a holder report the server refuses with 429
// (the holder changed moments ago, apiserver.HolderMinInterval) is sent
// again after vipRetryTooMany, without waiting for a resync or another
// change, so a failover soon after a flip is recorded within about a
// second of the server's bound; other errors wait for the next sync.
func TestVIPReportRetriesTooMany(t *testing.T) {
	old := vipRetryTooMany
	vipRetryTooMany = 10 * time.Millisecond
	t.Cleanup(func() { vipRetryTooMany = old })
	v := newVIPs("n1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	v.net = &fakeLink{addrs: map[string]bool{}}
	v.burst = nil
	v.started = time.Now().Add(-time.Hour)
	svc := lbService("web", "192.0.2.240")
	svc.Status.Holder = "n2" // the server still names the old holder
	v.source = func() (map[string]*api.Service, map[string]*api.Endpoints) {
		return map[string]*api.Service{"web": svc}, nil
	}
	calls := make(chan int, 100)
	var n atomic.Int32
	v.report = func(context.Context, string, string) error {
		c := n.Add(1)
		calls <- int(c)
		if c <= 2 {
			return &client.APIError{Status: http.StatusTooManyRequests, Code: api.CodeTooMany, Message: "too soon"}
		}
		return nil
	}
	v.setMembers(alivePeers("n1"), listedNodes("n1"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.run(ctx, time.Hour); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.After(30 * time.Second)
	for got := 0; got < 3; {
		select {
		case got = <-calls:
		case <-deadline:
			t.Fatalf("%d reports, want 3: a 429 is not retried before the next resync", n.Load())
		}
	}
}
