package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Tests of replication: real raft between in-process stores over TCP on
// loopback (a free port each), as the servers of a cluster would run it.

// replicaServer is one server of a test cluster: what it needs to restart.
type replicaServer struct {
	id, path, dir, addr string
	s                   *Store
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// quietLogger keeps raft's election chatter out of the test output
// unless SKIFF_TEST_RAFT_LOG is set.
func quietLogger() *slog.Logger {
	if os.Getenv("SKIFF_TEST_RAFT_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newReplicaServer(t testing.TB, id string) *replicaServer {
	base := t.TempDir()
	return &replicaServer{id: id, path: filepath.Join(base, "state.db"), dir: filepath.Join(base, "raft"), addr: freeAddr(t)}
}

// start opens the server's store; mut adjusts its configs.
func (rs *replicaServer) start(t testing.TB, bootstrap bool, mut func(*Options, *ReplicaConfig)) *Store {
	t.Helper()
	opts := Options{NoSync: true, Logger: quietLogger()}
	rc := ReplicaConfig{ID: rs.id, Addr: rs.addr, Dir: rs.dir, Bootstrap: bootstrap}
	if mut != nil {
		mut(&opts, &rc)
	}
	s, err := OpenReplica(rs.path, opts, rc)
	if err != nil {
		t.Fatalf("open replica %s: %v", rs.id, err)
	}
	rs.s = s
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leaderOf waits for exactly one ready leader among the open stores.
func leaderOf(t testing.TB, servers ...*replicaServer) *replicaServer {
	t.Helper()
	var leader *replicaServer
	waitFor(t, "a ready leader", 15*time.Second, func() bool {
		leader = nil
		n := 0
		for _, rs := range servers {
			if rs.s != nil && rs.s.IsLeader() {
				leader = rs
				n++
			}
		}
		return n == 1
	})
	return leader
}

// newCluster starts n servers: the first bootstraps, the others are added
// as voters.
func newCluster(t testing.TB, n int, mut func(*Options, *ReplicaConfig)) []*replicaServer {
	t.Helper()
	servers := make([]*replicaServer, n)
	for i := range servers {
		servers[i] = newReplicaServer(t, fmt.Sprintf("s%d", i+1))
		servers[i].start(t, i == 0, mut)
	}
	leader := leaderOf(t, servers[0])
	for _, rs := range servers[1:] {
		if err := leader.s.AddVoter(rs.id, rs.s.RaftAddr()); err != nil {
			t.Fatalf("add voter %s: %v", rs.id, err)
		}
	}
	return servers
}

func putNode(s *Store, name string) (int64, error) {
	return s.Update(func(tx *Tx) error { return tx.Put(api.KindNode, node(name)) })
}

// waitRev waits until every open server reached rev.
func waitRev(t testing.TB, rev int64, servers ...*replicaServer) {
	t.Helper()
	for _, rs := range servers {
		if rs.s == nil {
			continue
		}
		waitFor(t, fmt.Sprintf("%s at revision %d", rs.id, rev), 10*time.Second, func() bool { return rs.s.Rev() >= rev })
	}
}

func TestReplicaSingleVoter(t *testing.T) {
	rs := newReplicaServer(t, "solo")
	s := rs.start(t, true, nil)
	leaderOf(t, rs)
	ch, err := s.Watch(t.Context(), api.KindNode, 0)
	if err != nil {
		t.Fatal(err)
	}
	rev := mustUpdate(t, s, func(tx *Tx) error { return tx.Create(api.KindNode, node("a")) })
	if rev != 1 {
		t.Fatalf("first write at revision %d, want 1", rev)
	}
	var n api.Node
	if err := s.Get(api.KindNode, "a", &n); err != nil || n.Revision != 1 || n.Created.IsZero() {
		t.Fatalf("get after write: %+v, %v", n.Meta, err)
	}
	if ev := collect(t, ch, 1); ev[0].Revision != 1 || ev[0].Type != api.EventPut {
		t.Fatalf("watch: %+v", ev)
	}
	if _, err := s.Update(func(tx *Tx) error { return tx.Create(api.KindNode, node("a")) }); !errors.Is(err, ErrExists) {
		t.Fatalf("create twice: %v, want ErrExists", err)
	}
	if r, err := s.Update(func(tx *Tx) error { return nil }); err != nil || r != 1 {
		t.Fatalf("empty update: %d, %v", r, err)
	}
	if err := s.ReadBarrier(t.Context()); err != nil {
		t.Fatalf("read barrier on the leader: %v", err)
	}
	srv, err := s.Servers()
	if err != nil || len(srv) != 1 || srv[0].ID != "solo" || !srv[0].Leader || srv[0].Suffrage != "voter" {
		t.Fatalf("servers: %+v, %v", srv, err)
	}
	if id, addr := s.Leader(); id != "solo" || addr != s.RaftAddr() {
		t.Fatalf("leader %s at %s, want solo at %s", id, addr, s.RaftAddr())
	}
	if commits, putBytes, _, _ := s.WriteStats(); commits != 1 || putBytes == 0 {
		t.Fatalf("write stats: %d commits, %d bytes", commits, putBytes)
	}
}

func TestReplicaThreeServers(t *testing.T) {
	servers := newCluster(t, 3, nil)
	leader := leaderOf(t, servers...)
	var followers []*replicaServer
	for _, rs := range servers {
		if rs != leader {
			followers = append(followers, rs)
		}
	}
	// A watch on a follower sees the leader's writes.
	ch, err := followers[0].s.Watch(t.Context(), api.KindNode, 0)
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 5 {
		if last, err = putNode(leader.s, fmt.Sprintf("n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	evs := collect(t, ch, 5)
	if evs[4].Revision != last {
		t.Fatalf("follower's watch ended at %d, want %d", evs[4].Revision, last)
	}
	waitRev(t, last, servers...)
	for _, rs := range servers {
		var nodes []api.Node
		rev, err := rs.s.List(api.KindNode, &nodes)
		if err != nil || rev != last || len(nodes) != 5 {
			t.Fatalf("%s lists %d nodes at %d (%v), want 5 at %d", rs.id, len(nodes), rev, err, last)
		}
	}
	// A follower refuses writes and names the leader.
	_, err = putNode(followers[1].s, "x")
	var nle *NotLeaderError
	if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nle) || nle.LeaderID != leader.id || nle.LeaderAddr != leader.s.RaftAddr() {
		t.Fatalf("write on a follower: %v, want a NotLeaderError naming %s", err, leader.id)
	}
	if err := followers[1].s.ReadBarrier(t.Context()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("read barrier on a follower: %v", err)
	}
	if followers[0].s.IsLeader() {
		t.Fatal("a follower says it is the leader")
	}
	srv, err := followers[0].s.Servers()
	if err != nil || len(srv) != 3 {
		t.Fatalf("servers: %+v, %v", srv, err)
	}
	// CAS through the leader.
	var n api.Node
	if err := leader.s.Get(api.KindNode, "n0", &n); err != nil {
		t.Fatal(err)
	}
	n.Revision += 100
	if _, err := leader.s.Update(func(tx *Tx) error { return tx.Put(api.KindNode, &n) }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale CAS: %v", err)
	}
}

// TestReplicaStaleWriteRuns: a write whose command reaches the log after
// another one built on the same revision is refused by every FSM and its
// fn runs again on the new state.
func TestReplicaStaleWriteRuns(t *testing.T) {
	rs := newReplicaServer(t, "solo")
	s := rs.start(t, true, nil)
	leaderOf(t, rs)
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(api.KindNode, node("a")) })
	calls := 0
	var other error
	done := make(chan struct{})
	rev := mustUpdate(t, s, func(tx *Tx) error {
		calls++
		if calls == 1 {
			// Another leader's write on the same base revision,
			// committed before this one.
			cmd := &command{baseRev: tx.Rev() - 1, compactAfter: 100, ops: []op{{kind: opPut, bucket: objBucket(api.KindNode), key: []byte("other"), value: []byte(`{"name":"other","revision":2}`)}}}
			before := s.Raft().LastIndex()
			go func() {
				defer close(done)
				other = s.Raft().Apply(cmd.encode(), 0).Error()
			}()
			waitFor(t, "the other write in the log", 5*time.Second, func() bool { return s.Raft().LastIndex() > before })
		}
		var n api.Node
		if err := tx.Get(api.KindNode, "a", &n); err != nil {
			return err
		}
		n.Spec.Labels["seen"] = fmt.Sprint(tx.Rev())
		return tx.Put(api.KindNode, &n)
	})
	<-done
	if other != nil {
		t.Fatal(other)
	}
	if calls != 2 || rev != 3 {
		t.Fatalf("fn ran %d times, write at %d; want 2 runs and revision 3", calls, rev)
	}
	var a, o api.Node
	if err := s.Get(api.KindNode, "a", &a); err != nil || a.Spec.Labels["seen"] != "3" {
		t.Fatalf("a: %+v, %v", a, err)
	}
	if err := s.Get(api.KindNode, "other", &o); err != nil || o.Revision != 2 {
		t.Fatalf("other: %+v, %v", o, err)
	}
}

// TestReplicaLeaderFailover: the leader goes away while a client writes;
// a new leader takes over, writes go on, and no acknowledged write is
// missing on the servers that remain.
func TestReplicaLeaderFailover(t *testing.T) {
	servers := newCluster(t, 3, nil)
	leader := leaderOf(t, servers...)
	var mu sync.Mutex
	acked := map[string]int64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("w%d", i)
			for _, rs := range servers {
				mu.Lock()
				s := rs.s
				mu.Unlock()
				if s == nil {
					continue
				}
				if rev, err := putNode(s, name); err == nil {
					mu.Lock()
					acked[name] = rev
					mu.Unlock()
					break
				}
			}
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, "writes before the failover", 10*time.Second, func() bool { return count() >= 20 })
	mu.Lock()
	old := leader.s
	leader.s = nil
	mu.Unlock()
	old.Close()
	var rest []*replicaServer
	for _, rs := range servers {
		if rs != leader {
			rest = append(rest, rs)
		}
	}
	before := count()
	newLeader := leaderOf(t, rest...)
	waitFor(t, "writes after the failover", 15*time.Second, func() bool { return count() >= before+20 })
	close(stop)
	wg.Wait()
	var maxRev int64
	for _, r := range acked {
		maxRev = max(maxRev, r)
	}
	waitRev(t, maxRev, rest...)
	for _, rs := range rest {
		for name, rev := range acked {
			var n api.Node
			if err := rs.s.Get(api.KindNode, name, &n); err != nil || n.Revision != rev {
				t.Fatalf("%s: acknowledged %s at %d, found %d (%v)", rs.id, name, rev, n.Revision, err)
			}
		}
	}
	t.Logf("%d acknowledged writes; new leader %s", len(acked), newLeader.id)
}

// TestReplicaNoQuorum: a leader cut off from both followers steps down and
// refuses writes with ErrNoQuorum.
func TestReplicaNoQuorum(t *testing.T) {
	servers := newCluster(t, 3, nil)
	leader := leaderOf(t, servers...)
	if _, err := putNode(leader.s, "before"); err != nil {
		t.Fatal(err)
	}
	for _, rs := range servers {
		if rs != leader {
			rs.s.Close()
		}
	}
	var err error
	waitFor(t, "the lone server to refuse a write", 10*time.Second, func() bool {
		_, err = putNode(leader.s, "after")
		return err != nil
	})
	if !errors.Is(err, ErrNoQuorum) || errors.Is(err, ErrNotLeader) {
		t.Fatalf("write without quorum: %v, want ErrNoQuorum", err)
	}
	waitFor(t, "the lone server to step down", 10*time.Second, func() bool { return !leader.s.IsLeader() })
	if err := leader.s.ReadBarrier(t.Context()); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("read barrier without quorum: %v", err)
	}
	// Local reads go on.
	var n api.Node
	if err := leader.s.Get(api.KindNode, "before", &n); err != nil {
		t.Fatal(err)
	}
}

func TestReplicaLeadership(t *testing.T) {
	var mu sync.Mutex
	var calls []bool
	servers := newCluster(t, 2, func(_ *Options, rc *ReplicaConfig) {
		if rc.ID == "s1" {
			rc.OnLeader = func(b bool) { mu.Lock(); calls = append(calls, b); mu.Unlock() }
		}
	})
	s1 := servers[0]
	ch := s1.s.LeaderCh()
	if v := <-ch; !v {
		t.Fatal("LeaderCh of the leader said false")
	}
	// A transfer goes only to a follower that is caught up.
	waitFor(t, "s2 to catch up", 10*time.Second, func() bool {
		return servers[1].s.Raft().AppliedIndex() >= s1.s.Raft().LastIndex()
	})
	if err := s1.s.TransferLeadership(); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-ch:
		if v {
			t.Fatal("LeaderCh said true after a transfer")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no leadership change on LeaderCh")
	}
	leaderOf(t, servers[1])
	mu.Lock()
	got := fmt.Sprint(calls)
	mu.Unlock()
	if got != "[true false]" {
		t.Fatalf("OnLeader calls %s, want [true false]", got)
	}
	if err := servers[1].s.RemoveServer("s1"); err != nil {
		t.Fatal(err)
	}
	srv, err := servers[1].s.Servers()
	if err != nil || len(srv) != 1 || srv[0].ID != "s2" {
		t.Fatalf("servers after remove: %+v, %v", srv, err)
	}
	if _, err := putNode(servers[1].s, "alone"); err != nil {
		t.Fatalf("write on a one-server cluster after remove: %v", err)
	}
}
