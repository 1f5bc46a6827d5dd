package agent

// The LAN addresses (VIPs) of load-balancer services: every agent computes,
// from the same inputs, which node announces each address, and the node
// that finds itself chosen puts the address on its LAN link and sends
// gratuitous ARP; the others take it off theirs. No server is asked: when
// the holder fails, the gossip tells every agent at once, the server
// included or not.

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// vipNet is the node's LAN link as the VIP loop uses it. Satisfied by
// *netlb.VIPLink.
type vipNet interface {
	Add(ip net.IP) error
	Del(ip net.IP) error
	// Held lists the VIPs on the link: those skiff labelled, and the /32s
	// among known.
	Held(known map[string]bool) ([]net.IP, error)
	Announce(ip net.IP) error
}

var _ vipNet = (*netlb.VIPLink)(nil)

// vipSettle is how long a started agent takes no address while a node the
// server lists is still unknown to its gossip: a node that restarts (or
// starts from its cache, joining the gossip in the background) sees only
// itself alive at first and would take every address. A listed node still
// unknown after it is taken for gone.
const vipSettle = 5 * time.Second

// vipReportTimeout bounds one holder report to the server.
const vipReportTimeout = 5 * time.Second

// vipRetryTooMany is how soon a holder report the server refused with 429
// is sent again. The server bounds holder changes to one per
// apiserver.HolderMinInterval (5 s) per service, so that a stolen node
// cannot flip the status at will; the node the gossip chose retries this
// often, rather than at the next resync (10 s), so that it is recorded
// within about a second of the bound ending.
var vipRetryTooMany = time.Second

// vipWant is, for one LAN address, the service that has it and the node
// chosen to announce it.
type vipWant struct {
	service string
	node    string
}

// vipHolders chooses, for the LAN address of every load-balancer service,
// the node that announces it. The candidates are the nodes the server
// lists (with an address) that the gossip reports alive; with the
// service's announce = "ready-node", those among them that run a ready
// endpoint of the service are preferred (no extra hop), and when none does,
// any candidate serves (the service rules of every node forward to the
// pods wherever they are). Among the candidates the
// highest rendezvous hash of (address, node) wins: every agent that sees
// the same members chooses the same node, and a node that comes or goes
// moves only the addresses it wins or held. No candidate: no holder.
func vipHolders(services map[string]*api.Service, eps map[string]*api.Endpoints, peers []Peer, nodes []peerNode) map[string]vipWant {
	listed := map[string]bool{}
	for _, n := range nodes {
		if n.Addr != "" {
			listed[n.Name] = true
		}
	}
	var alive []string
	for _, p := range peers {
		if p.Alive && listed[p.Name] {
			alive = append(alive, p.Name)
		}
	}
	out := map[string]vipWant{}
	if len(alive) == 0 {
		return out
	}
	for name, s := range services {
		addr := vipAddress(s)
		if addr == "" {
			continue
		}
		cands := alive
		if e := eps[name]; e != nil && s.Spec.Announce == configs.AnnounceReadyNode {
			var ready []string
			for _, ep := range e.Endpoints {
				if slices.Contains(alive, ep.Node) && !slices.Contains(ready, ep.Node) {
					ready = append(ready, ep.Node)
				}
			}
			if len(ready) > 0 {
				cands = ready
			}
		}
		best, bestScore := "", uint64(0)
		for _, c := range cands {
			if sc := rendezvous(addr, c); best == "" || sc > bestScore || (sc == bestScore && c < best) {
				best, bestScore = c, sc
			}
		}
		out[addr] = vipWant{service: name, node: best}
	}
	return out
}

// vipAddress is the LAN address of a load-balancer service: the one the
// server allocated, else (an object stored before allocation existed) the
// one its spec asks for.
func vipAddress(s *api.Service) string {
	if s == nil || s.Spec.Type != configs.ServiceLoadBalancer {
		return ""
	}
	a := s.Status.Address
	if a == "" {
		a = s.Spec.WantAddress()
	}
	if ip := net.ParseIP(a); ip == nil || ip.To4() == nil {
		return ""
	}
	return a
}

func rendezvous(addr, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(addr))
	h.Write([]byte{0})
	h.Write([]byte(node))
	return h.Sum64()
}

