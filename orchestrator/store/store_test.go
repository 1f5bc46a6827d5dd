package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

func openTest(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func node(name string) *api.Node {
	return &api.Node{Meta: api.Meta{Name: name}, Spec: api.NodeSpec{Labels: map[string]string{"n": name}}}
}

func mustUpdate(t *testing.T, s *Store, fn func(tx *Tx) error) int64 {
	t.Helper()
	rev, err := s.Update(fn)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func TestWrites(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	rev1 := mustUpdate(t, s, func(tx *Tx) error { return tx.Create(api.KindNode, node("a")) })
	if rev1 != 1 || s.Rev() != 1 {
		t.Fatalf("first write at %d (Rev %d), want 1", rev1, s.Rev())
	}
	tests := []struct {
		name    string
		fn      func(tx *Tx) error
		wantErr error
	}{
		{"create existing", func(tx *Tx) error { return tx.Create(api.KindNode, node("a")) }, ErrExists},
		{"put stale revision", func(tx *Tx) error {
			n := node("a")
			n.Revision = rev1 + 100
			return tx.Put(api.KindNode, n)
		}, ErrConflict},
		{"put with revision, absent", func(tx *Tx) error {
			n := node("zz")
			n.Revision = 1
			return tx.Put(api.KindNode, n)
		}, ErrNotFound},
		{"put current revision", func(tx *Tx) error {
			n := node("a")
			n.Revision = rev1
			return tx.Put(api.KindNode, n)
		}, nil},
		{"put unconditional", func(tx *Tx) error { return tx.Put(api.KindNode, node("b")) }, nil},
		{"delete stale", func(tx *Tx) error { return tx.Delete(api.KindNode, "b", 1) }, ErrConflict},
		{"delete absent", func(tx *Tx) error { return tx.Delete(api.KindNode, "nope", 0) }, ErrNotFound},
		{"delete unconditional", func(tx *Tx) error { return tx.Delete(api.KindNode, "b", 0) }, nil},
		{"empty name", func(tx *Tx) error { return tx.Put(api.KindNode, node("")) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Rev()
			rev, err := s.Update(tc.fn)
			if tc.name == "empty name" {
				if err == nil {
					t.Fatal("write with empty name succeeded")
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil && s.Rev() != before {
				t.Fatalf("failed write moved the revision %d -> %d", before, s.Rev())
			}
			if err == nil && rev != before+1 {
				t.Fatalf("write at %d, want %d", rev, before+1)
			}
		})
	}
	var got api.Node
	if err := s.Get(api.KindNode, "a", &got); err != nil {
		t.Fatal(err)
	}
	if got.Revision != 2 || got.Created.IsZero() || got.Spec.Labels["n"] != "a" {
		t.Fatalf("got %+v", got)
	}
	if err := s.Get(api.KindNode, "b", &got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted node: %v", err)
	}
}

func TestCreatedKept(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	n := node("a")
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(api.KindNode, n) })
	created := n.Created
	n2 := node("a")
	mustUpdate(t, s, func(tx *Tx) error { return tx.Put(api.KindNode, n2) })
	if !n2.Created.Equal(created) {
		t.Fatalf("Created changed on Put: %v -> %v", created, n2.Created)
	}
}

func TestTransactionAllOrNothing(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(api.KindNode, node("c")) })
	_, err := s.Update(func(tx *Tx) error {
		if err := tx.Create(api.KindNode, node("a")); err != nil {
			return err
		}
		if err := tx.Put(api.KindNode, node("b")); err != nil {
			return err
		}
		return tx.Create(api.KindNode, node("c")) // fails: exists
	})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("err %v, want ErrExists", err)
	}
	var nodes []api.Node
	rev, err := s.List(api.KindNode, &nodes)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Name != "c" || rev != 1 {
		t.Fatalf("after failed txn: rev %d, %d nodes", rev, len(nodes))
	}
	// One revision for every write of a transaction.
	rev = mustUpdate(t, s, func(tx *Tx) error {
		for _, n := range []string{"x", "y", "z"} {
			if err := tx.Create(api.KindNode, node(n)); err != nil {
				return err
			}
		}
		return nil
	})
	var ptrs []*api.Node
	if _, err := s.List(api.KindNode, &ptrs); err != nil {
		t.Fatal(err)
	}
	for _, n := range ptrs[1:] {
		if n.Revision != rev {
			t.Fatalf("%s at %d, want %d", n.Name, n.Revision, rev)
		}
	}
	// A read-only fn commits nothing.
	if got := mustUpdate(t, s, func(tx *Tx) error { return nil }); got != rev {
		t.Fatalf("empty update moved revision to %d", got)
	}
}

