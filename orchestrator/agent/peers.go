package agent

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/netlb"
)

// Gossip is the node's view of the cluster membership, as the agent uses
// it. Gossip carries liveness only: the agent leaves the endpoints of
// peers the gossip reports failed out of this node's load balancer, and
// re-lists the server's nodes when the membership changes. The routes to
// other nodes' pod CIDRs come from the server's node list, never from a
// member's tags: any member holding the gossip key can set any tag.
// orchestrator's gossip adapter satisfies it over the node's serf member.
type Gossip interface {
	// Peers lists every member the gossip knows, this node's own included
	// (the agent skips its own name).
	Peers() []Peer
	// Changed receives a value when Peers may have changed. It returns the
	// same channel on every call, which is never closed. A source must not
	// block on it: a channel of one, sent to only if empty, coalesces a
	// burst of changes into one sync, which re-lists the peers.
	Changed() <-chan struct{}
	// AnnouncePodCIDR tells the other members this node's pod CIDR, for
	// `skiff members`. No node routes by it. It may be called again with
	// the same CIDR.
	AnnouncePodCIDR(cidr string) error
}

// Peer is one member of the gossip, as its tags and state say.
type Peer struct {
	Name string
	// IP is the address the member announces; "" if it announced none.
	// Only compared with the server's node list.
	IP string
	// PodCIDR is the pod CIDR the member announces; "" until its agent
	// announced it. Only compared with the server's node list.
	PodCIDR string
	// Alive: it answers probes (not suspect, leaving, left or failed).
	Alive bool
	// Failed: it stopped answering probes. A graceful leave is no failure.
	Failed bool
}

// peerNode is a node as the server lists it, the part the routes need:
// its name, its registered address (the next hop to its pods) and the pod
// CIDR the server allocated it. The agent cache keeps them, so that the
// routes survive a restart while no server answers.
type peerNode struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	PodCIDR string `json:"pod_cidr"`
}

// peerResync is how often the server's nodes are re-listed and the peer
// routes rewritten without a gossip change.
const peerResync = 10 * time.Second

// listNodesTimeout bounds one listing of the server's nodes: a server that
// does not answer leaves the routes as the last list (or the cache) made
// them.
const listNodesTimeout = 5 * time.Second

// peerState is what the peer loop keeps between syncs: the last node list
// that the server returned (or the cache held) and the gossip tags already
// warned about.
type peerState struct {
	// mu protects nodes, which the cache loop reads.
	mu    sync.Mutex
	nodes []peerNode
	// warned is, per member name, the tag disagreement last logged, and
	// refused, per node name, why it has no route as last logged; only the
	// peer loop uses them.
	warned  map[string]string
	refused map[string]string
}

// setNodes replaces the known node list.
func (s *peerState) setNodes(ns []peerNode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes = slices.Clone(ns)
}

// snapshot is the known node list, for the cache.
func (s *peerState) snapshot() []peerNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.nodes)
}

// startPeers announces podCIDR through the configured Gossip and keeps the
// peer routes of nw (from the server's node list) and the down nodes
// (from the gossip) in step until ctx ends or the returned stop is called;
// stop returns once the loop has ended. It does nothing without a Gossip.
func (a *Agent) startPeers(ctx context.Context, podCIDR *net.IPNet, nw *netlb.Network) (stop func()) {
	g := a.cfg.Gossip
	if g == nil {
		return func() {}
	}
	if err := g.AnnouncePodCIDR(podCIDR.String()); err != nil {
		a.log.Warn("announce pod cidr", "err", err)
	}
	_, clusterCIDR, err := net.ParseCIDR(a.cfg.Node.ClusterCIDR)
	if err != nil {
		a.log.Warn("no peer routes: cluster cidr", "cidr", a.cfg.Node.ClusterCIDR, "err", err)
		clusterCIDR = nil
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.followPeers(ctx, g, a.listPeerNodes, podCIDR, clusterCIDR, nw.SetPeers)
	}()
	return func() { cancel(); <-done }
}

