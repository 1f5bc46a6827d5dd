package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// A replica's write travels through raft as a command: the bolt-level puts
// and deletes that the Update's fn made in a transaction the leader then
// rolled back, and the revision that transaction started from (BaseRev).
// Every server's FSM applies the command in one bolt transaction only if
// its store is still at BaseRev; otherwise it answers "stale" and the
// leader runs fn again on the newer state. So a write computed by a server
// that was leader a moment ago, on a state that has moved on since, can
// never be applied on top of writes it did not see: every Update stays
// serializable across changes of leader. Timestamps (tx.Now) are inside
// the op bytes, so applying is deterministic.

// opKind is what an op does.
type opKind byte

const (
	opPut    opKind = 1
	opDelete opKind = 2
)

// op is one bolt put or delete of a command.
type op struct {
	kind        opKind
	bucket, key []byte
	value       []byte // opPut only
}

// recordOp keeps a put or delete for the command of a replica's Update.
func (tx *Tx) recordOp(kind opKind, bucket, key, value []byte) {
	if tx.record {
		tx.ops = append(tx.ops, op{kind: kind, bucket: bucket, key: key, value: value})
	}
}

// cmdVersion is the first byte of every command.
const cmdVersion = 1

// command is a replicated write.
type command struct {
	baseRev int64
	// compactAfter is the leader's Options.CompactAfter: every server
	// compacts its watch log alike whatever its own option says.
	compactAfter int64
	ops          []op
}

func (c *command) encode() []byte {
	n := 1 + 3*binary.MaxVarintLen64
	for _, o := range c.ops {
		n += 1 + 3*binary.MaxVarintLen64 + len(o.bucket) + len(o.key) + len(o.value)
	}
	b := make([]byte, 0, n)
	b = append(b, cmdVersion)
	b = binary.AppendUvarint(b, uint64(c.baseRev))
	b = binary.AppendUvarint(b, uint64(c.compactAfter))
	b = binary.AppendUvarint(b, uint64(len(c.ops)))
	for _, o := range c.ops {
		b = append(b, byte(o.kind))
		b = binary.AppendUvarint(b, uint64(len(o.bucket)))
		b = append(b, o.bucket...)
		b = binary.AppendUvarint(b, uint64(len(o.key)))
		b = append(b, o.key...)
		if o.kind == opPut {
			b = binary.AppendUvarint(b, uint64(len(o.value)))
			b = append(b, o.value...)
		}
	}
	return b
}

var errBadCommand = errors.New("malformed store command")

func decodeCommand(b []byte) (*command, error) {
	if len(b) == 0 || b[0] != cmdVersion {
		return nil, fmt.Errorf("%w: unknown version", errBadCommand)
	}
	r := bytes.NewReader(b[1:])
	uv := func() (uint64, error) {
		v, err := binary.ReadUvarint(r)
		if err != nil {
			return 0, errBadCommand
		}
		return v, nil
	}
	bs := func() ([]byte, error) {
		n, err := uv()
		if err != nil || n > uint64(r.Len()) {
			return nil, errBadCommand
		}
		v := make([]byte, n)
		_, err = io.ReadFull(r, v)
		return v, err
	}
	c := &command{}
	var v [3]uint64
	for i := range v {
		var err error
		if v[i], err = uv(); err != nil {
			return nil, err
		}
	}
	c.baseRev, c.compactAfter = int64(v[0]), int64(v[1])
	if v[2] > uint64(len(b)) {
		return nil, errBadCommand
	}
	c.ops = make([]op, 0, v[2])
	for range v[2] {
		k, err := r.ReadByte()
		if err != nil {
			return nil, errBadCommand
		}
		o := op{kind: opKind(k)}
		if o.kind != opPut && o.kind != opDelete {
			return nil, fmt.Errorf("%w: op %d", errBadCommand, k)
		}
		if o.bucket, err = bs(); err != nil {
			return nil, err
		}
		if o.key, err = bs(); err != nil {
			return nil, err
		}
		if o.kind == opPut {
			if o.value, err = bs(); err != nil {
				return nil, err
			}
		}
		c.ops = append(c.ops, o)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", errBadCommand)
	}
	return c, nil
}

// applyResult is what the FSM answers a command (the Response of its
// raft.ApplyFuture).
type applyResult struct {
	rev   int64 // the revision written
	stale bool  // the store was no longer at the command's BaseRev
	err   error
}

// keyApplied holds the raft index of the last command the FSM applied. It
// is the server's own (not replicated) state: a restart skips the log
// entries the file already holds.
var keyApplied = []byte("applied")

