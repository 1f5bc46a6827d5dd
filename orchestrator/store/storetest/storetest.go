// Package storetest opens throwaway stores for tests of the packages above
// the store.
package storetest

import (
	"path/filepath"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Open opens a store in a fresh state.db under tb's temp dir, without
// fsync (a test's store need not survive a crash of the machine), and
// closes it when tb ends: after the clean-ups registered later, so those
// may still use it.
func Open(tb testing.TB) *store.Store {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "state.db"), store.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}
