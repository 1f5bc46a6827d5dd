package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/netlb"
)

func TestPeerRoutes(t *testing.T) {
	_, self, _ := net.ParseCIDR("10.88.0.0/24")
	_, clusterCIDR, _ := net.ParseCIDR("10.88.0.0/16")
	tests := []struct {
		name    string
		nodes   []peerNode
		want    map[string]string // pod CIDR -> next hop
		refused []string
	}{
		{
			name: "every other node with an address and a pod CIDR",
			nodes: []peerNode{
				{Name: "self", Addr: "10.0.0.1", PodCIDR: "10.88.0.0/24"},
				{Name: "b", Addr: "10.0.0.2", PodCIDR: "10.88.1.0/24"},
				{Name: "c", Addr: "10.0.0.3", PodCIDR: "10.88.2.0/24"},
			},
			want: map[string]string{"10.88.1.0/24": "10.0.0.2", "10.88.2.0/24": "10.0.0.3"},
		},
		{
			name: "no pod CIDR or no address yet: no route",
			nodes: []peerNode{
				{Name: "b", Addr: "10.0.0.2"},
				{Name: "c", PodCIDR: "10.88.2.0/24"},
			},
			want: map[string]string{},
		},
		{
			name: "outside the cluster CIDR, the default route, a LAN subnet: no route",
			nodes: []peerNode{
				{Name: "b", Addr: "10.0.0.2", PodCIDR: "0.0.0.0/0"},
				{Name: "c", Addr: "10.0.0.3", PodCIDR: "192.168.1.0/24"},
				{Name: "d", Addr: "10.0.0.4", PodCIDR: "10.0.0.0/8"},
				{Name: "e", Addr: "10.0.0.5", PodCIDR: "10.89.0.0/24"},
				{Name: "f", Addr: "10.0.0.6", PodCIDR: "10.88.5.0/24"},
			},
			want:    map[string]string{"10.88.5.0/24": "10.0.0.6"},
			refused: []string{"b", "c", "d", "e"},
		},
		{
			name: "this node's CIDR or one overlapping it: no route",
			nodes: []peerNode{
				{Name: "b", Addr: "10.0.0.2", PodCIDR: "10.88.0.0/24"},
				{Name: "c", Addr: "10.0.0.3", PodCIDR: "10.88.0.128/25"},
				{Name: "d", Addr: "10.0.0.4", PodCIDR: "10.88.0.0/23"},
			},
			want:    map[string]string{},
			refused: []string{"b", "c", "d"},
		},
		{
			name: "two nodes overlapping: neither gets a route",
			nodes: []peerNode{
				{Name: "b", Addr: "10.0.0.2", PodCIDR: "10.88.1.0/24"},
				{Name: "c", Addr: "10.0.0.3", PodCIDR: "10.88.1.0/24"},
				{Name: "d", Addr: "10.0.0.4", PodCIDR: "10.88.2.0/24"},
				{Name: "e", Addr: "10.0.0.5", PodCIDR: "10.88.2.64/26"},
				{Name: "f", Addr: "10.0.0.6", PodCIDR: "10.88.3.0/24"},
			},
			want:    map[string]string{"10.88.3.0/24": "10.0.0.6"},
			refused: []string{"b", "c", "d", "e"},
		},
		{
			name: "what does not parse is skipped",
			nodes: []peerNode{
				{Name: "b", Addr: "not-an-ip", PodCIDR: "10.88.1.0/24"},
				{Name: "c", Addr: "10.0.0.3", PodCIDR: "10.88.2.0/99"},
				{Name: "d", Addr: "10.0.0.4", PodCIDR: "10.88.3.0/24"},
			},
			want:    map[string]string{"10.88.3.0/24": "10.0.0.4"},
			refused: []string{"b", "c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routes, refused := peerRoutes("self", self, clusterCIDR, tt.nodes)
			if got := routeTable(routes); !maps.Equal(got, tt.want) {
				t.Errorf("routes %v, want %v", got, tt.want)
			}
			if got := slices.Sorted(maps.Keys(refused)); !slices.Equal(got, tt.refused) {
				t.Errorf("refused %v, want %v", refused, tt.refused)
			}
		})
	}
}

// routeTable is what routes the peers make: pod CIDR -> next hop.
func routeTable(ps []netlb.Peer) map[string]string {
	out := map[string]string{}
	for _, p := range ps {
		out[p.PodCIDR.String()] = p.NodeIP.String()
	}
	return out
}

// fakeGossip models a node's gossip view: peers whose tags and states
// change over time, with a change notification on each.
type fakeGossip struct {
	t       *testing.T
	changed chan struct{}
	// mu protects peers and announced.
	mu        sync.Mutex
	peers     map[string]Peer
	announced string
}

