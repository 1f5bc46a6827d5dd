package images

// The image store is shared by every process that opens it on one Root: a
// node's agent, `skiff images` beside it, a second store in the same
// process. Three kinds of lock keep them apart, all flock(2) locks (which
// belong to an open file, so they also serialise goroutines that open the
// file separately, and the kernel drops them when a process dies):
//
//   - content/images.lock, held around every read-modify-write of the index
//     (store, Remove, ImportDir's record) and around GC's choice of what to
//     delete, so that no write is lost and GC never acts on a stale index;
//   - content/locks/<diff id>.lock, held while one layer is unpacked, so
//     that a layer is downloaded and unpacked once and the others find it;
//   - content/pending/*.json, one per image being stored, listing its
//     layers and held locked by its process until the image is in the
//     index: GC spares those layers (they are unpacked but not yet listed).
//     A marker is made under the index lock, so GC (under the same lock)
//     either sees it or finishes its deletions before the store looks for
//     its layers. A marker whose lock is free belongs to a dead process.
//
// A layer directory only ever appears under its final name by a rename of
// a whole, verified unpack, and GC renames a layer away before deleting
// it: a layer directory that exists is complete.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	indexLockFile = "images.lock" // in Root/content
	layerLocksDir = "locks"       // in Root/content
	pendingDir    = "pending"     // in Root/content
	trashPrefix   = ".gc-"        // a layer GC renamed away, being deleted
	tmpPrefix     = ".tmp-"       // a layer being unpacked: .tmp-<hex>-<random>
)

// flock takes how (LOCK_EX or LOCK_SH) on f, waiting for it.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// flockCtx takes how on f, polling so that ctx can end the wait.
func flockCtx(ctx context.Context, f *os.File, how int) error {
	delay := 2 * time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// lockIndex serialises read-modify-writes of the index: s.mu between
// goroutines of this store, the flock between stores and processes. The
// returned function releases both.
func (s *Store) lockIndex() (func(), error) {
	s.mu.Lock()
	f, err := os.OpenFile(filepath.Join(s.root, "content", indexLockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		if err = flock(f, unix.LOCK_EX); err != nil {
			f.Close()
		}
	}
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("lock image index: %w", err)
	}
	return func() {
		f.Close() // drops the flock
		s.mu.Unlock()
	}, nil
}

func (s *Store) layerLockPath(diffID string) string {
	return filepath.Join(s.root, "content", layerLocksDir, strings.TrimPrefix(diffID, "sha256:")+".lock")
}

// lockLayer holds the unpack lock of one layer until the returned function
// is called. The caller must hold a pending marker that lists the layer:
// GC deletes the lock files of the layers it collects, and the marker keeps
// it from deleting one that somebody has open.
func (s *Store) lockLayer(ctx context.Context, diffID string) (func(), error) {
	f, err := os.OpenFile(s.layerLockPath(diffID), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock layer: %w", err)
	}
	if err := flockCtx(ctx, f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock layer: %w", err)
	}
	return func() { f.Close() }, nil
}

// pendingMarker is the content of a pending marker file.
type pendingMarker struct {
	PID    int      `json:"pid"`
	Layers []string `json:"layers"` // diff IDs
}

// markPending records that this store is about to unpack or reuse layers
// and then index an image that uses them, so that GC spares them until the
// returned function is called (after the index is written, or on failure).
func (s *Store) markPending(diffIDs []string) (func(), error) {
	unlock, err := s.lockIndex()
	if err != nil {
		return nil, err
	}
	defer unlock()
	f, err := os.CreateTemp(filepath.Join(s.root, "content", pendingDir), "store-*.json")
	if err != nil {
		return nil, fmt.Errorf("pending marker: %w", err)
	}
	// A fresh file: nobody else holds its lock, and GC cannot look at it
	// before we release the index lock.
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		err = json.NewEncoder(f).Encode(pendingMarker{PID: os.Getpid(), Layers: diffIDs})
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("pending marker: %w", err)
	}
	return func() {
		os.Remove(f.Name())
		f.Close()
	}, nil
}

