package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// watchBatch is how many log entries a watcher reads per read transaction;
// it keeps read transactions short so that they never hold up the file's
// growth.
const watchBatch = 256

// watcher is one Watch: it reads the event log from its last delivered
// revision whenever an Update signals a new one.
type watcher struct {
	notify chan struct{} // capacity 1: "the log has grown"
}

// Watch delivers every event of kind (all kinds if kind is "") with a
// revision greater than since, in revision order, first from the event log
// and then live as Updates commit.
//
// It returns ErrCompacted if events after since have already been dropped
// from the log: the caller lists again and watches from the list's revision.
//
// The channel closes when ctx ends, when the store is closed, or when the
// watcher fell so far behind that the log was compacted past the last event
// it received (a slow reader is never buffered without bound: it reads the
// log at its own pace). After a close the caller may Watch again from the
// last revision it saw and gets either the rest or ErrCompacted.
func (s *Store) Watch(ctx context.Context, kind string, since int64) (<-chan api.WatchEvent, error) {
	w := &watcher{notify: make(chan struct{}, 1)}
	// Register before the first read so that no commit in between is missed.
	s.watchMu.Lock()
	s.watchers[w] = struct{}{}
	s.watchMu.Unlock()
	events, scanned, more, compacted, err := s.readLog(kind, since)
	if err == nil && since < compacted {
		err = fmt.Errorf("watch from revision %d, log starts after %d: %w", since, compacted, ErrCompacted)
	}
	if err != nil {
		s.removeWatcher(w)
		return nil, err
	}
	out := make(chan api.WatchEvent, 64)
	go s.runWatcher(ctx, w, kind, scanned, more, events, out)
	return out, nil
}

func (s *Store) removeWatcher(w *watcher) {
	s.watchMu.Lock()
	delete(s.watchers, w)
	s.watchMu.Unlock()
}

func (s *Store) notifyWatchers() {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watchers {
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
}

// Watchers returns the number of open watches (for metrics).
func (s *Store) Watchers() int {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	return len(s.watchers)
}

// runWatcher sends pending, then reads the log on from revision last
// (everything up to it has been scanned) whenever it grows.
func (s *Store) runWatcher(ctx context.Context, w *watcher, kind string, last int64, more bool, pending []api.WatchEvent, out chan<- api.WatchEvent) {
	defer close(out)
	defer s.removeWatcher(w)
	for {
		for _, ev := range pending {
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
		// With more, the log holds further events already: read on
		// without waiting for a signal.
		if !more {
			select {
			case <-w.notify:
			case <-ctx.Done():
				return
			}
		}
		var compacted int64
		var err error
		from := last
		pending, last, more, compacted, err = s.readLog(kind, from)
		if err != nil {
			s.log.Debug("watch ends", "kind", kind, "revision", last, "err", err)
			return
		}
		if from < compacted {
			s.log.Debug("watcher fell behind compaction", "kind", kind, "revision", from, "compacted", compacted)
			return
		}
	}
}

// readLog reads the events of kind after revision since, up to about
// watchBatch log entries and always whole revisions, so that the next read
// can start after scanned, the last revision it looked at (since if none).
// more reports that the log holds entries after scanned.
func (s *Store) readLog(kind string, since int64) (events []api.WatchEvent, scanned int64, more bool, compacted int64, err error) {
	scanned = since
	err = s.db.View(func(btx *bolt.Tx) error {
		compacted = getInt(btx.Bucket(bucketMeta), keyCompacted)
		c := btx.Bucket(bucketLog).Cursor()
		n := 0
		for k, v := c.Seek(logKey(since+1, 0)); k != nil; k, v = c.Next() {
			rev := int64(binary.BigEndian.Uint64(k[:8]))
			if rev > scanned && n >= watchBatch {
				more = true
				break
			}
			scanned = rev
			n++
			if kind != "" && !kindIs(v, kind) {
				continue
			}
			var ev api.WatchEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("decode event %d: %w", rev, err)
			}
			events = append(events, ev)
		}
		return nil
	})
	return events, scanned, more, compacted, err
}

// kindIs tells an event's kind without decoding the object: the store
// writes "type", "revision" and "kind" before "object", so the first
// "kind" key in v is the event's own. (Searching anywhere in v would also
// match an object that carries the same text, e.g. labels
// {"kind":"pods","object":"x"} on an app.)
func kindIs(v []byte, kind string) bool {
	i := bytes.Index(v, []byte(`"kind":"`))
	return i >= 0 && bytes.HasPrefix(v[i:], []byte(`"kind":"`+kind+`","object"`))
}