// vips is the agent's VIP loop: it keeps the addresses this node is chosen
// for on its LAN link, and only those.
type vips struct {
	self string
	log  *slog.Logger
	// net is this node's LAN link; nil when the node cannot announce (no
	// Ethernet link holds its advertise address): the loop then takes,
	// drops and reports nothing. The other nodes may still choose it (they
	// cannot tell), so every agent needs its advertise address on the LAN.
	net vipNet
	// source returns the services and endpoints the load balancer holds.
	source func() (map[string]*api.Service, map[string]*api.Endpoints)
	// report tells the server that this node holds addr of service.
	report func(ctx context.Context, service, addr string) error
	// event, if set, records an event about this node (never blocks).
	event func(reason, msg string)
	// burst is the gratuitous ARP schedule after a takeover
	// (netlb.AnnounceBurst).
	burst   []time.Duration
	started time.Time
	kickc   chan struct{}

	// mu protects the fields below, which setMembers writes and the loop
	// reads.
	mu    sync.Mutex
	peers []Peer
	nodes []peerNode
	// members is bumped when setMembers brings another membersKey: a
	// change re-announces the addresses held.
	members    int
	membersKey string
	wanted     map[string]bool
	// bursts numbers, per address, the last announcement burst started:
	// an older burst stops when a newer one starts.
	bursts map[string]int

	// The loop's own. periodic: the next sync is a resync tick's, which
	// announces every address held once more.
	periodic    bool
	announcedAt int
	reporting   map[string]bool
	held        map[string]bool
}

func newVIPs(self string, log *slog.Logger) *vips {
	return &vips{self: self, log: log.With("part", "vip"), kickc: make(chan struct{}, 1),
		burst:     netlb.AnnounceBurst,
		reporting: map[string]bool{}, held: map[string]bool{}, wanted: map[string]bool{}, bursts: map[string]int{}}
}

// kick asks for a sync; it never blocks.
func (v *vips) kick() { notify(v.kickc) }

// setMembers gives the gossip's members and the server's node list, and
// kicks a sync. A nil v (an Agent made without New, in tests) ignores it.
func (v *vips) setMembers(ps []Peer, nodes []peerNode) {
	if v == nil {
		return
	}
	key := membersKey(ps, nodes)
	v.mu.Lock()
	v.peers, v.nodes = slices.Clone(ps), slices.Clone(nodes)
	if key != v.membersKey {
		v.membersKey = key
		v.members++
	}
	v.mu.Unlock()
	v.kick()
}

// burstLive reports whether the last sync chose this node for addr and
// burst n is the last one started for it.
func (v *vips) burstLive(addr string, n int) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.wanted[addr] && v.bursts[addr] == n
}

// startBurst starts an announcement burst for addr, ending the one before.
func (v *vips) startBurst(ctx context.Context, wg *sync.WaitGroup, addr string) {
	v.mu.Lock()
	v.bursts[addr]++
	n := v.bursts[addr]
	v.mu.Unlock()
	wg.Go(func() { v.announceBurst(ctx, addr, n) })
}

// run syncs on every kick and every resync until ctx ends, then takes this
// node's addresses off its link (the gossip's leave that follows a stop
// moves them to another node).
func (v *vips) run(ctx context.Context, resync time.Duration) {
	if v.net == nil {
		return
	}
	t := time.NewTicker(resync)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	reported := make(chan string, 16)
	for {
		select {
		case <-ctx.Done():
			v.releaseAll()
			return
		case <-v.kickc:
		case <-t.C:
			v.periodic = true
		case name := <-reported:
			delete(v.reporting, name)
			continue
		}
		v.sync(ctx, &wg, reported)
	}
}

// sync makes the link hold exactly the addresses chosen for this node,
// sends gratuitous ARP for the ones it takes, and again for all it holds
// when the membership changed (a burst too: the node that held an address
// before may have announced it once more just before it learnt that it
// lost it, and after a partition heals the LAN must hear from the one
// holder left) and at every resync tick (once), and reports to the server
// the ones whose status names another holder.
func (v *vips) sync(ctx context.Context, wg *sync.WaitGroup, reported chan<- string) {
	svcs, eps := v.source()
	v.mu.Lock()
	peers, nodes, gen := v.peers, v.nodes, v.members
	v.mu.Unlock()
	if gen == 0 || len(nodes) == 0 {
		return // no membership or no node list yet: keep what the link holds
	}
	holders := vipHolders(svcs, eps, peers, nodes)
	settling := time.Since(v.started) < vipSettle && unknownNodes(peers, nodes)

	want := map[string]bool{}
	known := map[string]bool{}
	for addr, w := range holders {
		known[addr] = true
		if w.node == v.self {
			want[addr] = true
		}
	}
	v.mu.Lock()
	v.wanted = want
	v.mu.Unlock()
	held, err := v.net.Held(known)
	if err != nil {
		v.log.Warn("list vips", "err", err)
		return
	}
	v.held = map[string]bool{}
	for _, ip := range held {
		v.held[ip.String()] = true
	}
	if settling {
		return // neither take nor drop until the gossip has shown the listed nodes
	}
	for addr := range v.held {
		if !want[addr] {
			if err := v.net.Del(net.ParseIP(addr)); err != nil {
				v.log.Warn("release vip", "address", addr, "err", err)
				continue
			}
			delete(v.held, addr)
			v.log.Info("vip released", "address", addr, "holder", holders[addr].node)
			v.record("AddressReleased", "released "+addr+" (now chosen: "+dashIfEmpty(holders[addr].node)+")")
		}
	}
	reannounce := gen != v.announcedAt
	v.announcedAt = gen
	periodic := v.periodic
	v.periodic = false
	for addr := range want {
		ip := net.ParseIP(addr)
		if !v.held[addr] {
			if err := v.net.Add(ip); err != nil {
				v.log.Warn("take vip", "address", addr, "err", err)
				continue
			}
			v.held[addr] = true
			v.log.Info("vip taken", "address", addr, "service", holders[addr].service)
			v.record("AddressTaken", "took "+addr+" of service "+holders[addr].service+" and sent gratuitous ARP")
			v.startBurst(ctx, wg, addr)
		} else if reannounce {
			v.startBurst(ctx, wg, addr)
		} else if periodic {
			if err := v.net.Announce(ip); err != nil {
				v.log.Warn("gratuitous arp", "address", addr, "err", err)
			}
		}
		name := holders[addr].service
		if s := svcs[name]; s != nil && s.Status.Holder != v.self && s.Status.Address == addr && !v.reporting[name] {
			v.reporting[name] = true
			wg.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, vipReportTimeout)
				defer cancel()
				err := v.report(rctx, name, addr)
				if err != nil && ctx.Err() == nil {
					v.log.Debug("report vip holder; retried at the next sync", "service", name, "err", err)
				}
				if tooMany(err) {
					// The holder changed moments ago: try again soon,
					// not only at the next resync.
					select {
					case <-time.After(vipRetryTooMany):
						defer v.kick()
					case <-ctx.Done():
					}
				}
				select {
				case reported <- name:
				case <-ctx.Done():
				}
			})
		}
	}
}