// listPeerNodes lists the server's nodes.
func (a *Agent) listPeerNodes(ctx context.Context) ([]peerNode, error) {
	ctx, cancel := context.WithTimeout(ctx, listNodesTimeout)
	defer cancel()
	l, err := a.c.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]peerNode, 0, len(l.Items))
	for _, n := range l.Items {
		pn := peerNode{Name: n.Name, PodCIDR: n.Spec.PodCIDR}
		if len(n.Status.Addresses) > 0 {
			pn.Addr = n.Status.Addresses[0]
		}
		out = append(out, pn)
	}
	return out, nil
}

// listWait is how long a sync waits for the node list it asked for before
// it sets the routes from the last one; a list that comes later syncs the
// routes again.
const listWait = time.Second

// followPeers syncs on every change of g's peers and every peerResync
// until ctx ends (level-triggered). Each sync first sets, from the gossip,
// the nodes whose endpoints this node's load balancer leaves out (at
// once, whether or not a server answers), then asks for the server's
// nodes with list (in the background: a server that does not answer
// keeps the last list), sets the routes that list makes with setRoutes
// (nw.SetPeers outside tests) and warns of gossip tags that disagree with
// it.
func (a *Agent) followPeers(ctx context.Context, g Gossip, list func(context.Context) ([]peerNode, error),
	self, clusterCIDR *net.IPNet, setRoutes func([]netlb.Peer) error) {
	t := time.NewTicker(peerResync)
	defer t.Stop()
	relist := make(chan struct{}, 1)
	listed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { a.listNodesLoop(ctx, list, relist, listed) })
	wait := time.NewTimer(0)
	defer wait.Stop()
	ask := true
	for {
		ps := g.Peers()
		a.SetDownNodes(failedPeers(a.name, ps))
		a.vip.setMembers(ps, a.peers.snapshot()) // at once: the server may be the member that failed
		if ask {
			notify(relist)
			wait.Reset(listWait)
			select {
			case <-ctx.Done():
				return
			case <-listed:
			case <-wait.C:
			}
		}
		nodes := a.peers.snapshot()
		a.vip.setMembers(ps, nodes)
		if clusterCIDR != nil {
			routes, refused := peerRoutes(a.name, self, clusterCIDR, nodes)
			if err := setRoutes(routes); err != nil {
				a.log.Warn("set peer routes", "err", err)
			}
			a.warnRefused(refused)
		}
		a.warnTags(ps, nodes)
		ask = true
		select {
		case <-ctx.Done():
			return
		case <-g.Changed():
		case <-t.C:
		case <-listed:
			ask = false // a slow list came back: sync its routes, without asking again
		}
	}
}

// listNodesLoop lists the server's nodes with list on every relist and
// says so on listed, until ctx ends. A list that fails keeps the last
// one, with one warning until a list succeeds again.
func (a *Agent) listNodesLoop(ctx context.Context, list func(context.Context) ([]peerNode, error), relist <-chan struct{}, listed chan<- struct{}) {
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-relist:
		}
		ns, err := list(ctx)
		switch {
		case err != nil:
			if !failing && ctx.Err() == nil {
				a.log.Warn("list nodes for peer routes; keeping the last list", "err", err)
			}
			failing = true
		default:
			failing = false
			a.peers.setNodes(ns)
		}
		notify(listed)
	}
}

