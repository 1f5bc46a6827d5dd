// Package store is skiff's state store: every object of the cluster as JSON
// in a bbolt file, under one monotonic revision for the whole store.
//
// A write is an Update: one bbolt transaction that may touch many objects
// (all or nothing), is fsynced before Update returns, and gives every object
// it writes the same new revision (like an etcd txn). Each write also appends
// a watch event to an event log kept in the same file, so that a watcher can
// resume from any revision the log still holds; the log is compacted to the
// last Options.CompactAfter events.
//
// Open gives a store of one process; OpenReplica gives a store whose writes
// go through a raft log shared by several servers (see replica.go): the same
// API, with Update accepted by the leader only.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Errors of the store; test them with errors.Is.
var (
	// ErrNotFound: no object of that kind and name.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a write carried a revision that is no longer the
	// object's revision.
	ErrConflict = errors.New("revision conflict")
	// ErrExists: Create of an object that already exists.
	ErrExists = errors.New("already exists")
	// ErrCompacted: a watch asked for events older than the log retains; the
	// caller must list again and watch from the list's revision.
	ErrCompacted = errors.New("revision compacted")
)

// DefaultCompactAfter is the number of watch events kept when
// Options.CompactAfter is zero.
const DefaultCompactAfter = 10000

// Options configure a Store. The zero value is valid.
type Options struct {
	// CompactAfter is how many events the watch log keeps; older ones are
	// dropped and a watch from before them gets ErrCompacted. Default
	// DefaultCompactAfter.
	CompactAfter int
	// Logger for the store; default slog.Default().
	Logger *slog.Logger
	// NoSync skips fsync on commit. Only for tests and benchmarks: a crash
	// loses acknowledged writes.
	NoSync bool
	// LockTimeout is how long Open waits for another process to release
	// the file. Default 5s.
	LockTimeout time.Duration
}

var (
	bucketMeta = []byte("meta")
	bucketLog  = []byte("log")
	keyRev     = []byte("rev")
	// keyCompacted holds the newest revision whose events were dropped.
	keyCompacted = []byte("compacted")
	// keyLogN holds the number of events in the log.
	keyLogN = []byte("logn")
)

// objPrefix names the bucket of a kind's objects.
const objPrefix = "obj/"

// Store is the state store. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	// mu serialises Updates so that revisions are published in order.
	mu  sync.Mutex
	rev atomic.Int64
	// commits and putBytes count the Updates that wrote and the bytes
	// of keys and values they put (WriteStats).
	commits, putBytes atomic.Int64

	// watchMu protects watchers.
	watchMu  sync.Mutex
	watchers map[*watcher]struct{}

	// rp is the raft replication of an OpenReplica store; nil for Open.
	rp *replica
}

// Open opens or creates the store file at path (its directory is created
// with mode 0700 if missing).
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	return openDB(path, opts, opts.NoSync)
}

func (opts Options) withDefaults() Options {
	if opts.CompactAfter <= 0 {
		opts.CompactAfter = DefaultCompactAfter
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	return opts
}

// openDB opens the bbolt file of a store; noSync skips its fsyncs.
func openDB(path string, opts Options, noSync bool) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoSync: noSync})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts, log: opts.Logger.With("component", "store"), watchers: map[*watcher]struct{}{}}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketLog} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		s.rev.Store(getInt(tx.Bucket(bucketMeta), keyRev))
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	s.log.Debug("store open", "path", path, "revision", s.rev.Load())
	return s, nil
}

// Close closes the store. Open watch channels close soon after. A replica
// leaves raft without handing over leadership (the others elect a new
// leader after their election timeout; TransferLeadership first avoids the
// wait).
func (s *Store) Close() error {
	if s.rp != nil {
		return s.closeReplica()
	}
	err := s.db.Close()
	s.notifyWatchers() // their next read fails and they end
	return err
}

// Rev returns the store's current revision: that of the last Update that
// wrote something.
func (s *Store) Rev() int64 { return s.rev.Load() }

// Get reads one object into into (a pointer to an object type). Its
// Meta.Revision is the revision of the object's last write.
func (s *Store) Get(kind, name string, into api.Object) error {
	return s.View(func(tx *Tx) error { return tx.Get(kind, name, into) })
}

