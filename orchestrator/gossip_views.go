package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/orchestrator/agent"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/controller"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// gossip is this node's serf member as the rest of the process reads it.
// The member has one event channel; run fans each event out to every
// reader's channel, and each reader (the node lifecycle, the agent's
// peers, the API) gets a view in its own terms.
type gossip struct {
	m   *cluster.Member
	log *slog.Logger
	// mu protects subs.
	mu   sync.Mutex
	subs []chan struct{}
}

func newGossip(m *cluster.Member, log *slog.Logger) *gossip {
	return &gossip{m: m, log: log}
}

// subscribe returns a new reader's change channel.
func (g *gossip) subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	g.mu.Lock()
	g.subs = append(g.subs, ch)
	g.mu.Unlock()
	return ch
}

// run tells every reader of each member event until ctx ends or the
// member stops. It never blocks on a reader: one pending signal is
// enough, since readers re-list the members.
func (g *gossip) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-g.m.Events():
			if !ok {
				return
			}
			g.log.Info("member event", "type", ev.Type, "member", ev.Member.Name, "status", ev.Member.Status)
		}
		g.mu.Lock()
		for _, ch := range g.subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		g.mu.Unlock()
	}
}

// lifecycleView is the gossip as the node lifecycle reads it.
type lifecycleView struct {
	g       *gossip
	changed chan struct{}
}

var _ controller.MemberSource = (*lifecycleView)(nil)

func (g *gossip) lifecycleView() *lifecycleView {
	return &lifecycleView{g: g, changed: g.subscribe()}
}

func (v *lifecycleView) Members() []controller.Member {
	self := v.g.m.Name()
	var out []controller.Member
	for _, mi := range v.g.m.Members() {
		out = append(out, controller.Member{Name: mi.Name, State: memberState(mi.Status), Self: mi.Name == self})
	}
	return out
}

func (v *lifecycleView) Changed() <-chan struct{} { return v.changed }

// memberState maps cluster's statuses to the controller's.
func memberState(s cluster.Status) controller.MemberState {
	switch s {
	case cluster.StatusAlive:
		return controller.MemberAlive
	case cluster.StatusSuspect:
		return controller.MemberSuspect
	case cluster.StatusLeaving:
		return controller.MemberLeaving
	case cluster.StatusLeft:
		return controller.MemberLeft
	case cluster.StatusFailed:
		return controller.MemberFailed
	}
	return controller.MemberState(s)
}

// peersView is the gossip as the agent reads it.
type peersView struct {
	g       *gossip
	changed chan struct{}
}

var _ agent.Gossip = (*peersView)(nil)

func (g *gossip) peersView() *peersView {
	return &peersView{g: g, changed: g.subscribe()}
}

func (v *peersView) Peers() []agent.Peer {
	var out []agent.Peer
	for _, mi := range v.g.m.Members() {
		out = append(out, agent.Peer{Name: mi.Name, IP: mi.IP, PodCIDR: mi.PodCIDR,
			Alive: mi.Status == cluster.StatusAlive, Failed: mi.Status == cluster.StatusFailed})
	}
	return out
}

func (v *peersView) Changed() <-chan struct{} { return v.changed }

// AnnouncePodCIDR puts cidr in the member's tags, unless it is there.
func (v *peersView) AnnouncePodCIDR(cidr string) error {
	t := v.g.m.Tags()
	if t.PodCIDR == cidr {
		return nil
	}
	t.PodCIDR = cidr
	return v.g.m.SetTags(t)
}

// apiView is the gossip as the API serves it.
type apiView struct {
	m  *cluster.Member
	st *store.Store // the raft configuration's voters and leader
}

var _ apiserver.Membership = apiView{}

func (v apiView) Members() []api.Member {
	raft := map[string]store.RaftServer{}
	if v.st != nil {
		if svs, err := v.st.Servers(); err == nil {
			for _, sv := range svs {
				raft[sv.ID] = sv
			}
		}
	}
	var out []api.Member
	for _, mi := range v.m.Members() {
		am := api.Member{Name: mi.Name, Addr: net.JoinHostPort(mi.Addr, fmt.Sprint(mi.Port)),
			Status: string(mi.Status), Role: mi.Role, API: mi.APIAddr, IP: mi.IP, PodCIDR: mi.PodCIDR, Labels: mi.Labels}
		// Only servers are in the raft configuration: an agent's tags
		// cannot put it there (a server adds itself with its certificate).
		if sv, ok := raft[mi.Name]; ok && mi.Role == cluster.RoleServer {
			am.Raft, am.Leader = sv.Suffrage, sv.Leader
			if mi.Witness && sv.Suffrage == "voter" {
				am.Raft = "witness"
			}
		}
		out = append(out, am)
	}
	return out
}

func (v apiView) ClusterInfo() api.ClusterInfo {
	var ci api.ClusterInfo
	for _, mi := range v.m.Members() {
		if mi.Role == cluster.RoleServer && mi.Status.Running() {
			ci.Gossip = append(ci.Gossip, net.JoinHostPort(mi.Addr, fmt.Sprint(mi.Port)))
		}
	}
	ci.Servers = v.m.Servers()
	return ci
}
