package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the store file to w: a bbolt file
// that Open reads as it is and RestoreBackup installs for a new server.
// It returns the copy's revision. On a follower it is that follower's
// state (it may lag the leader by the commit latency).
func (s *Store) Backup(w io.Writer) (rev int64, err error) {
	err = s.db.View(func(btx *bolt.Tx) error {
		rev = getInt(btx.Bucket(bucketMeta), keyRev)
		_, err := btx.WriteTo(w)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("backup store: %w", err)
	}
	return rev, nil
}

// ErrHasState: RestoreBackup found a store or raft state where it was to
// write.
var ErrHasState = errors.New("already has state")

// RestoreBackup installs a backup (from Backup) as the store file at path,
// for a server that starts from it: Open serves it as it is, and
// OpenReplica with Bootstrap forms a new one-voter cluster from it (other
// servers then join that cluster afresh). It refuses (ErrHasState) when
// path exists or raftDir (the raft directory of ReplicaConfig.Dir; may be
// "") holds anything, and checks that r is a store file before writing
// path (mode 0600, fsynced).
func RestoreBackup(path, raftDir string, r io.Reader) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("restore into %s: the store file exists: %w", path, ErrHasState)
	}
	if raftDir != "" {
		if ents, err := os.ReadDir(raftDir); err == nil && len(ents) > 0 {
			return fmt.Errorf("restore: raft directory %s is not empty: %w", raftDir, ErrHasState)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".restore-*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("restore: read backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	db, err := bolt.Open(tmp.Name(), 0o600, nil)
	if err != nil {
		return fmt.Errorf("restore: the backup is not a store file: %w", err)
	}
	err = db.Update(func(btx *bolt.Tx) error {
		meta := btx.Bucket(bucketMeta)
		if meta == nil || btx.Bucket(bucketLog) == nil {
			return errors.New("the backup is not a store file: no meta or log bucket")
		}
		// The raft index of the cluster the backup came from.
		return meta.Delete(keyApplied)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}