// pendingLayers returns the layers (hex diff IDs) listed by live pending
// markers, and removes the markers of dead processes. The index lock is
// held.
func (s *Store) pendingLayers() (map[string]bool, error) {
	dir := filepath.Join(s.root, "content", pendingDir)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pending markers: %w", err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("pending marker: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		if err == nil {
			// Nobody holds it: its process died before releasing it.
			os.Remove(p)
			f.Close()
			continue
		}
		var m pendingMarker
		if !errors.Is(err, unix.EWOULDBLOCK) {
			err = fmt.Errorf("pending marker %s: %w", e.Name(), err)
		} else if err = json.NewDecoder(f).Decode(&m); err != nil {
			err = fmt.Errorf("pending marker %s: %w", e.Name(), err)
		}
		f.Close()
		if err != nil {
			return nil, err // when in doubt, collect nothing
		}
		for _, l := range m.Layers {
			out[strings.TrimPrefix(l, "sha256:")] = true
		}
	}
	return out, nil
}

// isLayerName reports whether a name in Root/layers is an unpacked layer
// (a hex diff ID), not a temporary or the runtime's "empty" lower dir.
func isLayerName(n string) bool {
	if len(n) != 64 {
		return false
	}
	_, err := hex.DecodeString(n)
	return err == nil
}

// GC removes unpacked layers that no image, no container and no store
// that is storing an image uses, and returns their diff IDs. It spares
// layers unpacked less than Config.LayerGCGrace ago. It is safe next to
// pulls and imports in this and other processes: they never lose a layer
// they rely on.
func (s *Store) GC() ([]string, error) {
	layersDir := filepath.Join(s.root, "layers")
	trash, removed, err := s.gcMark(layersDir)
	// Deleting can take a while; the doomed directories have left their
	// names, so nobody can find them any more and we need no lock.
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, d := range trash {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("gc: %w", err))
		}
	}
	return removed, errors.Join(errs...)
}

// gcMark chooses, under the index lock, what GC deletes and renames it
// away; it returns the paths to delete and the diff IDs of the layers.
func (s *Store) gcMark(layersDir string) (trash, removed []string, err error) {
	unlock, err := s.lockIndex()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	imgs, err := s.load()
	if err != nil {
		return nil, nil, err
	}
	keep := map[string]bool{}
	if s.inUse != nil {
		if keep, err = s.inUse(); err != nil {
			return nil, nil, fmt.Errorf("gc: containers' layers: %w", err)
		}
	}
	for _, img := range imgs {
		for _, l := range img.Layers {
			keep[strings.TrimPrefix(l, "sha256:")] = true
		}
	}
	pending, err := s.pendingLayers()
	if err != nil {
		return nil, nil, fmt.Errorf("gc: %w", err)
	}
	ents, err := os.ReadDir(layersDir)
	if err != nil {
		return nil, nil, fmt.Errorf("gc layers: %w", err)
	}
	now := time.Now()
	for _, e := range ents {
		n := e.Name()
		var doomed bool
		switch {
		case strings.HasPrefix(n, trashPrefix):
			trash = append(trash, filepath.Join(layersDir, n)) // left by a GC that died
			continue
		case strings.HasPrefix(n, tmpPrefix):
			// An unpack runs only under a live pending marker; without
			// one, it is what a dead process left. Legacy names without
			// the diff ID go by age.
			rest := strings.TrimPrefix(n, tmpPrefix)
			if len(rest) > 65 && isLayerName(rest[:64]) {
				doomed = !pending[rest[:64]]
			} else if fi, err := e.Info(); err == nil {
				doomed = now.Sub(fi.ModTime()) > time.Hour
			}
		case isLayerName(n):
			if keep[n] || pending[n] {
				continue
			}
			if fi, err := e.Info(); err != nil || now.Sub(fi.ModTime()) < s.gcGrace {
				continue
			}
			doomed = true
			removed = append(removed, "sha256:"+n)
			// Nobody has it open: only holders of a pending marker
			// listing the layer open its lock file.
			_ = os.Remove(s.layerLockPath(n))
		}
		if !doomed {
			continue
		}
		t := filepath.Join(layersDir, trashPrefix+n+"-"+randHex())
		if err := os.Rename(filepath.Join(layersDir, n), t); err != nil {
			return trash, removed, fmt.Errorf("gc layer %s: %w", n, err)
		}
		trash = append(trash, t)
	}
	return trash, removed, nil
}

func randHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