// notify sends on a channel of one without blocking.
func notify(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// peerRoutes are the routes to the nodes other than self, as the server
// lists them: a node gets a route iff it has an address and a pod CIDR
// inside clusterCIDR that overlaps neither self's pod CIDR nor another
// listed node's. A failed or departed member keeps its route while the
// server lists its node: its pods may still run (a server restarted
// gracefully leaves and comes back, its containers untouched). refused
// says, per node with an address and a pod CIDR left without a route,
// why.
func peerRoutes(selfName string, self, clusterCIDR *net.IPNet, nodes []peerNode) (routes []netlb.Peer, refused map[string]string) {
	type cand struct {
		name string
		ip   net.IP
		cidr *net.IPNet
	}
	refused = map[string]string{}
	var cands []cand
	for _, n := range nodes {
		if n.Name == selfName || n.Addr == "" || n.PodCIDR == "" {
			continue
		}
		ip := net.ParseIP(n.Addr)
		_, cidr, err := net.ParseCIDR(n.PodCIDR)
		if ip == nil || err != nil {
			refused[n.Name] = "address " + n.Addr + " or pod cidr " + n.PodCIDR + " does not parse"
			continue
		}
		if !inside(cidr, clusterCIDR) {
			refused[n.Name] = "pod cidr " + n.PodCIDR + " is outside the cluster cidr " + clusterCIDR.String()
			continue
		}
		if self != nil && overlaps(cidr, self) {
			refused[n.Name] = "pod cidr " + n.PodCIDR + " overlaps this node's " + self.String()
			continue
		}
		cands = append(cands, cand{n.Name, ip, cidr})
	}
	for i, c := range cands {
		clash := ""
		for j, o := range cands {
			if i != j && overlaps(c.cidr, o.cidr) {
				clash = o.name
				break
			}
		}
		if clash != "" {
			refused[c.name] = "pod cidr " + c.cidr.String() + " overlaps node " + clash + "'s"
			continue
		}
		routes = append(routes, netlb.Peer{Name: c.name, NodeIP: c.ip, PodCIDR: c.cidr})
	}
	return routes, refused
}

// inside reports whether inner lies wholly within outer.
func inside(inner, outer *net.IPNet) bool {
	io, ib := inner.Mask.Size()
	oo, ob := outer.Mask.Size()
	return ib == ob && io >= oo && outer.Contains(inner.IP)
}

// overlaps reports whether two networks share an address.
func overlaps(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }

// warnRefused logs, once per change, the nodes the server lists that get
// no route, and why.
func (a *Agent) warnRefused(refused map[string]string) {
	for name, why := range refused {
		if a.peers.refused[name] != why {
			a.log.Warn("no route to node: "+why, "node", name)
		}
	}
	a.peers.refused = refused
}

// warnTags logs, once per change, every member whose announced pod CIDR
// or IP disagrees with the server's node list (or which announces a pod
// CIDR with no node listed): its tags are ignored.
func (a *Agent) warnTags(ps []Peer, nodes []peerNode) {
	if a.peers.warned == nil {
		a.peers.warned = map[string]string{}
	}
	byName := map[string]peerNode{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if p.Name == a.name || p.PodCIDR == "" {
			continue
		}
		seen[p.Name] = true
		n, ok := byName[p.Name]
		var why string
		switch {
		case !ok:
			why = "no such node in the server's list"
		case p.PodCIDR != n.PodCIDR && p.IP != n.Addr:
			why = "pod cidr and ip differ from the server's"
		case p.PodCIDR != n.PodCIDR:
			why = "pod cidr differs from the server's"
		case p.IP != n.Addr:
			why = "ip differs from the server's"
		}
		key := ""
		if why != "" {
			key = strings.Join([]string{why, p.PodCIDR, p.IP, n.PodCIDR, n.Addr}, "|")
		}
		if key != a.peers.warned[p.Name] && why != "" {
			a.log.Warn("gossip tags ignored: "+why, "member", p.Name, "tag_pod_cidr", p.PodCIDR, "tag_ip", p.IP,
				"node_pod_cidr", n.PodCIDR, "node_addr", n.Addr)
		}
		if key == "" {
			delete(a.peers.warned, p.Name)
		} else {
			a.peers.warned[p.Name] = key
		}
	}
	for name := range a.peers.warned {
		if !seen[name] {
			delete(a.peers.warned, name)
		}
	}
}

// failedPeers are the peers other than self that the gossip reports
// failed, for SetDownNodes.
func failedPeers(self string, ps []Peer) map[string]bool {
	out := map[string]bool{}
	for _, p := range ps {
		if p.Failed && p.Name != self {
			out[p.Name] = true
		}
	}
	return out
}