var _ Gossip = (*fakeGossip)(nil)

func (f *fakeGossip) Peers() []Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Peer
	for _, p := range f.peers {
		out = append(out, p)
	}
	return out
}

func (f *fakeGossip) Changed() <-chan struct{} { return f.changed }

func (f *fakeGossip) AnnouncePodCIDR(cidr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announced = cidr
	return nil
}

// set changes peers (a zero Peer removes one, as serf's reap does), says
// so, and returns once the agent has synced: changed is unbuffered, so
// the first send is taken when the agent waits for a change (then it
// re-lists the peers) and the second once that sync is over.
func (f *fakeGossip) set(peers ...Peer) {
	f.t.Helper()
	f.mu.Lock()
	for _, p := range peers {
		f.peers[p.Name] = p
	}
	f.mu.Unlock()
	for range 2 {
		select {
		case f.changed <- struct{}{}:
		case <-time.After(10 * time.Second):
			f.t.Fatal("the agent does not follow the gossip")
		}
	}
}

// fakeNodes is the server's node list as the agent lists it; down makes
// the server unreachable.
type fakeNodes struct {
	mu    sync.Mutex
	nodes map[string]peerNode
	down  bool
}

func (f *fakeNodes) list(context.Context) ([]peerNode, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errors.New("no server")
	}
	var out []peerNode
	for _, n := range f.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b peerNode) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// TestFollowPeers: the agent keeps its routes in step with the server's
