package agent

import (
	"context"
	"log/slog"
	"maps"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/netlb"
)

func TestPeerRoutes(t *testing.T) {
	tests := []struct {
		name  string
		peers []Peer
		want  map[string]string // pod CIDR -> next hop
	}{
		{
			name: "every other peer with an IP and a pod CIDR",
			peers: []Peer{
				{Name: "self", IP: "10.0.0.1", PodCIDR: "10.88.0.0/24", Alive: true},
				{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24", Alive: true},
				{Name: "c", IP: "10.0.0.3", PodCIDR: "10.88.2.0/24", Alive: true},
			},
			want: map[string]string{"10.88.1.0/24": "10.0.0.2", "10.88.2.0/24": "10.0.0.3"},
		},
		{
			name: "no pod CIDR or no IP yet: no route",
			peers: []Peer{
				{Name: "b", IP: "10.0.0.2", Alive: true},
				{Name: "c", PodCIDR: "10.88.2.0/24", Alive: true},
			},
			want: map[string]string{},
		},
		{
			name: "failed and departed peers keep their routes",
			peers: []Peer{
				{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24", Failed: true},
				{Name: "c", IP: "10.0.0.3", PodCIDR: "10.88.2.0/24"},
			},
			want: map[string]string{"10.88.1.0/24": "10.0.0.2", "10.88.2.0/24": "10.0.0.3"},
		},
		{
			name: "a CIDR announced twice: the alive peer wins",
			peers: []Peer{
				{Name: "gone", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24"},
				{Name: "new", IP: "10.0.0.4", PodCIDR: "10.88.1.0/24", Alive: true},
			},
			want: map[string]string{"10.88.1.0/24": "10.0.0.4"},
		},
		{
			name: "a CIDR announced twice, neither alive: the first",
			peers: []Peer{
				{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24", Failed: true},
				{Name: "c", IP: "10.0.0.3", PodCIDR: "10.88.1.0/24"},
			},
			want: map[string]string{"10.88.1.0/24": "10.0.0.2"},
		},
		{
			name: "tags that do not parse are skipped",
			peers: []Peer{
				{Name: "b", IP: "not-an-ip", PodCIDR: "10.88.1.0/24", Alive: true},
				{Name: "c", IP: "10.0.0.3", PodCIDR: "10.88.2.0/99", Alive: true},
				{Name: "d", IP: "10.0.0.4", PodCIDR: "10.88.3.0/24", Alive: true},
			},
			want: map[string]string{"10.88.3.0/24": "10.0.0.4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := routeTable(peerRoutes("self", tt.peers)); !maps.Equal(got, tt.want) {
				t.Errorf("routes %v, want %v", got, tt.want)
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

// TestFollowPeers: the agent keeps its routes and its down nodes in step
// with the gossip as peers join, announce their pod CIDRs, fail and are
// replaced.
func TestFollowPeers(t *testing.T) {
	g := &fakeGossip{t: t, changed: make(chan struct{}), peers: map[string]Peer{
		"self": {Name: "self", IP: "10.0.0.1", PodCIDR: "10.88.0.0/24", Alive: true},
	}}
	a := &Agent{name: "self", log: slog.Default(), lb: newLB(slog.Default(), nil, nil)}
	// routes models the node's routing table, which SetPeers makes match.
	var routesMu sync.Mutex
	routes := map[string]string{}
	setRoutes := func(ps []netlb.Peer) error {
		routesMu.Lock()
		defer routesMu.Unlock()
		routes = routeTable(ps)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.followPeers(ctx, g, setRoutes) }()
	defer func() { cancel(); <-done }()

	steps := []struct {
		name   string
		change []Peer
		routes map[string]string
		down   map[string]bool
	}{
		{"b joins before its agent runs", []Peer{{Name: "b", IP: "10.0.0.2", Alive: true}},
			map[string]string{}, map[string]bool{}},
		{"b announces its pod CIDR", []Peer{{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24", Alive: true}},
			map[string]string{"10.88.1.0/24": "10.0.0.2"}, map[string]bool{}},
		{"c joins", []Peer{{Name: "c", IP: "10.0.0.3", PodCIDR: "10.88.2.0/24", Alive: true}},
			map[string]string{"10.88.1.0/24": "10.0.0.2", "10.88.2.0/24": "10.0.0.3"}, map[string]bool{}},
		{"b fails: route kept, endpoints out", []Peer{{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24", Failed: true}},
			map[string]string{"10.88.1.0/24": "10.0.0.2", "10.88.2.0/24": "10.0.0.3"}, map[string]bool{"b": true}},
		{"d gets b's CIDR while b is still listed failed", []Peer{{Name: "d", IP: "10.0.0.4", PodCIDR: "10.88.1.0/24", Alive: true}},
			map[string]string{"10.88.1.0/24": "10.0.0.4", "10.88.2.0/24": "10.0.0.3"}, map[string]bool{"b": true}},
		{"b left for good", []Peer{{Name: "b", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24"}},
			map[string]string{"10.88.1.0/24": "10.0.0.4", "10.88.2.0/24": "10.0.0.3"}, map[string]bool{}},
	}
	for _, s := range steps {
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
		if !reflect.DeepEqual(down, s.down) {
			t.Errorf("%s: down nodes %v, want %v", s.name, down, s.down)
		}
	}
}