func TestList(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	mustUpdate(t, s, func(tx *Tx) error {
		for _, n := range []string{"b", "c", "a"} {
			if err := tx.Create(api.KindNode, node(n)); err != nil {
				return err
			}
		}
		return nil
	})
	var vals []api.Node
	var ptrs []*api.Node
	var none []api.App
	for _, tc := range []struct {
		name  string
		into  any
		names func() []string
	}{
		{"values", &vals, func() []string { return names(vals) }},
		{"pointers", &ptrs, func() []string {
			var v []api.Node
			for _, p := range ptrs {
				v = append(v, *p)
			}
			return names(v)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.List(api.KindNode, tc.into); err != nil {
				t.Fatal(err)
			}
			if got := tc.names(); len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
				t.Fatalf("names %v", got)
			}
		})
	}
	if _, err := s.List(api.KindApp, &none); err != nil || none == nil || len(none) != 0 {
		t.Fatalf("empty kind: %v %#v", err, none)
	}
	var bad []string
	if _, err := s.List(api.KindNode, &bad); err == nil {
		t.Fatal("list into []string succeeded")
	}
}

func names(ns []api.Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

func TestReopenKeepsRevision(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		mustUpdate(t, s, func(tx *Tx) error { return tx.Put(api.KindNode, node("a")) })
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Rev() != 3 {
		t.Fatalf("reopened at %d, want 3", s.Rev())
	}
	if rev := mustUpdate(t, s, func(tx *Tx) error { return tx.Delete(api.KindNode, "a", 3) }); rev != 4 {
		t.Fatalf("next write at %d, want 4", rev)
	}
}

func TestRecordEvent(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	for i := 0; i < 3; i++ {
		mustUpdate(t, s, func(tx *Tx) error {
			return tx.RecordEvent("pods/web-1", api.EventWarning, "BackOff", "restarting", "agent/n1")
		})
	}
	mustUpdate(t, s, func(tx *Tx) error {
		return tx.RecordEvent("pods/web-1", api.EventNormal, "Started", "started", "agent/n1")
	})
	var evs []api.Event
	if _, err := s.List(api.KindEvent, &evs); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, e := range evs {
		counts[e.Reason] = e.Count
	}
	if len(evs) != 2 || counts["BackOff"] != 3 || counts["Started"] != 1 {
		t.Fatalf("events %+v", evs)
	}
	n, err := s.PruneEvents(time.Hour)
	if err != nil || n != 0 {
		t.Fatalf("prune fresh events: %d %v", n, err)
	}
	if n, err := s.PruneEvents(-time.Second); err != nil || n != 2 {
		t.Fatalf("prune all: %d %v", n, err)
	}
}

// collect reads n events from ch or fails after a deadline.
func collect(t *testing.T, ch <-chan api.WatchEvent, n int) []api.WatchEvent {
	t.Helper()
	var out []api.WatchEvent
	deadline := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(out), n)
			}
			out = append(out, ev)
		case <-deadline:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	return out
}

// watchHistory makes a store whose revisions 1..10 put nodes a..j, 11 puts
// app web and 12 deletes node a.
func watchHistory(t *testing.T) *Store {
	s, _ := openTest(t, Options{NoSync: true, CompactAfter: 1000})
	for i := 0; i < 10; i++ {
		mustUpdate(t, s, func(tx *Tx) error { return tx.Put(api.KindNode, node(string(rune('a'+i)))) })
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.Put(api.KindApp, &api.App{Meta: api.Meta{Name: "web"}}) })
	mustUpdate(t, s, func(tx *Tx) error { return tx.Delete(api.KindNode, "a", 0) })
	return s
}

func TestWatch(t *testing.T) {

	tests := []struct {
		name  string
		kind  string
		since int64
		revs  []int64
	}{
		{"all from 0", "", 0, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{"nodes from 8", api.KindNode, 8, []int64{9, 10, 12}},
		{"apps from 0", api.KindApp, 0, []int64{11}},
		{"from head", "", 12, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := watchHistory(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := s.Watch(ctx, tc.kind, tc.since)
			if err != nil {
				t.Fatal(err)
			}
			got := collect(t, ch, len(tc.revs))
			for i, ev := range got {
				if ev.Revision != tc.revs[i] {
					t.Fatalf("event %d at %d, want %d", i, ev.Revision, tc.revs[i])
				}
			}
			if tc.since == 0 && tc.kind == "" {
				last := got[len(got)-1]
				var n api.Node
				if err := json.Unmarshal(last.Object, &n); err != nil || last.Type != api.EventDelete || n.Name != "a" {
					t.Fatalf("last event %+v (%v)", last, err)
				}
			}
			// Then live events, filtered by kind.
			rev := mustUpdate(t, s, func(tx *Tx) error {
				if err := tx.Put(api.KindApp, &api.App{Meta: api.Meta{Name: "x" + tc.name}}); err != nil {
					return err
				}
				return tx.Put(api.KindNode, node("x"+tc.name))
			})
			want := 2
			if tc.kind != "" {
				want = 1
			}
			live := collect(t, ch, want)
			for _, ev := range live {
				if ev.Revision != rev || (tc.kind != "" && ev.Kind != tc.kind) {
					t.Fatalf("live event %+v, want revision %d kind %q", ev, rev, tc.kind)
				}
			}
			cancel()
			for range ch { // closes once ctx ends
			}
		})
	}
}

func TestWatchCompacted(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, CompactAfter: 5})
	for i := 0; i < 20; i++ {
		mustUpdate(t, s, func(tx *Tx) error { return tx.Put(api.KindNode, node("a")) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.Watch(ctx, "", 3); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from 3: %v, want ErrCompacted", err)
	}
	// The last 5 events (16..20) are kept: 15 is the oldest resumable.
	ch, err := s.Watch(ctx, "", 15)
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ch, 5); got[0].Revision != 16 || got[4].Revision != 20 {
		t.Fatalf("got %d..%d", got[0].Revision, got[4].Revision)
	}
	if _, err := s.Watch(ctx, "", 14); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from 14: %v", err)
	}
}

