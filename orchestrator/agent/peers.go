package agent

import (
	"context"
	"net"
	"time"

	"github.com/skiff-edge/skiff/netlb"
)

// Gossip is the node's view of the cluster membership, as the agent uses
// it: it announces this node's pod CIDR there, keeps a route to every
// peer's pod CIDR, and leaves the endpoints of peers the gossip reports
// failed out of this node's load balancer. orchestrator's gossip adapter
// satisfies it over the node's serf member.
type Gossip interface {
	// Peers lists every member the gossip knows, this node's own included
	// (the agent skips its own name).
	Peers() []Peer
	// Changed receives a value when Peers may have changed. It returns the
	// same channel on every call, which is never closed. A source must not
	// block on it: a channel of one, sent to only if empty, coalesces a
	// burst of changes into one sync, which re-lists the peers.
	Changed() <-chan struct{}
	// AnnouncePodCIDR tells the other members this node's pod CIDR, so that
	// they route it here. It may be called again with the same CIDR.
	AnnouncePodCIDR(cidr string) error
}

// Peer is one member of the gossip, as its tags and state say.
type Peer struct {
	Name string
	// IP is the node's address, the next hop to its pods; "" if it
	// announced none.
	IP string
	// PodCIDR is the node's pod CIDR; "" until its agent announced it.
	PodCIDR string
	// Alive: it answers probes (not suspect, leaving, left or failed).
	Alive bool
	// Failed: it stopped answering probes. A graceful leave is no failure.
	Failed bool
}

// peerResync is how often the peer routes are rewritten without a change.
const peerResync = 10 * time.Second

// startPeers announces podCIDR through the configured Gossip and keeps the
// peer routes of nw and the down nodes in step with it until ctx ends or
// the returned stop is called; stop returns once the loop has ended. It
// does nothing without a Gossip.
func (a *Agent) startPeers(ctx context.Context, podCIDR *net.IPNet, nw *netlb.Network) (stop func()) {
	g := a.cfg.Gossip
	if g == nil {
		return func() {}
	}
	if err := g.AnnouncePodCIDR(podCIDR.String()); err != nil {
		a.log.Warn("announce pod cidr", "err", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.followPeers(ctx, g, nw.SetPeers)
	}()
	return func() { cancel(); <-done }
}

// followPeers syncs on every change of g's peers and every peerResync
// until ctx ends (level-triggered: each sync re-lists the peers). Each
// sync sets the routes (with setRoutes, nw.SetPeers outside tests) and the
// nodes whose endpoints this node's load balancer leaves out.
func (a *Agent) followPeers(ctx context.Context, g Gossip, setRoutes func([]netlb.Peer) error) {
	t := time.NewTicker(peerResync)
	defer t.Stop()
	for {
		ps := g.Peers()
		if err := setRoutes(peerRoutes(a.name, ps)); err != nil {
			a.log.Warn("set peer routes", "err", err)
		}
		a.SetDownNodes(failedPeers(a.name, ps))
		select {
		case <-ctx.Done():
			return
		case <-g.Changed():
		case <-t.C:
		}
	}
}

// peerRoutes are the routes to the peers other than self that announce an
// IP and a pod CIDR. A failed or departed peer keeps its route: its pods
// may still run (a server restarted gracefully leaves and comes back, its
// containers untouched), and a stale route costs nothing. When two peers
// announce the same pod CIDR (a node's CIDR given to another after it was
// deleted), the alive one wins, else the first listed. Tags that do not
// parse are skipped.
func peerRoutes(self string, ps []Peer) []netlb.Peer {
	byCIDR := map[string]Peer{}
	var order []string
	for _, p := range ps {
		if p.Name == self || p.IP == "" || p.PodCIDR == "" {
			continue
		}
		prev, ok := byCIDR[p.PodCIDR]
		if !ok {
			order = append(order, p.PodCIDR)
		}
		if !ok || (!prev.Alive && p.Alive) {
			byCIDR[p.PodCIDR] = p
		}
	}
	var out []netlb.Peer
	for _, c := range order {
		p := byCIDR[c]
		ip := net.ParseIP(p.IP)
		_, cidr, err := net.ParseCIDR(p.PodCIDR)
		if ip == nil || err != nil {
			continue
		}
		out = append(out, netlb.Peer{Name: p.Name, NodeIP: ip, PodCIDR: cidr})
	}
	return out
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