// List reads every object of kind into into, a *[]T or *[]*T of an object
// type, sorted by name, and returns the store revision it saw.
func (s *Store) List(kind string, into any) (rev int64, err error) {
	err = s.View(func(tx *Tx) error {
		rev = tx.rev
		return tx.List(kind, into)
	})
	return rev, err
}

// View runs fn in a read-only transaction: a consistent snapshot. Writes in
// fn fail. tx.Rev is the snapshot's revision.
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error {
		return fn(&Tx{btx: btx, rev: getInt(btx.Bucket(bucketMeta), keyRev), readOnly: true})
	})
}

// errNoWrites rolls back an Update whose fn wrote nothing.
var errNoWrites = errors.New("no writes")

// Update runs fn in one write transaction: either everything fn wrote is
// committed (and fsynced, unless Options.NoSync; on a replica, in the raft
// log of a majority) before Update returns, or,
// if fn returns an error, nothing is. Every object written in fn gets the
// same new revision, which Update returns. An fn that writes nothing
// commits nothing and Update returns the current revision.
//
// Objects passed to Put and Create have their Meta updated even when the
// transaction is rolled back afterwards. fn must not call Update (that
// deadlocks) and should be quick: Updates run one at a time.
//
// On a store of Open, fn runs once. On a replica (OpenReplica), Update
// runs only on the leader (elsewhere it fails with a *NotLeaderError or
// ErrNoQuorum, see replica.go) and fn may run more than once: when a
// change of leader put another write first, fn runs again on the new
// state, so fn must start from scratch each time (reset what it
// collects). The revision is returned once the write is committed by a
// majority and applied here.
func (s *Store) Update(fn func(tx *Tx) error) (rev int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rp != nil {
		return s.updateReplicated(fn)
	}
	var newRev, written int64
	err = s.db.Update(func(btx *bolt.Tx) error {
		meta := btx.Bucket(bucketMeta)
		tx := &Tx{btx: btx, rev: getInt(meta, keyRev) + 1, now: time.Now().UTC()}
		defer func() { written = tx.bytes }()
		if err := fn(tx); err != nil {
			return err
		}
		if tx.seq == 0 {
			return errNoWrites
		}
		if err := putInt(meta, keyRev, tx.rev); err != nil {
			return err
		}
		if err := compact(btx, int64(tx.seq), int64(s.opts.CompactAfter)); err != nil {
			return err
		}
		newRev = tx.rev
		return nil
	})
	if errors.Is(err, errNoWrites) {
		return s.rev.Load(), nil
	}
	if err != nil {
		return 0, err
	}
	s.rev.Store(newRev)
	s.commits.Add(1)
	s.putBytes.Add(written)
	s.notifyWatchers()
	return newRev, nil
}

// compact counts added new events and drops the oldest beyond limit
// (CompactAfter), remembering the newest dropped revision.
func compact(btx *bolt.Tx, added, limit int64) error {
	meta := btx.Bucket(bucketMeta)
	n := getInt(meta, keyLogN) + added
	excess := n - limit
	if excess > 0 {
		c := btx.Bucket(bucketLog).Cursor()
		var last int64
		for k, _ := c.First(); k != nil && excess > 0; k, _ = c.First() {
			last = int64(binary.BigEndian.Uint64(k[:8]))
			if err := c.Delete(); err != nil {
				return err
			}
			excess--
			n--
		}
		if err := putInt(meta, keyCompacted, last); err != nil {
			return err
		}
	}
	return putInt(meta, keyLogN, n)
}

// Tx is one store transaction, given to the fn of Update or View. It must
// not be used after fn returns.
type Tx struct {
	btx      *bolt.Tx
	rev      int64 // the revision this transaction writes (or, read-only, sees)
	now      time.Time
	seq      uint32 // events written so far
	readOnly bool
	bytes    int64 // bytes of objects and events put so far (WriteStats)
	// record makes the transaction keep every bolt put and delete in ops
	// (a replica's Update sends them through raft, see fsm.go).
	record bool
	ops    []op
}

