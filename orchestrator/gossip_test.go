package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/agent"
	"github.com/skiff-edge/skiff/orchestrator/controller"
)

// testMember starts a real serf member on a loopback address of its own,
// as startMember does for a node; it needs no root.
func testMember(t *testing.T, name, role string, key []byte) *cluster.Member {
	t.Helper()
	node := configs.DefaultNodeConfig()
	node.NodeName = name
	node.DataDir = t.TempDir()
	node.AdvertiseAddr = ""
	node.GossipAddr = fmt.Sprintf("127.%d.%d.%d:0", 1+rand.IntN(250), rand.IntN(250), 1+rand.IntN(250))
	node.APIAddr = "0.0.0.0:7443"
	m, err := startMember(node, role, key, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

// poll checks cond until it returns "" or the deadline passes.
func poll(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		last := cond()
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signalled reports whether ch got a change signal within a few seconds.
func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// TestGossipViews runs the views of a server's gossip over real serf: an
// agent joins and announces its pod CIDR, then dies. The node lifecycle,
// the agent side and the API each see it in their own terms, and the
// readers are told of each change.
func TestGossipViews(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	srv := testMember(t, "srv", cluster.RoleServer, key)
	ag := testMember(t, "ag", cluster.RoleAgent, key)
	g := newGossip(srv, slog.New(slog.NewTextHandler(io.Discard, nil)))
	lifecycle, peers := g.lifecycleView(), g.peersView()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	if _, err := ag.Join([]string{srv.Addr()}); err != nil {
		t.Fatal(err)
	}
	if !signalled(lifecycle.Changed()) || !signalled(peers.Changed()) {
		t.Fatal("no change signal for the join")
	}
	agView := newGossip(ag, slog.Default()).peersView()
	if err := agView.AnnouncePodCIDR("10.88.1.0/24"); err != nil {
		t.Fatal(err)
	}
	poll(t, "the agent's pod CIDR seen by the server", func() string {
		for _, p := range peers.Peers() {
			if p.Name == "ag" {
				if want := (agent.Peer{Name: "ag", IP: ag.Tags().IP, PodCIDR: "10.88.1.0/24", Alive: true}); p != want {
					return fmt.Sprintf("peer %+v, want %+v", p, want)
				}
				return ""
			}
		}
		return fmt.Sprintf("no peer ag in %+v", peers.Peers())
	})
	wantMembers := []controller.Member{{Name: "ag", State: controller.MemberAlive}, {Name: "srv", State: controller.MemberAlive, Self: true}}
	if got := lifecycle.Members(); !slices.Equal(got, wantMembers) {
		t.Errorf("lifecycle members %+v, want %+v", got, wantMembers)
	}
	api := apiView{m: srv}
	ms := api.Members()
	if len(ms) != 2 || ms[0].Name != "ag" || ms[0].Role != "agent" || ms[0].PodCIDR != "10.88.1.0/24" || ms[1].Role != "server" || ms[1].Addr != srv.Addr() {
		t.Errorf("API members %+v", ms)
	}
	if ci := api.ClusterInfo(); !slices.Equal(ci.Gossip, []string{srv.Addr()}) || len(ci.Servers) != 1 {
		t.Errorf("cluster info %+v", ci)
	}

	// The agent dies without leaving: a failure, not a leave.
	select {
	case <-lifecycle.Changed(): // an earlier change's signal
	default:
	}
	ag.Shutdown()
	poll(t, "the agent failed in the lifecycle's view", func() string {
		for _, m := range lifecycle.Members() {
			if m.Name == "ag" && m.State != controller.MemberFailed {
				return fmt.Sprintf("ag is %s", m.State)
			}
		}
		return ""
	})
	for _, p := range peers.Peers() {
		if p.Name == "ag" && (!p.Failed || p.Alive || p.PodCIDR == "") {
			t.Errorf("failed peer %+v: want failed with its pod CIDR kept", p)
		}
	}
	if !signalled(lifecycle.Changed()) {
		t.Error("no change signal for the failure")
	}
}
