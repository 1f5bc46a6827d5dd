package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Leadership: which server takes writes, and the raft API of a Store.

// observe follows raft's leadership notifications: a new leader becomes
// ready (accepts writes, IsLeader) once a barrier shows that its store
// holds every committed write.
func (rp *replica) observe() {
	for {
		select {
		case leader := <-rp.notifyCh:
			rp.mu.Lock()
			rp.gen++
			gen := rp.gen
			close(rp.changed)
			rp.changed = make(chan struct{})
			rp.mu.Unlock()
			if leader {
				go rp.barrier(gen)
			} else {
				rp.setReady(gen, false)
			}
		case <-rp.done:
			return
		}
	}
}

// markDown records that raft has shut down (closed, or removed from the
// configuration): futures not answered by then may never be.
func (rp *replica) markDown() { rp.downOnce.Do(func() { close(rp.down) }) }

// shutdownGrace is how long await still waits for a future's answer once
// raft has shut down.
const shutdownGrace = time.Second

// await waits for raft's answer to f, or for ctx. raft may leave a future
// unanswered for ever when it shuts down (hashicorp/raft#498: a committed
// write handed to the FSM's queue is dropped if the FSM's loop sees the
// shutdown first), so once raft has shut down await waits shutdownGrace
// more and then fails with ErrClosed: the write may or may not have been
// applied. (The goroutine that waits on such a future stays blocked; it
// is one per write in flight at shutdown.)
func (rp *replica) await(ctx context.Context, f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-rp.down:
	}
	t := time.NewTimer(shutdownGrace)
	defer t.Stop()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%w (raft shut down before it answered; a write in flight may or may not be applied)", ErrClosed)
	}
}

func (rp *replica) barrier(gen uint64) {
	if err := rp.await(context.Background(), rp.raft.Barrier(0)); err != nil {
		// Leadership lost (a notification follows) or shut down.
		return
	}
	rp.setReady(gen, true)
}

func (rp *replica) setReady(gen uint64, ready bool) {
	rp.pubMu.Lock()
	defer rp.pubMu.Unlock()
	rp.mu.Lock()
	if gen != rp.gen || rp.ready == ready {
		rp.mu.Unlock()
		return
	}
	rp.ready = ready
	close(rp.changed)
	rp.changed = make(chan struct{})
	subs := rp.subs
	rp.mu.Unlock()
	for _, ch := range subs {
		sendLatest(ch, ready)
	}
	if rp.cfg.OnLeader != nil {
		rp.cfg.OnLeader(ready)
	}
}

// sendLatest replaces what ch (capacity 1) holds by v. Only setReady
// sends, under pubMu.
func sendLatest(ch chan bool, v bool) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

// isReady: this server is the leader and its barrier passed.
func (rp *replica) isReady() bool {
	rp.mu.Lock()
	ready := rp.ready
	rp.mu.Unlock()
	return ready && rp.raft.State() == raft.Leader
}

// waitReady returns nil on the ready leader, at once an error on a
// follower, and waits a little on a leader whose barrier runs.
func (rp *replica) waitReady() error {
	timeout := time.NewTimer(2 * rp.cfg.ElectionTimeout)
	defer timeout.Stop()
	for {
		rp.mu.Lock()
		ready, changed := rp.ready, rp.changed
		rp.mu.Unlock()
		switch st := rp.raft.State(); {
		case st == raft.Shutdown:
			return ErrClosed
		case st != raft.Leader:
			return rp.notLeader()
		case ready:
			return nil
		}
		select {
		case <-changed:
		case <-timeout.C:
			return ErrNoQuorum
		case <-rp.done:
			return ErrClosed
		}
	}
}

// notLeader is the error of a write on a server that is not the leader.
func (rp *replica) notLeader() error {
	addr, id := rp.raft.LeaderWithID()
	if id == "" || string(id) == rp.cfg.ID {
		return ErrNoQuorum
	}
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// raftErr maps an error of a raft future.
func (rp *replica) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return rp.notLeader()
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w (%v: the write may or may not be applied)", ErrNoQuorum, err)
	}
	return err
}

// maxReruns bounds how often an Update's fn runs again after its write
// came too late (another leader's write went first).
const maxReruns = 8

// updateReplicated is Update on a replica; s.mu is held.
func (s *Store) updateReplicated(fn func(tx *Tx) error) (int64, error) {
	rp := s.rp
	for range maxReruns {
		if err := rp.waitReady(); err != nil {
			return 0, err
		}
		cmd, err := s.prepare(fn)
		if errors.Is(err, bolt.ErrDatabaseNotOpen) {
			return 0, fmt.Errorf("%w: %v", ErrClosed, err) // closed after waitReady
		}
		if err != nil {
			return 0, err
		}
		if cmd == nil {
			return s.rev.Load(), nil
		}
		f := rp.raft.Apply(cmd.encode(), 0)
		if err := rp.await(context.Background(), f); err != nil {
			return 0, rp.raftErr(err)
		}
		res, _ := f.Response().(applyResult)
		if res.err != nil {
			return 0, res.err
		}
		if !res.stale {
			return res.rev, nil
		}
		s.log.Debug("write went stale in a change of leader; running it again", "base_revision", cmd.baseRev)
	}
	return 0, fmt.Errorf("write kept going stale after %d tries: %w", maxReruns, ErrNoQuorum)
}

// prepare runs fn in a bolt transaction it rolls back, and returns the
// command of what fn wrote (nil if nothing).
func (s *Store) prepare(fn func(tx *Tx) error) (*command, error) {
	btx, err := s.db.Begin(true)
	if err != nil {
		return nil, err
	}
	defer btx.Rollback()
	base := getInt(btx.Bucket(bucketMeta), keyRev)
	tx := &Tx{btx: btx, rev: base + 1, now: time.Now().UTC(), record: true}
	if err := fn(tx); err != nil {
		return nil, err
	}
	if tx.seq == 0 {
		return nil, nil
	}
	return &command{baseRev: base, compactAfter: int64(s.opts.CompactAfter), ops: tx.ops}, nil
}

