package store

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// Replication. A store of OpenReplica keeps the same bolt file as Open (its
// reads, watches and revisions are those of the plain store) but changes
// it only through a raft log shared by every server of the cluster
// (hashicorp/raft, the log in raft-boltdb):
//
//   - Update runs on the leader only. Its fn runs in a bolt transaction
//     that is rolled back; the puts and deletes it made travel through
//     raft as one command, and every server (the leader too) applies it
//     once a majority stored it (see fsm.go). Update returns when the
//     leader applied it: an acknowledged write is on a majority's disk.
//   - On a follower Update fails at once with a *NotLeaderError naming the
//     leader; with no leader reachable it fails with ErrNoQuorum.
//   - An Update in flight when raft shuts down (Close, or this server
//     removed from the configuration) ends with ErrClosed or ErrNoQuorum;
//     its write may or may not be applied. raft itself can leave such a
//     write unanswered (see await).
//   - Reads (View, Get, List, Watch) are served from the local file on
//     every server. A follower's may lag the leader's by the time a commit
//     takes to reach it (milliseconds on a LAN). For a linearizable read,
//     call ReadBarrier first on the leader.
//
// Durability. The raft log is fsynced on every write: that is what makes
// an acknowledged write survive. The store file is written without fsync
// (bolt NoSync) because everything in it can be rebuilt from the raft
// snapshot and log. Measured by BenchmarkReplicaUpdate (bench/ha.md,
// "store"; 9 interleaved runs on a loaded 2-core VM, ext4): a one-object
// Update of the plain store took 421 us (median ns/op; p50 348 us), one
// voter with this NoSync store file 506 us (1.20x; p50 1.29x), and one
// voter with the store file fsynced too 937 us (2.22x; p50 2.14x), past
// the bound of 1.5x: fsyncing it adds the two fdatasyncs of
// another bolt commit to every write. The raft log (raft-boltdb) keeps no
// freelist on disk (NoFreelistSync): 11% fewer bytes written per
// write, rebuilt by a scan of the small file at open.
//
// A store file written without fsync is whole after a kill -9 (the kernel
// keeps what was written) but not after a power cut or kernel crash:
// fsm-state in the raft directory records the boot in which the file was
// last written and whether it was closed cleanly (then synced). On start,
// a file last written in an earlier boot and not closed cleanly is thrown
// away and rebuilt from the latest snapshot and the log (OpenReplica waits
// up to ten election timeouts for the log to be applied again); a trusted one
// is kept and only the log entries after its applied index are
// replayed.

// Errors of a replica store; test them with errors.Is.
var (
	// ErrNotLeader: this server is not the raft leader. The error is a
	// *NotLeaderError that names the leader.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoQuorum: no leader is reachable, or the write could not be
	// confirmed. A write that fails with it while in flight (leadership
	// lost mid-apply) may still be applied: the caller cannot tell.
	ErrNoQuorum = errors.New("no leader reachable; a majority of servers must be reachable to write")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrNotReplicated: a raft operation on a store of Open.
	ErrNotReplicated = errors.New("store is not replicated (single server without raft)")
)