// node list and its down nodes with the gossip, as nodes register, fail
// and are replaced; what members announce in their tags (the default
// route, a LAN subnet, another node's CIDR, a CIDR outside the cluster's,
// another next hop) changes no route; a server that does not answer
// leaves the routes as they were.
func TestFollowPeers(t *testing.T) {
	g := &fakeGossip{t: t, changed: make(chan struct{}), peers: map[string]Peer{
		"self": {Name: "self", IP: "10.0.0.1", PodCIDR: "10.88.0.0/24", Alive: true},
	}}
	srv := &fakeNodes{nodes: map[string]peerNode{"self": {Name: "self", Addr: "10.0.0.1", PodCIDR: "10.88.0.0/24"}}}
	var logBuf syncBuffer
	a := &Agent{name: "self", log: slog.New(slog.NewTextHandler(&logBuf, nil)), lb: newLB(slog.Default(), nil, nil)}
	// routes models the node's routing table, which SetPeers makes match.
	var routesMu sync.Mutex
	routes := map[string]string{}
	setRoutes := func(ps []netlb.Peer) error {
		routesMu.Lock()
		defer routesMu.Unlock()
		routes = routeTable(ps)
		return nil
	}
	_, self, _ := net.ParseCIDR("10.88.0.0/24")
	_, clusterCIDR, _ := net.ParseCIDR("10.88.0.0/16")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.followPeers(ctx, g, srv.list, self, clusterCIDR, setRoutes) }()
	defer func() { cancel(); <-done }()

	b := map[string]string{"10.88.1.0/24": "10.0.0.2"}
	bc := map[string]string{"10.88.1.0/24": "10.0.0.2", "10.88.2.0/24": "10.0.0.3"}
	steps := []struct {
		name   string
		nodes  []peerNode // registered with the server before the gossip change
		del    []string   // deleted from the server
		down   bool       // the server stops (or starts again) answering
		change []Peer
		routes map[string]string
		downs  map[string]bool
	}{
		{name: "b joins the gossip before it registers", change: []Peer{{Name: "b", IP: "10.0.0.2", Alive: true}},
			routes: map[string]string{}, downs: map[string]bool{}},
		{name: "b registers and announces its pod CIDR", nodes: []peerNode{{Name: "b", Addr: "10.0.0.2", PodCIDR: "10.88.1.0/24"}},
			change: []Peer{{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24", Alive: true}},
			routes: b, downs: map[string]bool{}},
		{name: "b announces the default route", change: []Peer{{Name: "b", IP: "10.0.0.2", PodCIDR: "0.0.0.0/0", Alive: true}},
			routes: b, downs: map[string]bool{}},
		{name: "b announces a LAN subnet via another IP", change: []Peer{{Name: "b", IP: "192.168.1.66", PodCIDR: "192.168.1.0/24", Alive: true}},
			routes: b, downs: map[string]bool{}},
		{name: "an unregistered member announces self's CIDR, a CIDR outside the cluster's and b's",
			change: []Peer{
				{Name: "evil1", IP: "10.0.0.66", PodCIDR: "10.88.0.0/24", Alive: true},
				{Name: "evil2", IP: "10.0.0.66", PodCIDR: "172.16.0.0/12", Alive: true},
				{Name: "evil3", IP: "10.0.0.66", PodCIDR: "10.88.1.0/24", Alive: true},
			},
			routes: b, downs: map[string]bool{}},
		{name: "c registers; its tags claim b's CIDR", nodes: []peerNode{{Name: "c", Addr: "10.0.0.3", PodCIDR: "10.88.2.0/24"}},
			change: []Peer{{Name: "c", IP: "10.0.0.3", PodCIDR: "10.88.1.0/24", Alive: true}},
			routes: bc, downs: map[string]bool{}},
		{name: "b fails: route kept, endpoints out", change: []Peer{{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24", Failed: true}},
			routes: bc, downs: map[string]bool{"b": true}},
		{name: "the server is unreachable: the last list holds", down: true,
			change: []Peer{{Name: "evil4", IP: "10.0.0.66", PodCIDR: "10.88.9.0/24", Alive: true}},
			routes: bc, downs: map[string]bool{"b": true}},
		{name: "b is deleted, d gets its CIDR", down: true, del: []string{"b"},
			nodes:  []peerNode{{Name: "d", Addr: "10.0.0.4", PodCIDR: "10.88.1.0/24"}},
			change: []Peer{{Name: "d", IP: "10.0.0.4", PodCIDR: "10.88.1.0/24", Alive: true}},
			routes: map[string]string{"10.88.1.0/24": "10.0.0.4", "10.88.2.0/24": "10.0.0.3"}, downs: map[string]bool{"b": true}},
		{name: "b left the gossip for good", change: []Peer{{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24"}},
			routes: map[string]string{"10.88.1.0/24": "10.0.0.4", "10.88.2.0/24": "10.0.0.3"}, downs: map[string]bool{}},
	}
	for _, s := range steps {
		srv.mu.Lock()
		for _, n := range s.nodes {
			srv.nodes[n.Name] = n
		}
		for _, n := range s.del {
			delete(srv.nodes, n)
		}
		if s.down {
			srv.down = !srv.down
		}
		srv.mu.Unlock()
		g.set(s.change...)
		routesMu.Lock()
		got := maps.Clone(routes)
		routesMu.Unlock()
		if !maps.Equal(got, s.routes) {
			t.Errorf("%s: routes %v, want %v", s.name, got, s.routes)
		}
		a.lb.mu.Lock()
		down := maps.Clone(a.lb.down)
		a.lb.mu.Unlock()
		if !reflect.DeepEqual(down, s.downs) {
			t.Errorf("%s: down nodes %v, want %v", s.name, down, s.downs)
		}
	}
	if got := len(a.peers.snapshot()); got != 3 {
		t.Errorf("the cache would keep %d nodes, want 3 (self, c, d)", got)
	}
	// Each disagreement is logged once, not at every sync.
	logs := logBuf.String()
	for _, w := range []string{"member=evil1", "member=c", "tag_pod_cidr=0.0.0.0/0"} {
		if n := strings.Count(logs, w); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", w, n, logs)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestDownNodesWhileServerHangs: a server that does not answer the node
// list delays neither the down nodes nor the routes from the last list.
func TestDownNodesWhileServerHangs(t *testing.T) {
	g := &fakeGossip{t: t, changed: make(chan struct{}), peers: map[string]Peer{
		"b": {Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24", Alive: true},
	}}
	a := &Agent{name: "self", log: slog.Default(), lb: newLB(slog.Default(), nil, nil)}
	a.peers.setNodes([]peerNode{{Name: "b", Addr: "10.0.0.2", PodCIDR: "10.88.1.0/24"}}) // from the cache
	hang := func(ctx context.Context) ([]peerNode, error) { <-ctx.Done(); return nil, ctx.Err() }
	var routesMu sync.Mutex
	routes := map[string]string{}
	setRoutes := func(ps []netlb.Peer) error {
		routesMu.Lock()
		defer routesMu.Unlock()
		routes = routeTable(ps)
		return nil
	}
	_, self, _ := net.ParseCIDR("10.88.0.0/24")
	_, clusterCIDR, _ := net.ParseCIDR("10.88.0.0/16")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.followPeers(ctx, g, hang, self, clusterCIDR, setRoutes) }()
	defer func() { cancel(); <-done }()

	start := time.Now()
	g.set(Peer{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24", Failed: true})
	a.lb.mu.Lock()
	down := maps.Clone(a.lb.down)
	a.lb.mu.Unlock()
	if !down["b"] {
		t.Errorf("down nodes %v, want b", down)
	}
	if took := time.Since(start); took > 3*listWait {
		t.Errorf("the failure took %s to apply", took)
	}
	routesMu.Lock()
	defer routesMu.Unlock()
	if want := map[string]string{"10.88.1.0/24": "10.0.0.2"}; !maps.Equal(routes, want) {
		t.Errorf("routes %v, want %v (from the cached list)", routes, want)
	}
}