// RaftServer is one server of the raft configuration.
type RaftServer struct {
	ID, Address string
	// Suffrage is "voter" or "nonvoter".
	Suffrage string
	Leader   bool
}

// Replicated tells whether the store runs raft (OpenReplica).
func (s *Store) Replicated() bool { return s.rp != nil }

// IsLeader tells whether this server is the ready leader: it accepts
// writes (its barrier since it was elected has passed). A store of Open is
// always its own leader.
func (s *Store) IsLeader() bool {
	if s.rp == nil {
		return true
	}
	return s.rp.isReady()
}

// LeaderCh returns a channel that receives the current leadership (as
// IsLeader) at once and then every change; a reader that falls behind
// gets only the latest value. A store of Open sends true once.
func (s *Store) LeaderCh() <-chan bool {
	ch := make(chan bool, 1)
	if s.rp == nil {
		ch <- true
		return ch
	}
	rp := s.rp
	rp.pubMu.Lock()
	defer rp.pubMu.Unlock()
	rp.mu.Lock()
	rp.subs = append(rp.subs, ch)
	ready := rp.ready
	rp.mu.Unlock()
	ch <- ready
	return ch
}

// Leader returns the raft ID and address of the leader this server knows
// ("" if none).
func (s *Store) Leader() (id, raftAddr string) {
	if s.rp == nil {
		return "", ""
	}
	addr, rid := s.rp.raft.LeaderWithID()
	return string(rid), string(addr)
}

// RaftAddr returns this server's raft address ("" for a store of Open).
func (s *Store) RaftAddr() string {
	if s.rp == nil {
		return ""
	}
	return string(s.rp.addr)
}

// ReadBarrier makes the local reads that follow linearizable: on the
// leader it confirms with a majority that it still is the leader (its
// store then holds every acknowledged write). On a follower it fails with
// a *NotLeaderError, with no quorum with ErrNoQuorum. A store of Open
// returns nil.
func (s *Store) ReadBarrier(ctx context.Context) error {
	rp := s.rp
	if rp == nil {
		return nil
	}
	if !rp.isReady() {
		if rp.raft.State() == raft.Leader {
			if err := rp.waitReady(); err != nil {
				return err
			}
		} else {
			return rp.notLeader()
		}
	}
	if err := rp.await(ctx, rp.raft.VerifyLeader()); err != nil {
		if ce := ctx.Err(); ce != nil && errors.Is(err, ce) {
			return err
		}
		return rp.raftErr(err)
	}
	return nil
}

// Servers returns the raft configuration.
func (s *Store) Servers() ([]RaftServer, error) {
	if s.rp == nil {
		return nil, ErrNotReplicated
	}
	f := s.rp.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.rp.raftErr(err)
	}
	_, leader := s.rp.raft.LeaderWithID()
	var out []RaftServer
	for _, sv := range f.Configuration().Servers {
		suf := "voter"
		if sv.Suffrage != raft.Voter {
			suf = "nonvoter"
		}
		out = append(out, RaftServer{ID: string(sv.ID), Address: string(sv.Address), Suffrage: suf, Leader: sv.ID == leader})
	}
	return out, nil
}

// membershipTimeout bounds a configuration change's wait to be queued.
const membershipTimeout = 10 * time.Second

// AddVoter adds (or updates the address of) a voting server; on the leader
// only. It returns once the new configuration is committed.
func (s *Store) AddVoter(id, raftAddr string) error {
	if s.rp == nil {
		return ErrNotReplicated
	}
	if err := s.rp.await(context.Background(), s.rp.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, membershipTimeout)); err != nil {
		return s.rp.raftErr(err)
	}
	return nil
}

// RemoveServer removes a server from the configuration; on the leader
// only. Removing the leader itself makes it step down once committed, and
// its raft shuts down (its writes then fail with ErrClosed; its reads
// serve its last state). A removed follower is sent nothing more: it may
// never learn of its removal, and a running one asks to be added again
// (the API refuses to remove a server the gossip sees running).
func (s *Store) RemoveServer(id string) error {
	if s.rp == nil {
		return ErrNotReplicated
	}
	err := s.rp.await(context.Background(), s.rp.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout))
	if errors.Is(err, ErrClosed) && id == s.rp.cfg.ID && !s.rp.inConfiguration(id) {
		// The leader removed itself: raft shut down as the removal
		// committed, and may not have answered (see await).
		return nil
	}
	if err != nil {
		return s.rp.raftErr(err)
	}
	return nil
}

// inConfiguration tells whether id is in raft's latest configuration
// (readable after raft shut down).
func (rp *replica) inConfiguration(id string) bool {
	f := rp.raft.GetConfiguration()
	if f.Error() != nil {
		return true
	}
	for _, sv := range f.Configuration().Servers {
		if string(sv.ID) == id {
			return true
		}
	}
	return false
}

// TransferLeadership hands leadership to the most up-to-date other voter;
// on the leader only.
func (s *Store) TransferLeadership() error {
	if s.rp == nil {
		return ErrNotReplicated
	}
	if err := s.rp.await(context.Background(), s.rp.raft.LeadershipTransfer()); err != nil {
		return s.rp.raftErr(err)
	}
	return nil
}

// Raft returns the raft instance (nil for a store of Open), for stats and
// what this API does not cover.
func (s *Store) Raft() *raft.Raft {
	if s.rp == nil {
		return nil
	}
	return s.rp.raft
}
