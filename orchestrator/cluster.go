package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Files of the gossip member under <data_dir>/serf.
const (
	SerfDir      = "serf"
	KeyringFile  = "keyring"
	SnapshotFile = "snapshot"
	// PKIDir holds the CA, the serving certificate and the join secret.
	PKIDir = "pki"
)

// peerResync is how often the peer routes are rewritten without an event.
const peerResync = 10 * time.Second

// startMember starts this node's serf member: role, tags from the node
// config (ip, labels; api for a server), the gossip key (it seeds the
// keyring file under <data_dir>/serf on first start), the snapshot, and the
// profile and timings of [gossip].
func startMember(node configs.NodeConfig, role string, key []byte, logger *slog.Logger) (*cluster.Member, error) {
	cfg := cluster.DefaultConfig()
	cfg.NodeName = node.NodeName
	cfg.BindAddr = node.GossipAddr
	ip := node.AdvertiseAddr
	if ip == "" {
		if h, _, err := net.SplitHostPort(node.GossipAddr); err == nil && h != "" && h != "0.0.0.0" {
			ip = h
		}
	}
	cfg.AdvertiseAddr = ip
	cfg.Tags = cluster.Tags{Role: role, IP: ip, Labels: node.Labels}
	if role == cluster.RoleServer {
		cfg.Tags.APIAddr = apiAdvertise(node, ip)
	}
	cfg.Profile = cluster.Profile(node.Gossip.Profile)
	cfg.ProbeInterval = node.Gossip.ProbeInterval.D()
	cfg.SuspicionMult = node.Gossip.SuspicionMult
	cfg.EncryptKey = key
	dir := filepath.Join(node.DataDir, SerfDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	cfg.KeyringFile = filepath.Join(dir, KeyringFile)
	cfg.SnapshotPath = filepath.Join(dir, SnapshotFile)
	cfg.Logger = logger
	m, err := cluster.Start(cfg)
	if err != nil {
		return nil, err
	}
	if ip == "" {
		// memberlist picked the address: announce it as the node's IP.
		t := m.Tags()
		t.IP, _, _ = net.SplitHostPort(m.Addr())
		if role == cluster.RoleServer {
			t.APIAddr = apiAdvertise(node, t.IP)
		}
		if err := m.SetTags(t); err != nil {
			m.Shutdown()
			return nil, err
		}
	}
	return m, nil
}

// apiAdvertise is the API address other nodes reach: api_addr, with the
// node's IP when api_addr listens on every address.
func apiAdvertise(node configs.NodeConfig, ip string) string {
	host, port, err := net.SplitHostPort(node.APIAddr)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" {
		if ip == "" {
			return ""
		}
		host = ip
	}
	return net.JoinHostPort(host, port)
}

// gossip runs a node's side of the membership: routes to every peer's pod
// CIDR (host-gw through netlb) and, on a server, the node lifecycle.
type gossip struct {
	m    *cluster.Member
	log  *slog.Logger
	kick chan struct{}

	mu   sync.Mutex
	nw   *netlb.Network
	down func(map[string]bool) // the agent's SetDownNodes
}

func newGossip(m *cluster.Member, log *slog.Logger) *gossip {
	return &gossip{m: m, log: log, kick: make(chan struct{}, 1)}
}