// fsm is a replica store's raft.FSM: it applies commands to the bolt file
// that reads and watches use.
type fsm struct {
	s *Store
	// applied is the index of the last command applied (also in the file
	// under keyApplied). Only raft's FSM goroutine writes it.
	applied atomic.Uint64
}

var _ raft.FSM = (*fsm)(nil)

// Apply applies one committed command (called by raft, one at a time).
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if l.Index <= f.applied.Load() {
		// Already in the file: a restart replays from the last snapshot.
		return applyResult{stale: true}
	}
	c, err := decodeCommand(l.Data)
	if err != nil {
		f.s.log.Error("skip undecodable raft command", "index", l.Index, "err", err)
		return applyResult{err: err}
	}
	s := f.s
	var res applyResult
	var written int64
	err = s.db.Update(func(btx *bolt.Tx) error {
		meta := btx.Bucket(bucketMeta)
		if err := putInt(meta, keyApplied, int64(l.Index)); err != nil {
			return err
		}
		if cur := getInt(meta, keyRev); cur != c.baseRev {
			res.stale = true
			return nil
		}
		var events int64
		for _, o := range c.ops {
			b, err := btx.CreateBucketIfNotExists(o.bucket)
			if err != nil {
				return err
			}
			switch o.kind {
			case opPut:
				if err := b.Put(o.key, o.value); err != nil {
					return err
				}
				written += int64(len(o.key) + len(o.value))
				if bytes.Equal(o.bucket, bucketLog) {
					events++
				}
			case opDelete:
				if err := b.Delete(o.key); err != nil {
					return err
				}
			}
		}
		res.rev = c.baseRev + 1
		if err := putInt(meta, keyRev, res.rev); err != nil {
			return err
		}
		return compact(btx, events, c.compactAfter)
	})
	if err != nil {
		// A disk error here leaves this server behind the others; its
		// raft state moves on, so it must be rebuilt (a restart with a
		// bad file rebuilds from the snapshot and the log).
		s.log.Error("apply raft command", "index", l.Index, "err", err)
		return applyResult{err: fmt.Errorf("apply write: %w", err)}
	}
	f.applied.Store(l.Index)
	if res.stale {
		return res
	}
	s.rev.Store(res.rev)
	s.commits.Add(1)
	s.putBytes.Add(written)
	s.notifyWatchers()
	return res
}

// Snapshot gives a consistent copy of the bolt file (a read transaction
// that Persist writes out while Apply goes on).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	tx, err := f.s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &boltSnapshot{tx: tx}, nil
}

type boltSnapshot struct{ tx *bolt.Tx }

func (b *boltSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := b.tx.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (b *boltSnapshot) Release() { b.tx.Rollback() }

// Restore replaces the store's content with a snapshot's (a new server
// catching up, or a restart that rebuilds the file). It copies every
// bucket in one transaction, so reads see the old or the new state.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s := f.s
	tmp, err := os.CreateTemp(s.rp.cfg.Dir, "restore-*.db")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, rc); err != nil {
		tmp.Close()
		return fmt.Errorf("read snapshot: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	src, err := bolt.Open(tmp.Name(), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("open snapshot: %w", err)
	}
	defer src.Close()
	var rev, applied int64
	err = s.db.Update(func(dst *bolt.Tx) error {
		return src.View(func(stx *bolt.Tx) error {
			if err := copyBuckets(dst, stx); err != nil {
				return err
			}
			meta := dst.Bucket(bucketMeta)
			rev, applied = getInt(meta, keyRev), getInt(meta, keyApplied)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.applied.Store(uint64(applied))
	s.rev.Store(rev)
	s.notifyWatchers()
	s.log.Info("store restored from raft snapshot", "revision", rev)
	return nil
}

// copyBuckets makes dst's top-level buckets those of src (the store's
// buckets are flat: meta, log and one per kind).
func copyBuckets(dst, src *bolt.Tx) error {
	var old [][]byte
	if err := dst.ForEach(func(name []byte, _ *bolt.Bucket) error {
		old = append(old, append([]byte(nil), name...))
		return nil
	}); err != nil {
		return err
	}
	for _, name := range old {
		if err := dst.DeleteBucket(name); err != nil {
			return err
		}
	}
	err := src.ForEach(func(name []byte, sb *bolt.Bucket) error {
		db, err := dst.CreateBucket(name)
		if err != nil {
			return err
		}
		db.FillPercent = 0.9 // written in key order
		return sb.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("bucket %q: nested bucket %q", name, k)
			}
			return db.Put(k, v)
		})
	})
	if err != nil {
		return err
	}
	for _, b := range [][]byte{bucketMeta, bucketLog} {
		if _, err := dst.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}