// NotLeaderError is the error of a write or ReadBarrier on a follower. It
// matches ErrNotLeader with errors.Is.
type NotLeaderError struct {
	// LeaderID is the leader's raft server ID, LeaderAddr its raft address.
	LeaderID, LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("not the leader; the leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Edge defaults of ReplicaConfig, chosen for a failover under 2 s: a
// follower that hears nothing from the leader for 0.5-1 s starts an
// election; a leader that cannot reach a majority for 250 ms steps down
// (the minority then refuses writes).
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
	// DefaultSnapshotThreshold is how many log entries since the last
	// snapshot trigger a new one; DefaultTrailingLogs how many the log
	// keeps behind it; DefaultRetainSnapshots how many snapshots stay on
	// disk. Together they bound the raft directory to about two store
	// files and 2048 writes.
	DefaultSnapshotThreshold = 1024
	DefaultTrailingLogs      = 1024
	DefaultRetainSnapshots   = 2
	DefaultSnapshotInterval  = 30 * time.Second
)

// ReplicaConfig configures the raft side of OpenReplica.
type ReplicaConfig struct {
	// ID is this server's raft ID, stable across restarts (the node
	// name). Required.
	ID string
	// Addr is the raft address other servers reach this one at
	// (HOST:PORT). With Stream nil, the store listens on it with plain TCP
	// (tests only; port 0 picks a free port, see Store.RaftAddr).
	Addr string
	// Dir holds the raft log (raft.db), the snapshots and fsm-state
	// (<data_dir>/raft). Required.
	Dir string
	// Stream carries raft's connections (the server's TLS listener on
	// the API port). Nil: plain TCP on Addr. Its Addr() must be the
	// advertised address (Addr): raft sends it to the followers as the
	// leader's address (Leader, NotLeaderError).
	Stream raft.StreamLayer
	// Bootstrap forms a cluster of this one voter when the raft directory
	// holds no state. A store file from before raft (a v0.1 data dir, or
	// one RestoreBackup wrote) becomes the cluster's first snapshot.
	// Without Bootstrap a fresh server waits to be added (AddVoter on the
	// leader) and any store file it had is moved aside
	// (state.db.before-join-<unix time>). A server that is to join an
	// existing cluster must start without Bootstrap: with it, it forms a
	// cluster of its own, which cannot be merged into another. Bootstrap
	// is ignored once the raft directory holds state.
	Bootstrap bool
	// Raft timings; zero takes the Default* above.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout, CommitTimeout time.Duration
	// Snapshots and log compaction; zero takes the Default* above.
	SnapshotThreshold, TrailingLogs uint64
	SnapshotInterval                time.Duration
	RetainSnapshots                 int
	// OnLeader, if set, is called with true when this server becomes the
	// ready leader (after its barrier: it holds every committed write and
	// accepts writes) and with false when it stops being it. Calls come in
	// order, one at a time; it must not block long nor call Close or
	// LeaderCh (start goroutines for that).
	OnLeader func(leader bool)

	// syncFSM fsyncs the store file on every apply too (the alternative
	// measured by BenchmarkReplicaUpdate).
	syncFSM bool
}

// Validate reports a config OpenReplica refuses.
func (c ReplicaConfig) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("replica config: ID is empty"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("replica config: Dir is empty"))
	}
	if c.Stream == nil {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("replica config: Addr %q: %w", c.Addr, err))
		}
	}
	if c.LeaderLeaseTimeout > 0 && c.HeartbeatTimeout > 0 && c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("replica config: LeaderLeaseTimeout %s is longer than HeartbeatTimeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	return errors.Join(errs...)
}

func (c ReplicaConfig) withDefaults() ReplicaConfig {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	set(&c.ElectionTimeout, DefaultElectionTimeout)
	set(&c.LeaderLeaseTimeout, min(DefaultLeaderLeaseTimeout, c.HeartbeatTimeout))
	set(&c.CommitTimeout, DefaultCommitTimeout)
	set(&c.SnapshotInterval, DefaultSnapshotInterval)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.RetainSnapshots <= 0 {
		c.RetainSnapshots = DefaultRetainSnapshots
	}
	return c
}

// replica is the raft side of a Store.
type replica struct {
	cfg   ReplicaConfig
	raft  *raft.Raft
	trans *raft.NetworkTransport
	logs  *raftboltdb.BoltStore
	fsm   *fsm
	// addr is the advertised raft address.
	addr raft.ServerAddress
	// noSyncFSM: the store file is written without fsync (fsm-state).
	noSyncFSM bool

	notifyCh chan bool
	// down is closed (markDown) once raft has shut down: on Close, or on
	// its own when this server was removed from the configuration.
	down      chan struct{}
	downOnce  sync.Once
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	// mu protects gen, ready, changed and subs.
	mu sync.Mutex
	// gen counts leadership changes; a barrier makes its server ready
	// only if no change came since it started.
	gen   uint64
	ready bool
	// changed is closed (and replaced) at every change of gen or ready.
	changed chan struct{}
	subs    []chan bool
	// pubMu orders the OnLeader calls.
	pubMu sync.Mutex
}

// Files in ReplicaConfig.Dir.
const (
	raftLogFile  = "raft.db"
	fsmStateFile = "fsm-state"
)