// announceBurst sends gratuitous ARP for addr now and after each delay of
// v.burst, while this node is still chosen for it and burst n is the
// last one started.
func (v *vips) announceBurst(ctx context.Context, addr string, n int) {
	ip := net.ParseIP(addr)
	for i := 0; ; i++ {
		if !v.burstLive(addr, n) {
			return
		}
		if err := v.net.Announce(ip); err != nil {
			v.log.Warn("gratuitous arp", "address", addr, "err", err)
		}
		if i >= len(v.burst) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(v.burst[i]):
		}
	}
}

// releaseAll takes every address this node holds off its link: those the
// link shows as skiff's and those the last sync held.
func (v *vips) releaseAll() {
	v.mu.Lock()
	v.wanted = map[string]bool{} // ends the announcement bursts
	v.mu.Unlock()
	ips, err := v.net.Held(v.held)
	if err != nil {
		v.log.Warn("list vips at stop", "err", err)
	}
	for addr := range v.held {
		ips = append(ips, net.ParseIP(addr))
	}
	for _, ip := range ips {
		addr := ip.String()
		if err := v.net.Del(ip); err != nil {
			v.log.Warn("release vip", "address", addr, "err", err)
			continue
		}
		v.log.Info("vip released at stop", "address", addr)
	}
	v.held = map[string]bool{}
}

// unknownNodes reports whether a node the server lists is not in the
// gossip at all (neither alive nor failed nor left).
func unknownNodes(peers []Peer, nodes []peerNode) bool {
	for _, n := range nodes {
		if !slices.ContainsFunc(peers, func(p Peer) bool { return p.Name == n.Name }) {
			return true
		}
	}
	return false
}

// openVIPLink finds the LAN link that carries this node's VIPs: the one
// holding its advertise address. A node without one (its advertise
// address on loopback, or on no Ethernet link) announces no address; a
// warning says so. Without a gossip (a single node) the node is the only
// member and holds every address.
func (a *Agent) openVIPLink() {
	a.vip.started = time.Now()
	addr, _ := a.advertiseAddr()
	if ip := net.ParseIP(addr); ip != nil {
		l, err := netlb.FindVIPLink(ip)
		if err != nil {
			a.log.Warn("this node announces no load-balancer address", "err", err)
		} else {
			a.vip.net = l
		}
	}
	if a.cfg.Gossip == nil {
		a.vip.setMembers([]Peer{{Name: a.name, Alive: true}}, []peerNode{{Name: a.name, Addr: addr}})
	}
}

func (v *vips) record(reason, msg string) {
	if v.event != nil {
		v.event(reason, msg)
	}
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// membersKey sums up what the choice of holders depends on in the
// membership: the alive members and the listed nodes with an address.
func membersKey(ps []Peer, nodes []peerNode) string {
	var alive, listed []string
	for _, p := range ps {
		if p.Alive {
			alive = append(alive, p.Name)
		}
	}
	for _, n := range nodes {
		if n.Addr != "" {
			listed = append(listed, n.Name)
		}
	}
	slices.Sort(alive)
	slices.Sort(listed)
	return strings.Join(alive, ",") + "|" + strings.Join(listed, ",")
}

// tooMany reports whether err is the API's 429.
func tooMany(err error) bool {
	var e *client.APIError
	return errors.As(err, &e) && e.Status == http.StatusTooManyRequests
}