// WriteStats says what the store wrote since it opened: commits that
// wrote something, bytes of keys and values put (objects and their watch
// events), and pages bbolt wrote to the file with their size in bytes
// (what reaches the disk, besides the meta page of each commit). On a
// replica, commits are the writes this server applied, and pages include
// those of the raft log (raft.db, same page size).
func (s *Store) WriteStats() (commits, putBytes, pages, pageBytes int64) {
	st := s.db.Stats()
	pages = st.TxStats.GetWrite()
	if s.rp != nil && s.rp.logs != nil {
		ls := s.rp.logs.Stats()
		pages += ls.TxStats.GetWrite()
	}
	return s.commits.Load(), s.putBytes.Load(), pages, pages * int64(s.db.Info().PageSize)
}

// Rev is the revision this transaction's writes get (in Update), or the
// revision of the snapshot (in View).
func (tx *Tx) Rev() int64 { return tx.rev }

// Now is the time the transaction started (UTC); Created and event times use
// it.
func (tx *Tx) Now() time.Time {
	if tx.now.IsZero() {
		return time.Now().UTC()
	}
	return tx.now
}

func objBucket(kind string) []byte { return []byte(objPrefix + kind) }

// Get reads one object into into.
func (tx *Tx) Get(kind, name string, into api.Object) error {
	b := tx.btx.Bucket(objBucket(kind))
	var v []byte
	if b != nil {
		v = b.Get([]byte(name))
	}
	if v == nil {
		return fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	rv := reflect.ValueOf(into)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv.Elem().SetZero()
	}
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("decode %s %q: %w", kind, name, err)
	}
	return nil
}

// List reads every object of kind into into (*[]T or *[]*T), sorted by
// name. An empty kind gives an empty, non-nil slice.
func (tx *Tx) List(kind string, into any) error {
	pv := reflect.ValueOf(into)
	if pv.Kind() != reflect.Pointer || pv.IsNil() || pv.Elem().Kind() != reflect.Slice {
		return fmt.Errorf("list %s: into must be a pointer to a slice, not %T", kind, into)
	}
	sv := pv.Elem()
	et := sv.Type().Elem()
	ptr := et.Kind() == reflect.Pointer
	base := et
	if ptr {
		base = et.Elem()
	}
	if !reflect.PointerTo(base).Implements(reflect.TypeFor[api.Object]()) {
		return fmt.Errorf("list %s: %s is not an object type", kind, base)
	}
	out := reflect.MakeSlice(sv.Type(), 0, 0)
	if b := tx.btx.Bucket(objBucket(kind)); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			p := reflect.New(base)
			if err := json.Unmarshal(v, p.Interface()); err != nil {
				return fmt.Errorf("decode %s %q: %w", kind, k, err)
			}
			if ptr {
				out = reflect.Append(out, p)
			} else {
				out = reflect.Append(out, p.Elem())
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	sv.Set(out)
	return nil
}

// storedMeta is the part of a stored object the store reads back.
type storedMeta struct {
	Revision int64     `json:"revision"`
	Created  time.Time `json:"created"`
}

func (tx *Tx) current(kind, name string) (raw []byte, m storedMeta, err error) {
	b := tx.btx.Bucket(objBucket(kind))
	if b == nil {
		return nil, m, nil
	}
	raw = b.Get([]byte(name))
	if raw == nil {
		return nil, m, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, m, fmt.Errorf("decode %s %q: %w", kind, name, err)
	}
	return raw, m, nil
}

// Create writes a new object; ErrExists if one of that name exists. It sets
// obj's Created and Revision.
func (tx *Tx) Create(kind string, obj api.Object) error {
	name := obj.GetMeta().Name
	raw, _, err := tx.current(kind, name)
	if err != nil {
		return err
	}
	if raw != nil {
		return fmt.Errorf("%s %q: %w", kind, name, ErrExists)
	}
	m := obj.GetMeta()
	m.Created = tx.Now()
	return tx.write(kind, obj)
}

// Put writes obj. If obj's Meta.Revision is not zero it must equal the
// stored object's revision (else ErrConflict, or ErrNotFound if there is
// none); zero writes unconditionally. Put keeps the stored Created time and
// sets obj's Revision to the new revision.
func (tx *Tx) Put(kind string, obj api.Object) error {
	m := obj.GetMeta()
	raw, cur, err := tx.current(kind, m.Name)
	if err != nil {
		return err
	}
	if m.Revision != 0 {
		if raw == nil {
			return fmt.Errorf("%s %q: %w", kind, m.Name, ErrNotFound)
		}
		if cur.Revision != m.Revision {
			return fmt.Errorf("%s %q at revision %d, not %d: %w", kind, m.Name, cur.Revision, m.Revision, ErrConflict)
		}
	}
	if raw != nil {
		m.Created = cur.Created
	} else {
		m.Created = tx.Now()
	}
	return tx.write(kind, obj)
}

// PutIfChanged is Put, except that when obj is the stored object unchanged
// it writes nothing (no new revision, no watch event, no disk write), sets
// obj's Revision and Created to the stored ones and returns false. Reports
// that repeat themselves (a node registering again, a status sent twice)
// then cost an SD card nothing.
func (tx *Tx) PutIfChanged(kind string, obj api.Object) (bool, error) {
	m := obj.GetMeta()
	raw, cur, err := tx.current(kind, m.Name)
	if err != nil {
		return false, err
	}
	if raw != nil && (m.Revision == 0 || m.Revision == cur.Revision) {
		was, wasCreated := m.Revision, m.Created
		m.Revision, m.Created = cur.Revision, cur.Created
		if v, err := json.Marshal(obj); err == nil && bytes.Equal(v, raw) {
			return false, nil
		}
		m.Revision, m.Created = was, wasCreated
	}
	return true, tx.Put(kind, obj)
}

func (tx *Tx) write(kind string, obj api.Object) error {
	if tx.readOnly {
		return fmt.Errorf("write %s in a read-only transaction", kind)
	}
	m := obj.GetMeta()
	if m.Name == "" {
		return fmt.Errorf("write %s: empty name", kind)
	}
	m.Revision = tx.rev
	v, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encode %s %q: %w", kind, m.Name, err)
	}
	b, err := tx.btx.CreateBucketIfNotExists(objBucket(kind))
	if err != nil {
		return err
	}
	if err := b.Put([]byte(m.Name), v); err != nil {
		return err
	}
	tx.recordOp(opPut, objBucket(kind), []byte(m.Name), v)
	tx.bytes += int64(len(m.Name) + len(v))
	return tx.appendEvent(api.EventPut, kind, v)
}