// OpenReplica opens the store file at path (like Open) as one server of a
// raft cluster configured by rc. See the comment at the top of replica.go.
func OpenReplica(path string, opts Options, rc ReplicaConfig) (*Store, error) {
	if err := rc.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	rc = rc.withDefaults()
	log := opts.Logger.With("component", "store")
	if err := os.MkdirAll(rc.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft directory: %w", err)
	}
	hlog := newHCLogger(opts.Logger.With("component", "raft"))
	rp := &replica{cfg: rc, noSyncFSM: !rc.syncFSM, done: make(chan struct{}), changed: make(chan struct{}), notifyCh: make(chan bool, 8),
		down: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			rp.closeParts()
		}
	}()
	var err error
	rp.logs, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(rc.Dir, raftLogFile), NoSync: opts.NoSync,
		BoltOptions: &bolt.Options{Timeout: opts.LockTimeout, NoFreelistSync: true}})
	if err != nil {
		return nil, fmt.Errorf("open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(rc.Dir, rc.RetainSnapshots, hlog.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("open raft snapshots: %w", err)
	}
	if rc.Stream != nil {
		rp.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: rc.Stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog.Named("net")})
	} else {
		rp.trans, err = raft.NewTCPTransportWithLogger(rc.Addr, nil, 3, 10*time.Second, hlog.Named("net"))
		if err != nil {
			return nil, fmt.Errorf("raft listen %s: %w", rc.Addr, err)
		}
	}
	addr := rp.trans.LocalAddr()
	if rc.Stream != nil && rc.Addr != "" {
		addr = raft.ServerAddress(rc.Addr)
	}
	rp.addr = addr
	self := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(rc.ID), Address: addr}}}

	existing, err := raft.HasExistingState(rp.logs, rp.logs, snaps)
	if err != nil {
		return nil, fmt.Errorf("read raft state: %w", err)
	}
	noSync := opts.NoSync || rp.noSyncFSM
	var s *Store
	restoreOnStart := false
	catchUpTo := uint64(0)
	if !existing {
		if s, err = openFresh(path, opts, noSync, rc.Bootstrap, log); err != nil {
			return nil, err
		}
		switch {
		case rc.Bootstrap && s.rev.Load() > 0:
			if err := bootstrapFromFile(s, snaps, rp.logs, rp.trans, self); err != nil {
				s.db.Close()
				return nil, err
			}
			log.Info("raft cluster formed from the existing store", "revision", s.rev.Load(), "id", rc.ID)
		case rc.Bootstrap:
			if err := raft.BootstrapCluster(raftConfig(rc, nil, hlog, true), rp.logs, rp.logs, snaps, rp.trans, self); err != nil {
				s.db.Close()
				return nil, fmt.Errorf("bootstrap raft: %w", err)
			}
			log.Info("raft cluster formed", "id", rc.ID)
		}
	} else {
		trusted, cleanRev := fsmState(rc.Dir)
		trusted = trusted || !rp.noSyncFSM
		if trusted {
			s, err = openDB(path, opts, noSync)
			switch {
			case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
				// Raft holds everything the file did.
				log.Warn("store file is damaged; rebuilding it from the raft snapshot and log", "err", err)
				trusted = false
			case err != nil:
				return nil, err
			case cleanRev >= 0 && s.rev.Load() != cleanRev:
				// Written by something else than this replica (a
				// server run without raft on the same data dir):
				// raft's log is the truth.
				log.Warn("store file changed since raft closed it; rebuilding it", "revision", s.rev.Load(), "closed_at", cleanRev)
				s.db.Close()
				trusted = false
			default:
				if why := checkAgainstSnapshots(s, snaps, rp.logs); why != "" {
					log.Warn("store file is behind the raft snapshot; rebuilding it", "why", why)
					s.db.Close()
					trusted = false
				}
			}
		} else {
			log.Warn("store file was left by an earlier boot without a clean close; rebuilding it from the raft snapshot and log")
		}
		if !trusted {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				return nil, fmt.Errorf("remove untrusted store file: %w", err)
			}
			if s, err = openDB(path, opts, noSync); err != nil {
				return nil, err
			}
			restoreOnStart = true
			catchUpTo = lastCommand(rp.logs)
		}
	}
	s.rp = rp
	rp.fsm = &fsm{s: s}
	if err := s.db.View(func(btx *bolt.Tx) error {
		rp.fsm.applied.Store(uint64(getInt(btx.Bucket(bucketMeta), keyApplied)))
		return nil
	}); err != nil {
		s.db.Close()
		return nil, err
	}
	if rp.noSyncFSM {
		if err := writeFSMState(rc.Dir, false, 0); err != nil {
			s.db.Close()
			return nil, err
		}
	}
	rp.raft, err = raft.NewRaft(raftConfig(rc, rp.notifyCh, hlog, !restoreOnStart), rp.fsm, rp.logs, rp.logs, snaps, rp.trans)
	if err != nil {
		s.db.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	ok = true
	// raft's Shutdown state marks the store down as raft enters it (the
	// filter runs in raft's setState; nothing is sent on the nil channel).
	rp.raft.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if st, ok := o.Data.(raft.RaftState); ok && st == raft.Shutdown {
			rp.markDown()
		}
		return false
	}))
	if rp.raft.State() == raft.Shutdown {
		rp.markDown()
	}
	go rp.observe()
	if catchUpTo > 0 {
		rp.waitApplied(catchUpTo, 10*rc.ElectionTimeout)
	}
	log.Debug("replica open", "path", path, "id", rc.ID, "raft_addr", addr, "revision", s.rev.Load())
	return s, nil
}

