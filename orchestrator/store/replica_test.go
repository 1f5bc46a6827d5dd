package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/nettest"
)

// Tests of replication: real raft between in-process stores over TCP on
// loopback (a free port each), as the servers of a cluster would run it.

// replicaServer is one server of a test cluster: what it needs to restart.
type replicaServer struct {
	id, path, dir, addr string
	s                   *Store
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
	return &replicaServer{id: id, path: filepath.Join(base, "state.db"), dir: filepath.Join(base, "raft"), addr: nettest.Addr(t, "127.0.0.1")}
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

// write puts node name through whichever of servers is the ready leader,
// retrying while leadership moves (a loaded machine can delay heartbeats
// past the edge timings). For the writes that set a test up, not for
// those it checks.
func write(t testing.TB, name string, servers ...*replicaServer) int64 {
	t.Helper()
	var last error
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, rs := range servers {
			if rs.s == nil || !rs.s.IsLeader() {
				continue
			}
			r, err := putNode(rs.s, name)
			if err == nil {
				return r
			}
			if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoQuorum) {
				t.Fatalf("write %s on %s: %v", name, rs.id, err)
			}
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("write %s: no leader took it within 15s (last: %v)", name, last)
		}
		time.Sleep(10 * time.Millisecond) // retry interval of a client
	}
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
	commits, putBytes, pages, _ := s.WriteStats()
	ls := s.rp.logs.Stats()
	if commits != 1 || putBytes == 0 || pages < ls.TxStats.GetWrite() || ls.TxStats.GetWrite() == 0 {
		t.Fatalf("write stats: %d commits, %d bytes, %d pages", commits, putBytes, pages)
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
		last = write(t, fmt.Sprintf("n%d", i), servers...)
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
	leader = leaderOf(t, servers...)
	followers = followers[:0]
	for _, rs := range servers {
		if rs != leader {
			followers = append(followers, rs)
		}
	}
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
	var lastErr error
	stop := make(chan struct{})
	halt := sync.OnceFunc(func() { close(stop) })
	defer halt() // the writer ends with the test, even a failed one
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
			took := false
			for _, rs := range servers {
				mu.Lock()
				s := rs.s
				mu.Unlock()
				if s == nil {
					continue
				}
				// The leader's store may be closed under this write: it
				// must end all the same (TestReplicaCloseEndsWritesInFlight).
				rev, err := putNode(s, name)
				mu.Lock()
				if err == nil {
					acked[name] = rev
				}
				lastErr = err
				mu.Unlock()
				if took = err == nil; took {
					break
				}
			}
			if !took {
				time.Sleep(10 * time.Millisecond) // retry interval of a client
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
	defer func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("%d writes after the failover; the last write's error: %v", len(acked)-before, lastErr)
			mu.Unlock()
		}
	}()
	waitFor(t, "writes after the failover", 15*time.Second, func() bool { return count() >= before+20 })
	halt()
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
	write(t, "before", servers...)
	leader := leaderOf(t, servers...) // a ready leader holds "before"
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

// snapshotNow makes the server take a raft snapshot (and compact its log).
func snapshotNow(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
}

// dump is every node's name and revision, and the store's revision.
func dump(t testing.TB, s *Store) string {
	t.Helper()
	var nodes []api.Node
	rev, err := s.List(api.KindNode, &nodes)
	if err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf("rev %d:", rev)
	for _, n := range nodes {
		out += fmt.Sprintf(" %s@%d", n.Name, n.Revision)
	}
	return out
}

func smallLog(_ *Options, rc *ReplicaConfig) {
	rc.SnapshotThreshold, rc.TrailingLogs = 40, 10
}