// network is the agent's Network hook: it announces the pod CIDR in the
// member's tags and lets the loop program the peer routes.
func (g *gossip) network(podCIDR *net.IPNet, nw *netlb.Network) {
	g.mu.Lock()
	g.nw = nw
	g.mu.Unlock()
	t := g.m.Tags()
	if t.PodCIDR != podCIDR.String() {
		t.PodCIDR = podCIDR.String()
		if err := g.m.SetTags(t); err != nil {
			g.log.Warn("announce pod cidr", "err", err)
		}
	}
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// setDown makes run report the failed members to fn (the local agent's
// SetDownNodes).
func (g *gossip) setDown(fn func(map[string]bool)) {
	g.mu.Lock()
	g.down = fn
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// run reacts to member events (level-triggered: it re-lists the members on
// each) until ctx ends: peer routes, then onChange if set.
func (g *gossip) run(ctx context.Context, onChange func([]cluster.MemberInfo)) {
	t := time.NewTicker(peerResync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-g.m.Events():
			if !ok {
				return
			}
			g.log.Info("member event", "type", ev.Type, "member", ev.Member.Name, "status", ev.Member.Status)
		case <-g.kick:
		case <-t.C:
		}
		ms := g.m.Members()
		g.syncPeers(ms)
		g.mu.Lock()
		down := g.down
		g.mu.Unlock()
		if down != nil {
			failed := map[string]bool{}
			for _, mi := range ms {
				if mi.Status == cluster.StatusFailed && mi.Name != g.m.Name() {
					failed[mi.Name] = true
				}
			}
			down(failed)
		}
		if onChange != nil {
			onChange(ms)
		}
	}
}

// syncPeers makes the routes match the members that announce an IP and a
// pod CIDR. A failed or departed member keeps its route: its pods may
// still run (a server restarted gracefully leaves and comes back, its
// containers untouched), and a stale route costs nothing. When two members
// announce the same pod CIDR (a node's CIDR given to another after it was
// deleted), the alive one wins.
func (g *gossip) syncPeers(ms []cluster.MemberInfo) {
	g.mu.Lock()
	nw := g.nw
	g.mu.Unlock()
	if nw == nil {
		return
	}
	byCIDR := map[string]cluster.MemberInfo{}
	var order []string
	for _, mi := range ms {
		if mi.Name == g.m.Name() || mi.IP == "" || mi.PodCIDR == "" {
			continue
		}
		prev, ok := byCIDR[mi.PodCIDR]
		if !ok {
			order = append(order, mi.PodCIDR)
		}
		if !ok || (prev.Status != cluster.StatusAlive && mi.Status == cluster.StatusAlive) {
			byCIDR[mi.PodCIDR] = mi
		}
	}
	var peers []netlb.Peer
	for _, c := range order {
		mi := byCIDR[c]
		ip := net.ParseIP(mi.IP)
		_, cidr, err := net.ParseCIDR(mi.PodCIDR)
		if ip == nil || err != nil {
			continue
		}
		peers = append(peers, netlb.Peer{Name: mi.Name, NodeIP: ip, PodCIDR: cidr})
	}
	if err := nw.SetPeers(peers); err != nil {
		g.log.Warn("set peer routes", "err", err)
	}
}

// lifecycle turns the gossip view into node conditions on the server: a
// member that fails or leaves is NotReady at once (the controller then
// drops its endpoints and, after node_grace, replaces its pods). A member
// that comes back is made Ready by its agent's heartbeat.
type lifecycle struct {
	st   *store.Store
	self string
	log  *slog.Logger
	last map[string]cluster.Status
	// marked are the nodes this server marked NotReady for a failed member.
	marked map[string]bool
}

// update acts on the members whose status changed since the last call. A
// server that sees most members failed is more likely the one cut off:
// it then marks nobody, undoes the marks it made for failed members (the
// first failure of a partition is seen while the others still look
// alive), and acts again once most members are back.
func (l *lifecycle) update(ms []cluster.MemberInfo) {
	if l.marked == nil {
		l.marked = map[string]bool{}
	}
	alive, total := 0, 0
	for _, mi := range ms {
		if mi.Status == cluster.StatusLeft {
			continue
		}
		total++
		if mi.Status == cluster.StatusAlive || mi.Status == cluster.StatusSuspect {
			alive++
		}
	}
	quorum := 2*alive > total
	if !quorum {
		for name := range l.marked {
			if err := undoNotReady(l.st, name, time.Now()); err != nil {
				l.log.Warn("undo not ready", "node", name, "err", err)
				continue
			}
			l.log.Warn("this server sees only a minority of members alive: undid its NotReady mark", "node", name, "alive", alive, "members", total)
			delete(l.marked, name)
			delete(l.last, name)
		}
	}
	for _, mi := range ms {
		if mi.Name == l.self {
			continue
		}
		prev, seen := l.last[mi.Name]
		if seen && prev == mi.Status {
			continue
		}
		var reason, msg string
		switch mi.Status {
		case cluster.StatusFailed:
			if !quorum {
				l.log.Warn("member failed, but this server sees only a minority alive: not marking it", "member", mi.Name, "alive", alive, "members", total)
				delete(l.last, mi.Name)
				continue
			}
			reason, msg = reasonGossipFailed, "gossip: the node stopped answering probes"
		case cluster.StatusAlive:
			delete(l.marked, mi.Name) // its heartbeat makes it Ready
		case cluster.StatusLeft:
			reason, msg = "NodeLeft", "gossip: the node left the cluster"
		}
		l.last[mi.Name] = mi.Status
		if reason == "" {
			continue
		}
		if err := markNotReady(l.st, mi.Name, reason, msg, time.Now()); err != nil {
			l.log.Warn("mark node not ready", "node", mi.Name, "err", err)
			delete(l.last, mi.Name) // again on the next pass
			continue
		}
		if mi.Status == cluster.StatusFailed {
			l.marked[mi.Name] = true
		}
	}
}

// reasonGossipFailed is the Ready condition's reason for a failed member.
const reasonGossipFailed = "NodeGossipFailed"

// undoNotReady sets node name's Ready condition true again if it is still
// false for reasonGossipFailed.
func undoNotReady(st *store.Store, name string, now time.Time) error {
	_, err := st.Update(func(tx *store.Tx) error {
		var n api.Node
		if err := tx.Get(api.KindNode, name, &n); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		for i := range n.Status.Conditions {
			c := &n.Status.Conditions[i]
			if c.Type == api.NodeReady && !c.Status && c.Reason == reasonGossipFailed {
				c.Status, c.Reason, c.Message, c.LastChange = true, "GossipMinority", "gossip: this server saw most members fail, so it trusts no failure it saw", now
				return tx.Put(api.KindNode, &n)
			}
		}
		return nil
	})
	return err
}

// markNotReady writes node name's Ready condition false (in one
// transaction, so it cannot undo a write it did not read). A node that is
// not registered or already not ready is left alone.
func markNotReady(st *store.Store, name, reason, msg string, now time.Time) error {
	_, err := st.Update(func(tx *store.Tx) error {
		var n api.Node
		if err := tx.Get(api.KindNode, name, &n); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		var cond *api.Condition
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == api.NodeReady {
				cond = &n.Status.Conditions[i]
			}
		}
		if cond == nil || !cond.Status {
			return nil
		}
		cond.Status, cond.Reason, cond.Message, cond.LastChange = false, reason, msg, now
		if err := tx.Put(api.KindNode, &n); err != nil {
			return err
		}
		return tx.RecordEvent("nodes/"+name, api.EventWarning, "NodeNotReady", msg, "gossip")
	})
	return err
}

// clusterHandler serves GET /v1/members (the gossip view, api.Member)
// and GET /v1/cluster (api.ClusterInfo), and passes every other request to h.
func clusterHandler(m *cluster.Member, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body any
		switch r.URL.Path {
		case "/v1/members":
			var out []api.Member
			for _, mi := range m.Members() {
				out = append(out, api.Member{Name: mi.Name, Addr: net.JoinHostPort(mi.Addr, fmt.Sprint(mi.Port)),
					Status: string(mi.Status), Role: mi.Role, API: mi.APIAddr, IP: mi.IP, PodCIDR: mi.PodCIDR, Labels: mi.Labels})
			}
			body = map[string]any{"items": out}
		case "/v1/cluster":
			var ci api.ClusterInfo
			for _, mi := range m.Members() {
				if mi.Role == cluster.RoleServer && (mi.Status == cluster.StatusAlive || mi.Status == cluster.StatusSuspect) {
					ci.Gossip = append(ci.Gossip, net.JoinHostPort(mi.Addr, fmt.Sprint(mi.Port)))
				}
			}
			ci.Servers = m.Servers()
			body = ci
		default:
			h.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: "method_not_allowed", Message: r.Method + " " + r.URL.Path + ": only GET"}})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	})
}