func raftConfig(rc ReplicaConfig, notify chan bool, hlog hclog.Logger, noRestore bool) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(rc.ID)
	c.HeartbeatTimeout = rc.HeartbeatTimeout
	c.ElectionTimeout = rc.ElectionTimeout
	c.LeaderLeaseTimeout = rc.LeaderLeaseTimeout
	c.CommitTimeout = rc.CommitTimeout
	c.SnapshotThreshold = rc.SnapshotThreshold
	c.SnapshotInterval = rc.SnapshotInterval
	c.TrailingLogs = rc.TrailingLogs
	c.NoSnapshotRestoreOnStart = noRestore
	c.Logger = hlog
	if notify != nil {
		c.NotifyCh = notify
	}
	return c
}

// openFresh opens the store file of a server whose raft directory is
// empty. Without bootstrap, an old store file is not this cluster's state:
// it is moved aside and the store starts empty (the leader sends its
// snapshot).
func openFresh(path string, opts Options, noSync, bootstrap bool, log interface{ Warn(string, ...any) }) (*Store, error) {
	s, err := openDB(path, opts, noSync)
	if err != nil {
		return nil, err
	}
	if !bootstrap && s.rev.Load() > 0 {
		s.db.Close()
		aside := fmt.Sprintf("%s.before-join-%d", path, time.Now().Unix())
		if err := os.Rename(path, aside); err != nil {
			return nil, fmt.Errorf("move the old store aside: %w", err)
		}
		log.Warn("the store file of a server that joins a cluster was moved aside", "path", aside)
		if s, err = openDB(path, opts, noSync); err != nil {
			return nil, err
		}
	}
	// The applied index of another cluster (a backup) means nothing here.
	err = s.db.Update(func(btx *bolt.Tx) error { return btx.Bucket(bucketMeta).Delete(keyApplied) })
	if err == nil {
		err = s.db.Sync()
	}
	if err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// bootstrapFromFile forms a one-voter cluster whose first state is the
// store file's: the file becomes snapshot 1 (with the configuration),
// exactly as BootstrapCluster would write log entry 1. A server that joins
// later gets it as a snapshot, and a rebuild restores it.
func bootstrapFromFile(s *Store, snaps raft.SnapshotStore, stable raft.StableStore, trans raft.Transport, conf raft.Configuration) error {
	sink, err := snaps.Create(raft.SnapshotVersionMax, 1, 1, conf, 1, trans)
	if err != nil {
		return fmt.Errorf("bootstrap snapshot: %w", err)
	}
	err = s.db.View(func(btx *bolt.Tx) error {
		_, err := btx.WriteTo(sink)
		return err
	})
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("bootstrap snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("bootstrap snapshot: %w", err)
	}
	// As BootstrapCluster does: the first election is for term 2.
	if err := stable.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		return fmt.Errorf("bootstrap term: %w", err)
	}
	return nil
}

