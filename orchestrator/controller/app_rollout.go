package controller

import (
	"fmt"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// advanceRollout carries app's rollout of template hash on by plan. The
// rollout's state is the stored one (app.Status.Rollout), so that a
// restart of the server changes none of what was decided about it. While
// an update is under way it decides whether the update still has time
// (next is its progress deadline), goes back to the previous template
// (rolledBack: app's spec is written and the pass over app ends), or has
// stopped at its deadline (a warning, once). It returns the rollout for the
// app's status.
func (c *controller) advanceRollout(tx txn, app *api.App, hash string, plan *appPlan, now time.Time) (ro *api.RolloutStatus, next time.Time, rolledBack bool, err error) {
	ro = rolloutOf(&app.Status, hash)
	if !plan.progressing {
		// Complete: no older pod left, no deadline to watch.
		return &api.RolloutStatus{TemplateHash: hash, RollbackOf: ro.RollbackOf}, time.Time{}, false, nil
	}
	// The deadline counts from the update's start or from the last time
	// one more new pod became ready, whichever is later.
	if ro.Progressed.IsZero() {
		ro.Progressed = app.Status.History[len(app.Status.History)-1].Time
		// An update that waited for its pre-pull started when that ended.
		if pp := app.Status.Prepull; pp != nil && pp.TemplateHash == hash && pp.Done.After(ro.Progressed) {
			ro.Progressed = pp.Done
		}
	}
	if plan.readyUpdated > ro.ReadyUpdated {
		ro.Progressed = now
		ro.DeadlineExceeded = false
	}
	ro.ReadyUpdated = plan.readyUpdated
	deadline := ro.Progressed.Add(progressDeadline(&app.Spec))
	switch {
	case now.Before(deadline):
		return ro, deadline, false, nil
	case autoRollback(app, ro):
		return ro, time.Time{}, true, c.rollBack(tx, app, hash)
	case !ro.DeadlineExceeded:
		ro.DeadlineExceeded = true
		return ro, time.Time{}, false, c.reportDeadlineExceeded(tx, app, hash, ro)
	}
	return ro, time.Time{}, false, nil
}

// rollBack puts app back on its previous template (the history's newest
// but one), whose pods a later pass brings back. The rollout it marks as a
// rollback goes with the spec in this write: the next pass, and any after
// a restart, knows it.
func (c *controller) rollBack(tx txn, app *api.App, hash string) error {
	_, to, err := api.Rollback(app, "")
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("template %s not ready within %s: rolled back to %s", hash, progressDeadline(&app.Spec), to)
	if err := tx.Put(api.KindApp, app); err != nil {
		return err
	}
	if !isDry(tx) {
		c.appLog.Warn("update rolled back", "app", app.Name, "from", hash, "to", to)
	}
	return tx.RecordEvent("apps/"+app.Name, api.EventWarning, "RolledBack", msg, sourceApps)
}

// reportDeadlineExceeded records that the update of app to template hash
// (rollout ro) stopped at its progress deadline and is not rolled back.
func (c *controller) reportDeadlineExceeded(tx txn, app *api.App, hash string, ro *api.RolloutStatus) error {
	msg := fmt.Sprintf("template %s not ready within %s", hash, progressDeadline(&app.Spec))
	if ro.RollbackOf != "" {
		msg += fmt.Sprintf(" (a rollback from %s: not rolled back again)", ro.RollbackOf)
	}
	if !isDry(tx) {
		c.appLog.Warn("update stopped at its progress deadline", "app", app.Name, "template", hash)
	}
	return tx.RecordEvent("apps/"+app.Name, api.EventWarning, "ProgressDeadlineExceeded", msg, sourceApps)
}

// rolloutOf returns a copy of st's rollout if it is of template hash, and
// a new rollout of hash otherwise (the template changed since).
func rolloutOf(st *api.AppStatus, hash string) *api.RolloutStatus {
	if r := st.Rollout; r != nil && r.TemplateHash == hash {
		c := *r
		return &c
	}
	return &api.RolloutStatus{TemplateHash: hash}
}

// autoRollback reports whether an app whose rollout ro missed its deadline
// goes back to its previous template: when it asks to and has one, and the
// rollout is not itself a rollback. A rollback that cannot progress either
// stays where it is, so that two bad templates never alternate; this holds
// across restarts, as ro is read from the store.
func autoRollback(app *api.App, ro *api.RolloutStatus) bool {
	if app.Spec.Update == nil || !app.Spec.Update.AutoRollback || len(app.Status.History) < 2 {
		return false
	}
	return ro.RollbackOf == ""
}

func sameRollout(a, b *api.RolloutStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.TemplateHash == b.TemplateHash && a.RollbackOf == b.RollbackOf &&
		a.Progressed.Equal(b.Progressed) && a.ReadyUpdated == b.ReadyUpdated &&
		a.DeadlineExceeded == b.DeadlineExceeded
}
