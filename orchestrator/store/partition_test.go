package store

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// cutStream is a raft.StreamLayer over loopback TCP that a test can cut
// off from every other server (and heal): its dials fail, dials to it
// fail, and the connections it had close. It is also what proves that a
// StreamLayer given in ReplicaConfig.Stream carries raft.
type cutStream struct {
	net.Listener
	net *cutNet

	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

// cutNet finds a stream by its address.
type cutNet struct {
	mu      sync.Mutex
	streams map[string]*cutStream
}

func (n *cutNet) listen(t testing.TB) *cutStream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &cutStream{Listener: ln, net: n}
	n.mu.Lock()
	n.streams[ln.Addr().String()] = s
	n.mu.Unlock()
	return s
}

func (s *cutStream) isCut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cut
}

func (s *cutStream) track(c net.Conn) net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		c.Close()
	}
	s.conns = append(s.conns, c)
	return c
}

func (s *cutStream) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if s.isCut() {
			c.Close()
			continue
		}
		return s.track(c), nil
	}
}

func (s *cutStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	s.net.mu.Lock()
	peer := s.net.streams[string(addr)]
	s.net.mu.Unlock()
	if s.isCut() || (peer != nil && peer.isCut()) {
		return nil, errors.New("partitioned")
	}
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	return s.track(c), nil
}

func (s *cutStream) setCut(cut bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = cut
	if cut {
		for _, c := range s.conns {
			c.Close()
		}
		s.conns = nil
	}
}

// TestReplicaPartition: the leader is cut off from the two others. The
// majority elects a new leader and takes writes; the old leader steps down
// and refuses writes with ErrNoQuorum (never with a success); once healed
// it catches up and follows.
func TestReplicaPartition(t *testing.T) {
	cn := &cutNet{streams: map[string]*cutStream{}}
	streams := map[string]*cutStream{}
	servers := newCluster(t, 3, func(_ *Options, rc *ReplicaConfig) {
		st := cn.listen(t)
		streams[rc.ID] = st
		rc.Stream, rc.Addr = st, st.Addr().String()
	})
	old := leaderOf(t, servers...)
	rev, err := putNode(old.s, "before")
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, rev, servers...)
	streams[old.id].setCut(true)

	var majority []*replicaServer
	for _, rs := range servers {
		if rs != old {
			majority = append(majority, rs)
		}
	}
	var minorityErr error
	waitFor(t, "the cut-off leader to refuse writes", 10*time.Second, func() bool {
		_, minorityErr = putNode(old.s, "minority")
		return minorityErr != nil
	})
	if !errors.Is(minorityErr, ErrNoQuorum) {
		t.Fatalf("write on the minority: %v, want ErrNoQuorum", minorityErr)
	}
	leader := leaderOf(t, majority...)
	for i := range 10 {
		rev = write(t, fmt.Sprintf("majority-%d", i), majority...)
	}
	leader = leaderOf(t, majority...)
	if _, err := putNode(old.s, "minority"); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("write on the minority during the partition: %v", err)
	}
	// A linearizable read on the old leader must not pass: it would miss
	// the majority's writes.
	if err := old.s.ReadBarrier(t.Context()); err == nil {
		t.Fatal("read barrier passed on the cut-off old leader")
	}
	if err := leader.s.ReadBarrier(t.Context()); err != nil {
		t.Fatalf("read barrier on the new leader: %v", err)
	}
	streams[old.id].setCut(false)
	waitRev(t, rev, old)
	want := dump(t, leader.s)
	waitFor(t, "the healed server to hold the majority's state", 10*time.Second, func() bool { return dump(t, old.s) == want })
	_, err = putNode(old.s, "x")
	var nle *NotLeaderError
	if !errors.As(err, &nle) || nle.LeaderID != leader.id || nle.LeaderAddr != leader.s.RaftAddr() {
		// The healed server may still be between elections: ask again.
		waitFor(t, "the healed server to name the leader", 10*time.Second, func() bool {
			_, err = putNode(old.s, "x")
			return errors.As(err, &nle) && nle.LeaderID == leader.id
		})
	}
	if err := old.s.Get("nodes", "minority", node("m")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a write refused on the minority exists: %v", err)
	}
}