// A watcher that stops reading is not buffered without bound: once the log
// is compacted past it, its channel closes, and a resume gets ErrCompacted.
func TestSlowWatcher(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, CompactAfter: 50})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Watch(ctx, api.KindNode, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		mustUpdate(t, s, func(tx *Tx) error { return tx.Put(api.KindNode, node("a")) })
	}
	var last int64
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case ev, ok := <-ch:
			if !ok {
				open = false
				break
			}
			if ev.Revision != last+1 {
				t.Fatalf("gap: %d after %d", ev.Revision, last)
			}
			last = ev.Revision
		case <-deadline:
			t.Fatalf("slow watcher not closed; at revision %d", last)
		}
	}
	if last == 300 {
		t.Fatal("slow watcher got every event: the test did not make it fall behind")
	}
	if _, err := s.Watch(ctx, api.KindNode, last); !errors.Is(err, ErrCompacted) {
		t.Fatalf("resume from %d: %v, want ErrCompacted", last, err)
	}
}

func TestWatchEndsOnClose(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	ch, err := s.Watch(context.Background(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch still open after Close")
	}
}

// TestWatchKindFilterIgnoresObjectText: a watch of one kind must not pass
// an event of another kind whose object happens to hold the same text as
// the event's kind field (here node labels kind=apps, object=x).
func TestWatchKindFilterIgnoresObjectText(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Watch(ctx, api.KindApp, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, func(tx *Tx) error {
		return tx.Put(api.KindNode, &api.Node{Meta: api.Meta{Name: "tricky"},
			Spec: api.NodeSpec{Labels: map[string]string{"kind": "apps", "object": "x"}}})
	})
	rev := mustUpdate(t, s, func(tx *Tx) error { return tx.Put(api.KindApp, &api.App{Meta: api.Meta{Name: "web"}}) })
	got := collect(t, ch, 1)
	if got[0].Revision != rev || got[0].Kind != api.KindApp {
		t.Fatalf("apps watch got %+v first, want the app at revision %d", got[0], rev)
	}
}

// TestPutIfChanged: the same object again writes nothing (no revision,
// no watch event, no bbolt commit: the file does not grow or change); a
// changed one, or a stale revision, behaves as Put.
func TestPutIfChanged(t *testing.T) {
	s, path := openTest(t, Options{})
	rev1 := mustUpdate(t, s, func(tx *Tx) error { return tx.Put(api.KindNode, node("a")) })
	fileBefore, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, rev := range []int64{0, rev1} {
		n := node("a")
		n.Revision = rev
		var wrote bool
		got, err := s.Update(func(tx *Tx) (err error) {
			wrote, err = tx.PutIfChanged(api.KindNode, n)
			return err
		})
		if err != nil || wrote || got != rev1 || s.Rev() != rev1 {
			t.Fatalf("same node at revision %d: wrote %v, err %v, store at %d, want %d", rev, wrote, err, s.Rev(), rev1)
		}
		if n.Revision != rev1 || n.Created.IsZero() {
			t.Fatalf("same node: answered revision %d created %v, want %d and the stored time", n.Revision, n.Created, rev1)
		}
	}
	if fileAfter, err := os.ReadFile(path); err != nil || !bytes.Equal(fileBefore, fileAfter) {
		t.Fatalf("the store file changed on an unchanged put (err %v)", err)
	}
	changed := node("a")
	changed.Spec.Labels["n"] = "b"
	var wrote bool
	if rev := mustUpdate(t, s, func(tx *Tx) (err error) {
		wrote, err = tx.PutIfChanged(api.KindNode, changed)
		return err
	}); !wrote || rev != rev1+1 {
		t.Fatalf("changed node: wrote %v at %d, want a write at %d", wrote, rev, rev1+1)
	}
	stale := node("a")
	stale.Revision = rev1
	if _, err := s.Update(func(tx *Tx) error { _, err := tx.PutIfChanged(api.KindNode, stale); return err }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale revision: %v, want ErrConflict", err)
	}
}