// checkAgainstSnapshots tells why a trusted store file cannot be kept: raft
// starts after its latest snapshot, so the file must hold every command up
// to that snapshot (it may not if a snapshot from the leader was stored but
// the process died before applying it).
func checkAgainstSnapshots(s *Store, snaps raft.SnapshotStore, logs raft.LogStore) string {
	list, err := snaps.List()
	if err != nil {
		return err.Error()
	}
	if len(list) == 0 {
		return ""
	}
	var applied uint64
	s.db.View(func(btx *bolt.Tx) error {
		applied = uint64(getInt(btx.Bucket(bucketMeta), keyApplied))
		return nil
	})
	last := list[0].Index
	if applied >= last {
		return ""
	}
	if last-applied > 4*DefaultTrailingLogs {
		return fmt.Sprintf("applied index %d, snapshot %d", applied, last)
	}
	for i := applied + 1; i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return fmt.Sprintf("applied index %d, snapshot %d, log entry %d: %v", applied, last, i, err)
		}
		if l.Type == raft.LogCommand {
			return fmt.Sprintf("applied index %d, snapshot %d holds command %d", applied, last, i)
		}
	}
	return ""
}

// fsm-state says whether the store file can be trusted on the next start
// (see writeFSMState).

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// fsmState tells whether the store file can be kept, and for a clean close
// the revision it had then (-1 if unknown).
func fsmState(dir string) (trusted bool, cleanRev int64) {
	b, err := os.ReadFile(filepath.Join(dir, fsmStateFile))
	if err != nil {
		return false, -1
	}
	f := strings.Fields(string(b))
	switch {
	case len(f) == 3 && f[1] == "clean":
		rev, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return false, -1
		}
		return true, rev
	case len(f) == 2 && f[1] == "open":
		id := bootID()
		return id != "" && f[0] == id, -1
	}
	return false, -1
}

// writeFSMState records "<boot id> open" (the store file is being written
// without fsync) or, after Close synced it, "<boot id> clean <revision>".
func writeFSMState(dir string, clean bool, rev int64) error {
	id := bootID()
	if id == "" {
		id = "unknown"
	}
	line := id + " open\n"
	if clean {
		line = fmt.Sprintf("%s clean %d\n", id, rev)
	}
	path := filepath.Join(dir, fsmStateFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lastCommand is the index of the last command in the log (0 if none in
// its last 4096 entries).
func lastCommand(logs raft.LogStore) uint64 {
	first, err1 := logs.FirstIndex()
	last, err2 := logs.LastIndex()
	if err1 != nil || err2 != nil {
		return 0
	}
	for i := last; i >= first && i > 0 && last-i < 4096; i-- {
		var l raft.Log
		if logs.GetLog(i, &l) == nil && l.Type == raft.LogCommand {
			return i
		}
	}
	return 0
}

// waitApplied waits (at most timeout) until the store file holds the
// command at index, so that a rebuilt store file does not serve a state
// older than the one it had before the restart. (A command of the log
// that was never committed is never applied: the wait then ends at the
// timeout.)
func (rp *replica) waitApplied(index uint64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for rp.fsm.applied.Load() < index && time.Now().Before(deadline) {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-rp.done:
			return
		}
	}
}

func (s *Store) closeReplica() error {
	rp := s.rp
	rp.closeOnce.Do(func() {
		err := rp.raft.Shutdown().Error()
		rp.markDown()
		close(rp.done)
		rp.closeParts()
		if serr := s.db.Sync(); err == nil {
			err = serr
		}
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
		if err == nil && rp.noSyncFSM {
			err = writeFSMState(rp.cfg.Dir, true, s.rev.Load())
		}
		s.notifyWatchers()
		rp.closeErr = err
	})
	return rp.closeErr
}

// closeParts closes the transport and the log.
func (rp *replica) closeParts() {
	if rp.trans != nil {
		rp.trans.Close()
	}
	if rp.logs != nil {
		rp.logs.Close()
	}
}