// Delete removes an object. rev 0 deletes unconditionally; otherwise it must
// be the object's revision (ErrConflict). ErrNotFound if absent.
func (tx *Tx) Delete(kind, name string, rev int64) error {
	if tx.readOnly {
		return fmt.Errorf("delete %s in a read-only transaction", kind)
	}
	raw, cur, err := tx.current(kind, name)
	if err != nil {
		return err
	}
	if raw == nil {
		return fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	if rev != 0 && rev != cur.Revision {
		return fmt.Errorf("%s %q at revision %d, not %d: %w", kind, name, cur.Revision, rev, ErrConflict)
	}
	// raw belongs to the transaction's pages: copy it before the delete.
	last := append([]byte(nil), raw...)
	if err := tx.btx.Bucket(objBucket(kind)).Delete([]byte(name)); err != nil {
		return err
	}
	tx.recordOp(opDelete, objBucket(kind), []byte(name), nil)
	return tx.appendEvent(api.EventDelete, kind, last)
}

func (tx *Tx) appendEvent(typ, kind string, obj []byte) error {
	v, err := json.Marshal(api.WatchEvent{Type: typ, Revision: tx.rev, Kind: kind, Object: obj})
	if err != nil {
		return err
	}
	k := logKey(tx.rev, tx.seq)
	if err := tx.btx.Bucket(bucketLog).Put(k, v); err != nil {
		return err
	}
	tx.recordOp(opPut, bucketLog, k, v)
	tx.bytes += int64(12 + len(v))
	tx.seq++
	return nil
}

// logKey orders events by revision, then by order within the revision.
func logKey(rev int64, seq uint32) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, uint64(rev))
	binary.BigEndian.PutUint32(k[8:], seq)
	return k
}

func getInt(b *bolt.Bucket, k []byte) int64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func putInt(b *bolt.Bucket, k []byte, n int64) error {
	v := make([]byte, 8)
	binary.BigEndian.PutUint64(v, uint64(n))
	return b.Put(k, v)
}

// Count returns the number of objects of kind.
func (s *Store) Count(kind string) (n int, err error) {
	err = s.db.View(func(btx *bolt.Tx) error {
		if b := btx.Bucket(objBucket(kind)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n, err
}
