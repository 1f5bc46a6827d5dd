package controller

import (
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// txn is the part of *store.Tx that a reconcile uses. It is wider than the
// usual one to three methods because its one purpose is to let the same
// reconcile run either for real or as a dry run (dryTx) that only tells
// whether it would write.
type txn interface {
	Get(kind, name string, into api.Object) error
	List(kind string, into any) error
	Create(kind string, obj api.Object) error
	Put(kind string, obj api.Object) error
	Delete(kind, name string, rev int64) error
	RecordEvent(object, typ, reason, msg, source string) error
}

var (
	_ txn = (*store.Tx)(nil)
	_ txn = (*dryTx)(nil)
)

// dryTx reads through a read-only transaction and drops writes, noting
// that there were some. A pass plans in a dryTx first and opens a write
// transaction only when the plan writes, so that a converged store costs
// one read.
type dryTx struct {
	*store.Tx
	wrote bool
}

// Create notes a write.
func (d *dryTx) Create(string, api.Object) error { d.wrote = true; return nil }

// Put notes a write.
func (d *dryTx) Put(string, api.Object) error { d.wrote = true; return nil }

// Delete notes a write.
func (d *dryTx) Delete(string, string, int64) error { d.wrote = true; return nil }

// RecordEvent notes a write.
func (d *dryTx) RecordEvent(string, string, string, string, string) error {
	d.wrote = true
	return nil
}

// isDry reports whether tx is a dry run, for logging only what is done.
func isDry(tx txn) bool {
	_, ok := tx.(*dryTx)
	return ok
}

// apply runs fn as a dry run on a read-only snapshot and then, only if it
// would write, for real in a write transaction (retried on conflict). fn
// must be safe to run twice.
func (c *controller) apply(fn func(tx txn) error) error {
	d := &dryTx{}
	err := c.st.View(func(tx *store.Tx) error {
		d.Tx = tx
		return fn(d)
	})
	if err != nil || !d.wrote {
		return err
	}
	return c.update(func(tx *store.Tx) error { return fn(tx) })
}