// TestReplicaRestart: a server restarted from its directories keeps every
// write, after snapshots and log compaction, whether it keeps its store
// file (closed cleanly, or written in this boot) or rebuilds it from the
// snapshot and the log (a file left by an earlier boot).
func TestReplicaRestart(t *testing.T) {
	rs := newReplicaServer(t, "solo")
	s := rs.start(t, true, smallLog)
	leaderOf(t, rs)
	for i := range 150 {
		if _, err := putNode(s, fmt.Sprintf("n%d", i%60)); err != nil {
			t.Fatal(err)
		}
		if i == 50 || i == 100 || i == 140 {
			snapshotNow(t, s)
		}
	}
	// The log keeps TrailingLogs (10) entries behind the last snapshot.
	first, _ := s.rp.logs.FirstIndex()
	last, _ := s.rp.logs.LastIndex()
	if last-first > 10+10 {
		t.Fatalf("raft log holds %d..%d after a snapshot with 10 trailing logs", first, last)
	}
	want := dump(t, s)
	steps := []struct {
		name   string
		before func()
	}{
		{"clean close", func() {}},
		{"open in this boot", func() { writeFSMState(rs.dir, false, 0) }},
		{"open in an earlier boot", func() {
			os.WriteFile(filepath.Join(rs.dir, fsmStateFile), []byte("0000-earlier-boot open\n"), 0o600)
		}},
		{"damaged", func() {
			f, err := os.OpenFile(rs.path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(make([]byte, 8192), 0) // both meta pages
			f.Close()
		}},
		{"written without raft after a clean close", func() {
			plain, err := Open(rs.path, Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			putNode(plain, "not-in-raft")
			plain.Close()
		}},
	}
	for _, step := range steps {
		rs.s.Close()
		step.before()
		s = rs.start(t, true, smallLog)
		if got := dump(t, s); got != want {
			t.Fatalf("%s: after restart\n%s\nwant\n%s", step.name, got, want)
		}
		leaderOf(t, rs)
		if _, err := putNode(s, "after-"+step.name); err != nil {
			t.Fatal(err)
		}
		want = dump(t, s)
	}
	snaps, err := os.ReadDir(filepath.Join(rs.dir, "snapshots"))
	if err != nil || len(snaps) > DefaultRetainSnapshots {
		t.Fatalf("%d snapshots kept (%v), want at most %d", len(snaps), err, DefaultRetainSnapshots)
	}
}

// TestReplicaClusterRestart: every server stops and starts again; a
// follower that was down while the leader compacted its log catches up
// from a snapshot.
func TestReplicaClusterRestart(t *testing.T) {
	servers := newCluster(t, 3, smallLog)
	leader := leaderOf(t, servers...)
	var down *replicaServer
	for _, rs := range servers {
		if rs != leader {
			down = rs
			break
		}
	}
	waitRev(t, write(t, "first", servers...), servers...)
	down.s.Close()
	down.s = nil
	var rev int64
	for i := range 120 {
		rev = write(t, fmt.Sprintf("n%d", i%50), servers...)
	}
	leader = leaderOf(t, servers...)
	snapshotNow(t, leader.s)
	down.start(t, false, smallLog)
	waitRev(t, rev, down)
	want := dump(t, leader.s)
	if got := dump(t, down.s); got != want {
		t.Fatalf("follower after catching up from a snapshot:\n%s\nwant\n%s", got, want)
	}
	for _, rs := range servers {
		rs.s.Close()
	}
	for _, rs := range servers {
		rs.start(t, false, smallLog)
	}
	rev = write(t, "after-restart", servers...)
	leader = leaderOf(t, servers...)
	waitRev(t, rev, servers...)
	want = dump(t, leader.s)
	for _, rs := range servers {
		if got := dump(t, rs.s); got != want {
			t.Fatalf("%s after the restart of all:\n%s\nwant\n%s", rs.id, got, want)
		}
	}
}

// TestReplicaUpgradeFromPlainStore: a data dir of the plain store (v0.1)
// keeps its state when it starts with raft, and a server that joins later
// gets that state.
func TestReplicaUpgradeFromPlainStore(t *testing.T) {
	rs := newReplicaServer(t, "old")
	plain, err := Open(rs.path, Options{NoSync: true, CompactAfter: 20})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := putNode(plain, fmt.Sprintf("n%d", i%15)); err != nil {
			t.Fatal(err)
		}
	}
	want := dump(t, plain)
	plain.Close()
	s := rs.start(t, true, func(o *Options, _ *ReplicaConfig) { o.CompactAfter = 20 })
	if got := dump(t, s); got != want {
		t.Fatalf("after the upgrade:\n%s\nwant\n%s", got, want)
	}
	if _, err := s.Watch(t.Context(), "", 5); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from before the plain store's compaction: %v", err)
	}
	leaderOf(t, rs)
	rev, err := putNode(s, "after")
	if err != nil || rev != 41 {
		t.Fatalf("first raft write at %d (%v), want 41", rev, err)
	}
	joiner := newReplicaServer(t, "new")
	joiner.start(t, false, nil)
	if err := s.AddVoter(joiner.id, joiner.s.RaftAddr()); err != nil {
		t.Fatal(err)
	}
	waitRev(t, rev, joiner)
	want = dump(t, s)
	if got := dump(t, joiner.s); got != want {
		t.Fatalf("joined server:\n%s\nwant\n%s", got, want)
	}
	// A rebuild of the upgraded server starts from the snapshot the
	// upgrade made.
	rs.s.Close()
	os.WriteFile(filepath.Join(rs.dir, fsmStateFile), []byte("0000-earlier-boot open\n"), 0o600)
	s = rs.start(t, true, nil)
	waitRev(t, rev, rs)
	if got := dump(t, s); got != want {
		t.Fatalf("rebuilt upgraded server:\n%s\nwant\n%s", got, want)
	}
}

