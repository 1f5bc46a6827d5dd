package orchestrator

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestReconcilerRemovesGoneServers: a server that left is removed at
// once, a failed or unknown one only after the timeout, an alive one and
// this server never; an agent's member of the same name does not count.
func TestReconcilerRemovesGoneServers(t *testing.T) {
	svs := []store.RaftServer{{ID: "self"}, {ID: "left"}, {ID: "failed"}, {ID: "alive"}, {ID: "unknown"}, {ID: "agentname"}}
	members := []cluster.MemberInfo{
		{Name: "self", Tags: cluster.Tags{Role: cluster.RoleServer}, Status: cluster.StatusAlive},
		{Name: "left", Tags: cluster.Tags{Role: cluster.RoleServer}, Status: cluster.StatusLeft},
		{Name: "failed", Tags: cluster.Tags{Role: cluster.RoleServer}, Status: cluster.StatusFailed},
		{Name: "alive", Tags: cluster.Tags{Role: cluster.RoleServer}, Status: cluster.StatusAlive},
		{Name: "agentname", Tags: cluster.Tags{Role: cluster.RoleAgent}, Status: cluster.StatusAlive},
	}
	r := &reconciler{self: "self", after: time.Minute}
	t0 := time.Unix(1000, 0)
	if got := r.step(t0, svs, members); len(got) != 1 || got[0] != "left" {
		t.Fatalf("first step removes %v, want [left]", got)
	}
	if got := r.step(t0.Add(59*time.Second), svs, members); len(got) != 1 || got[0] != "left" {
		t.Fatalf("before the timeout removes %v, want [left]", got)
	}
	got := r.step(t0.Add(61*time.Second), svs, members)
	want := map[string]bool{"left": true, "failed": true, "unknown": true, "agentname": true}
	if len(got) != len(want) {
		t.Fatalf("after the timeout removes %v, want %v", got, want)
	}
	for _, id := range got {
		if !want[id] {
			t.Fatalf("after the timeout removes %v, want %v", got, want)
		}
	}
	// A failed server that comes back is forgiven.
	members[2].Status = cluster.StatusAlive
	r2 := &reconciler{self: "self", after: time.Minute}
	r2.step(t0, svs[:3], members)
	if got := r2.step(t0.Add(2*time.Minute), svs[:3], members); len(got) != 1 || got[0] != "left" {
		t.Fatalf("a failed server back alive: removes %v, want [left]", got)
	}
}

// fakeLeadership is a leadership source the test drives.
type fakeLeadership struct {
	ch        chan bool
	transfers chan struct{}
}

func (f *fakeLeadership) LeaderCh() <-chan bool { return f.ch }
func (f *fakeLeadership) TransferLeadership() error {
	f.transfers <- struct{}{}
	return nil
}

// TestRunLeadership: the controllers run only while this server leads:
// they start on leadership, their context ends at once when it is lost
// (before another term can start them again: never two at a time), and a
// witness never runs them but hands leadership away.
func TestRunLeadership(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("server", func(t *testing.T) {
		f := &fakeLeadership{ch: make(chan bool), transfers: make(chan struct{}, 4)}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		started, stopped := make(chan struct{}, 4), make(chan struct{}, 4)
		var running atomic.Int32
		go runLeadership(ctx, f, false, log, func(ctx context.Context) {
			if running.Add(1) != 1 {
				t.Error("two controller runs at once")
			}
			started <- struct{}{}
			<-ctx.Done()
			running.Add(-1)
			stopped <- struct{}{}
		}, nil)
		f.ch <- false
		f.ch <- true
		<-started
		f.ch <- true // still the leader: no second run
		f.ch <- false
		// runLeadership returns to its loop only once the run ended.
		f.ch <- true
		select {
		case <-stopped:
		default:
			t.Fatal("leadership lost, yet the controllers' run had not ended when the next term came")
		}
		<-started
		cancel()
		<-stopped
		if len(f.transfers) != 0 {
			t.Fatal("a server (not a witness) transferred its leadership")
		}
	})
	t.Run("witness", func(t *testing.T) {
		f := &fakeLeadership{ch: make(chan bool), transfers: make(chan struct{}, 4)}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ran := make(chan struct{}, 1)
		go runLeadership(ctx, f, true, log, func(context.Context) { ran <- struct{}{} }, nil)
		f.ch <- true
		<-f.transfers
		f.ch <- false
		f.ch <- true
		<-f.transfers
		select {
		case <-ran:
			t.Fatal("a witness ran the controllers")
		default:
		}
	})
}

// TestEvery: every calls f again and again until ctx ends, and then
// returns.
func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	every(ctx, time.Millisecond, func() {
		if calls.Add(1) == 3 {
			cancel()
		}
	})
	// A tick ready together with ctx's end may still be taken.
	if n := calls.Load(); n < 3 {
		t.Fatalf("every returned after %d calls, before ctx ended", n)
	}
}
