package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// TestFollowJoinSecret: a join secret written to the store (as a rotation
// on another server reaches this one through raft) becomes this server's
// (its PKI and pki/join-secret, what `skiff token` prints), and the
// follower reads the store once at start and once per write of that
// record: not for writes of other kinds, not on a timer (before, it read
// the record every 2 s, which the idle span at the end catches). Takes
// about 3 s; no root needed.
func TestFollowJoinSecret(t *testing.T) {
	st := storetest.Open(t)
	srv := apiserver.New(st, apiserver.Options{Logger: slog.New(slog.DiscardHandler)})
	dir := filepath.Join(t.TempDir(), "pki")
	p, err := pki.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.EnableJoin(apiserver.JoinConfig{PKI: p, GossipKey: p.GossipKey, CertValidity: time.Hour})

	var reads atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		followJoinSecret(ctx, st, func() error { reads.Add(1); return srv.SyncJoinSecret() }, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { cancel(); <-done })

	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s (%d reads)", what, reads.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitUntil("the first read", func() bool { return reads.Load() >= 1 })
	const rotations = 3
	for i := range rotations {
		// Writes of other kinds: no read.
		for j := range 20 {
			if _, err := st.Update(func(tx *store.Tx) error {
				return tx.Put(api.KindNode, &api.Node{Meta: api.Meta{Name: fmt.Sprintf("n%d-%d", i, j)}})
			}); err != nil {
				t.Fatal(err)
			}
		}
		secret := pki.NewJoinSecret()
		if _, err := st.Update(func(tx *store.Tx) error {
			return tx.Put(api.KindJoinSecret, &api.JoinSecret{Meta: api.Meta{Name: api.JoinSecretName}, Spec: api.JoinSecretSpec{Secret: secret}})
		}); err != nil {
			t.Fatal(err)
		}
		waitUntil(fmt.Sprintf("rotation %d followed", i+1), func() bool {
			b, err := os.ReadFile(filepath.Join(dir, pki.SecretFile))
			return err == nil && strings.TrimSpace(string(b)) == secret && p.JoinSecret() == secret
		})
		// The read that followed this rotation is the only one since
		// the last: one at start and one per rotation so far.
		if got, want := reads.Load(), int64(i+2); got != want {
			t.Fatalf("after rotation %d: %d reads of the store, want %d (one at start, one per write of the record)", i+1, got, want)
		}
	}
	// Idle: no read at all. (A span, not a wait for a condition: a
	// follower on a timer reads within it; this one never does, however
	// loaded the machine.)
	time.Sleep(idleSpan)
	if got, want := reads.Load(), int64(rotations+1); got != want {
		t.Fatalf("idle for %s: %d reads of the store, want %d", idleSpan, got, want)
	}
}

// idleSpan is longer than the 2 s period of the follower that read the
// record on a timer.
const idleSpan = 2500 * time.Millisecond