// TestReplicaJoinMovesOldStoreAside: a server that joins a cluster with a
// store file of its own does not mix it into the cluster's state.
func TestReplicaJoinMovesOldStoreAside(t *testing.T) {
	servers := newCluster(t, 1, nil)
	rev, err := putNode(servers[0].s, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	j := newReplicaServer(t, "joiner")
	plain, err := Open(j.path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	putNode(plain, "local")
	plain.Close()
	j.start(t, false, nil)
	if err := servers[0].s.AddVoter(j.id, j.s.RaftAddr()); err != nil {
		t.Fatal(err)
	}
	waitRev(t, rev, j)
	if got, want := dump(t, j.s), dump(t, servers[0].s); got != want {
		t.Fatalf("joiner: %s, want %s", got, want)
	}
	aside, _ := filepath.Glob(j.path + ".before-join-*")
	if len(aside) != 1 {
		t.Fatalf("old store file not moved aside: %v", aside)
	}
}

func TestBackupRestore(t *testing.T) {
	servers := newCluster(t, 1, nil)
	s := servers[0].s
	for i := range 10 {
		if _, err := putNode(s, fmt.Sprintf("n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	want := dump(t, s)
	var buf bytes.Buffer
	if _, err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	backup := buf.Bytes()

	fresh := newReplicaServer(t, "restored")
	if err := RestoreBackup(fresh.path, fresh.dir, bytes.NewReader([]byte("not a store"))); err == nil {
		t.Fatal("restore of garbage succeeded")
	}
	if _, err := os.Stat(fresh.path); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left %s: %v", fresh.path, err)
	}
	if err := RestoreBackup(fresh.path, fresh.dir, bytes.NewReader(backup)); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fresh.path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("restored file: %v, %v", st, err)
	}
	if err := RestoreBackup(fresh.path, fresh.dir, bytes.NewReader(backup)); !errors.Is(err, ErrHasState) {
		t.Fatalf("restore over a store file: %v, want ErrHasState", err)
	}
	if err := RestoreBackup(filepath.Join(t.TempDir(), "state.db"), servers[0].dir, bytes.NewReader(backup)); !errors.Is(err, ErrHasState) {
		t.Fatalf("restore beside a raft directory: %v, want ErrHasState", err)
	}
	// The restored server forms a new cluster with the backup's state.
	r := fresh.start(t, true, nil)
	if got := dump(t, r); got != want {
		t.Fatalf("restored:\n%s\nwant\n%s", got, want)
	}
	leaderOf(t, fresh)
	if rev, err := putNode(r, "after"); err != nil || rev != 11 {
		t.Fatalf("write after restore at %d (%v), want 11", rev, err)
	}
	// Plain Open reads a backup as it is.
	p := filepath.Join(t.TempDir(), "plain.db")
	if err := RestoreBackup(p, "", bytes.NewReader(backup)); err != nil {
		t.Fatal(err)
	}
	plain, err := Open(p, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if got := dump(t, plain); got != want {
		t.Fatalf("plain open of a backup: %s", got)
	}
}

// TestReplicaCompactsAlike: every server compacts its watch log at the
// leader's CompactAfter (it travels in the command), whatever its own.
func TestReplicaCompactsAlike(t *testing.T) {
	servers := newCluster(t, 2, func(o *Options, rc *ReplicaConfig) {
		if rc.ID == "s1" {
			o.CompactAfter = 5
		}
	})
	leaderOf(t, servers[0])
	var rev int64
	for i := range 12 {
		rev = write(t, fmt.Sprintf("n%d", i), servers[0])
	}
	waitRev(t, rev, servers...)
	for _, rs := range servers {
		if _, err := rs.s.Watch(t.Context(), "", rev-6); !errors.Is(err, ErrCompacted) {
			t.Fatalf("%s: watch from before the last 5 events: %v, want ErrCompacted", rs.id, err)
		}
		ch, err := rs.s.Watch(t.Context(), "", rev-5)
		if err != nil {
			t.Fatalf("%s: watch from the last 5 events: %v", rs.id, err)
		}
		if evs := collect(t, ch, 5); evs[4].Revision != rev {
			t.Fatalf("%s: watch ended at %d", rs.id, evs[4].Revision)
		}
	}
}

// TestReplicaCloseEndsWritesInFlight: closing a store ends every Update in
// flight, with its result, ErrClosed or ErrNoQuorum (leadership lost). raft can drop a committed write's
// future unanswered when it shuts down (hashicorp/raft#498); an Update
// that waited on it alone never returned, and held the store's write lock
// for ever.
func TestReplicaCloseEndsWritesInFlight(t *testing.T) {
	const rounds, writers = 200, 2
	fast := func(_ *Options, rc *ReplicaConfig) {
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 20*time.Millisecond, 20*time.Millisecond, 20*time.Millisecond
	}
	for round := range rounds {
		rs := newReplicaServer(t, "s1")
		s := rs.start(t, true, fast)
		leaderOf(t, rs)
		var acked sync.WaitGroup
		acked.Add(writers)
		ended := make(chan error, writers)
		for w := range writers {
			go func() {
				counted := false
				for i := 0; ; i++ {
					_, err := putNode(s, fmt.Sprintf("w%d-%d", w, i))
					if (i == 3 || err != nil) && !counted {
						counted = true
						acked.Done()
					}
					if err != nil {
						ended <- err
						return
					}
				}
			}()
		}
		acked.Wait()
		s.Close()
		deadline := time.After(5 * time.Second)
		for range writers {
			select {
			case err := <-ended:
				if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrNoQuorum) {
					t.Fatalf("round %d: a write in flight at close failed with %v, want ErrClosed or ErrNoQuorum", round, err)
				}
			case <-deadline:
				t.Fatalf("round %d: a write in flight at close had not returned 5s after it", round)
			}
		}
	}
}

// TestReplicaSelfRemovalMarksDown: a leader that removes itself shuts its
// raft down on its own (no Close); the store learns of it, so that a wait
// on a future raft leaves unanswered ends (see await), and the removal
// reports success.
func TestReplicaSelfRemovalMarksDown(t *testing.T) {
	servers := newCluster(t, 3, nil)
	leader := leaderOf(t, servers...)
	// Writes keep raft's FSM busy as the removal commits, as an API
	// server's would: raft may then shut down without answering the
	// removal, which succeeded all the same.
	stop := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := putNode(leader.s, fmt.Sprintf("w%d", i)); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-wrote }()
	if err := leader.s.RemoveServer(leader.id); err != nil {
		t.Fatalf("remove the leader %s itself: %v", leader.id, err)
	}
	select {
	case <-leader.s.rp.down:
	case <-time.After(10 * time.Second):
		t.Fatalf("raft state %s 10s after the leader removed itself, and the store was not marked down", leader.s.rp.raft.State())
	}
	if _, err := putNode(leader.s, "after"); !errors.Is(err, ErrClosed) {
		t.Fatalf("a write on the removed leader: %v, want ErrClosed", err)
	}
}
