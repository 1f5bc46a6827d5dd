package api

import (
	"errors"
	"fmt"
	"time"

	"github.com/skiff-edge/skiff/configs"
)

// ErrNoRevision is returned by Rollback when the app's history has no
// revision to go back to.
var ErrNoRevision = errors.New("no revision to roll back to")

// Rollback sets app's pod template back to a revision of its history: the
// one whose template hash is toHash or, when toHash is empty, the newest
// one whose template differs from the spec's. Only the template changes
// (SetTemplate): replicas, mode, update and autoscale stay as they are.
//
// It marks the app's rollout as a rollback of the template it leaves
// (Status.Rollout), so that the app controller never rolls it back by
// itself, restarts included; the caller writes app, spec and status in
// one write. It is the one rollback: the API's (`skiff rollout undo`) and
// the app controller's automatic one.
//
// It returns the template hashes it went from and to. When toHash is the
// current template there is nothing to do: from == to and app is unchanged.
// With no such revision it returns ErrNoRevision and leaves app unchanged.
func Rollback(app *App, toHash string) (from, to string, err error) {
	from = TemplateHash(&app.Spec)
	h := app.Status.History
	for i := len(h) - 1; i >= 0; i-- {
		r := &h[i]
		switch {
		case toHash != "" && r.TemplateHash != toHash:
			continue
		case toHash == "" && r.TemplateHash == from:
			continue
		case r.TemplateHash == from:
			return from, from, nil
		}
		SetTemplate(&app.Spec, &r.Spec)
		// The hash of the spec as it now is, not the entry's: the app
		// controller matches the rollout against the spec.
		to = TemplateHash(&app.Spec)
		app.Status.Rollout = &RolloutStatus{TemplateHash: to, RollbackOf: from}
		return from, to, nil
	}
	if toHash != "" {
		return from, "", fmt.Errorf("template %s: %w", toHash, ErrNoRevision)
	}
	return from, "", ErrNoRevision
}

// Restart stamps app's pod template with now (Spec.RestartedAt): a new
// revision that differs from the current one by the stamp only, so that the
// app controller replaces every pod through the app's rolling update. The
// stamp always differs from the current one, even if the clock does not
// move. The caller writes app. It returns the stamp.
func Restart(app *App, now time.Time) string {
	now = now.UTC()
	stamp := now.Format(time.RFC3339Nano)
	if stamp == app.Spec.RestartedAt {
		stamp = now.Add(time.Nanosecond).Format(time.RFC3339Nano)
	}
	app.Spec.RestartedAt = stamp
	return stamp
}

// KeepRestart gives spec, about to replace old, old's restart stamp when
// spec has none. A manifest never has one: applying it again after a
// restart then neither undoes the restart (back to the template before it,
// every pod replaced again) nor starts another rollout.
func KeepRestart(spec, old *configs.AppSpec) {
	if spec.RestartedAt == "" {
		spec.RestartedAt = old.RestartedAt
	}
}
