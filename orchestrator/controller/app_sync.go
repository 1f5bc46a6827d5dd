package controller

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// appResult is what reconciling one app leaves for the controller's memory.
type appResult struct {
	created int
	// next is when the app wants a pass (its progress deadline).
	next time.Time
	// notes are warnings recorded (key → message), see controller.reported.
	notes map[string]string
}

// syncApps reconciles the named apps. It first plans every app against
// one read-only snapshot, and opens a write transaction (which reads again)
// only for the apps that have something to write: a pass over a converged
// store reads the pods once and writes nothing. It returns how many pods it
// created and the earliest time an app wants a pass.
func (c *controller) syncApps(names []string, now time.Time) (created int, next time.Time, err error) {
	results := map[string]appResult{}
	var todo []string
	var errs []error
	err = c.st.View(func(tx *store.Tx) error {
		var nodes []*api.Node
		if err := tx.List(api.KindNode, &nodes); err != nil {
			return err
		}
		var all []*api.Pod
		if err := tx.List(api.KindPod, &all); err != nil {
			return err
		}
		byApp := map[string][]*api.Pod{}
		for _, p := range all {
			byApp[p.Spec.App] = append(byApp[p.Spec.App], p)
		}
		for _, name := range names {
			d := &dryTx{Tx: tx}
			r, err := c.reconcileApp(d, name, nodes, all, byApp[name], now)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("app %s: %w", name, err))
			case d.wrote:
				todo = append(todo, name)
			default:
				results[name] = r
			}
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("read apps: %w", err)
	}
	for _, name := range todo {
		var r appResult
		err := c.update(func(tx *store.Tx) error {
			var nodes []*api.Node
			if err := tx.List(api.KindNode, &nodes); err != nil {
				return err
			}
			var all []*api.Pod
			if err := tx.List(api.KindPod, &all); err != nil {
				return err
			}
			var mine []*api.Pod
			for _, p := range all {
				if p.Spec.App == name {
					mine = append(mine, p)
				}
			}
			var err error
			r, err = c.reconcileApp(tx, name, nodes, all, mine, now)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("app %s: %w", name, err))
			continue
		}
		results[name] = r
	}
	for name, r := range results {
		c.remember(name, r)
		created += r.created
		next = earliest(next, r.next)
	}
	return created, next, errors.Join(errs...)
}

// remember keeps what a successful reconcile of app noted.
func (c *controller) remember(name string, r appResult) {
	for k := range c.reported {
		if strings.HasPrefix(k, "unfit/"+name+"/") {
			delete(c.reported, k)
		}
	}
	for k, v := range r.notes {
		c.reported[k] = v
	}
	if r.created > 0 {
		c.appLog.Debug("pods created", "app", name, "pods", r.created)
	}
}

// reconcileApp reconciles one app in tx, given the nodes and every pod as
// tx sees them (mine: the app's pods among all): it records a new template
// in the history, rolls back an update past its progress deadline when
// asked to, creates and retires pods per planApp, and writes the status. An
// app that is gone has its pods retired. Pods in all may be changed.
func (c *controller) reconcileApp(tx txn, name string, nodes []*api.Node, all, mine []*api.Pod, now time.Time) (appResult, error) {
	res := appResult{notes: map[string]string{}}
	nv := newNodeView(nodes)
	var app api.App
	if err := tx.Get(api.KindApp, name, &app); errors.Is(err, store.ErrNotFound) {
		var gone []string
		for _, p := range mine {
			if p.Spec.Deleting != nil && nv.podNodeUp(p) {
				continue
			}
			if err := retire(tx, p, nv, now); err != nil {
				return res, err
			}
			gone = append(gone, p.Name)
		}
		if len(gone) > 0 && !isDry(tx) {
			c.appLog.Info("app deleted; pods retired", "app", name, "pods", len(gone))
		}
		return res, nil
	} else if err != nil {
		return res, err
	}

	hash := api.TemplateHash(&app.Spec)
	before := app.Status
	histChanged := recordRevision(&app.Status, &app.Spec, hash, now)
	if histChanged && before.TemplateHash != "" {
		msg := fmt.Sprintf("new template %s (was %s)", hash, before.TemplateHash)
		if err := tx.RecordEvent("apps/"+name, api.EventNormal, "NewRevision", msg, sourceApps); err != nil {
			return res, err
		}
	}
	var cl *cluster // only per-node mode places pods itself
	if app.Spec.Mode == configs.ModePerNode {
		cl = newCluster(nodes, all, func(n *api.Node) bool { return nv.up[n.Name] })
	}
	plan := planApp(&app, hash, mine, nv, cl)

	// The rollout's state is the stored one, so that a restart of the
	// server changes none of what was decided about it.
	ro := rolloutOf(&app.Status, hash)
	if plan.progressing {
		// The deadline counts from the update's start or from the last
		// time one more new pod became ready, whichever is later.
		if ro.Progressed.IsZero() {
			ro.Progressed = app.Status.History[len(app.Status.History)-1].Time
		}
		if plan.readyUpdated > ro.ReadyUpdated {
			ro.Progressed = now
			ro.DeadlineExceeded = false
		}
		ro.ReadyUpdated = plan.readyUpdated
		deadline := ro.Progressed.Add(progressDeadline(&app.Spec))
		switch {
		case now.Before(deadline):
			res.next = deadline
		case autoRollback(&app, ro):
			// The previous template (the history's newest but one). The
			// rollout it marks as a rollback goes with the spec in this
			// write: the next pass, and any after a restart, knows it.
			_, to, err := api.Rollback(&app, "")
			if err != nil {
				return res, err
			}
			msg := fmt.Sprintf("template %s not ready within %s: rolled back to %s", hash, progressDeadline(&app.Spec), to)
			if err := tx.Put(api.KindApp, &app); err != nil {
				return res, err
			}
			if !isDry(tx) {
				c.appLog.Warn("update rolled back", "app", name, "from", hash, "to", to)
			}
			// The write wakes the next pass, which acts on the old template.
			return res, tx.RecordEvent("apps/"+name, api.EventWarning, "RolledBack", msg, sourceApps)
		case !ro.DeadlineExceeded:
			ro.DeadlineExceeded = true
			msg := fmt.Sprintf("template %s not ready within %s", hash, progressDeadline(&app.Spec))
			if ro.RollbackOf != "" {
				msg += fmt.Sprintf(" (a rollback from %s: not rolled back again)", ro.RollbackOf)
			}
			if !isDry(tx) {
				c.appLog.Warn("update stopped at its progress deadline", "app", name, "template", hash)
			}
			if err := tx.RecordEvent("apps/"+name, api.EventWarning, "ProgressDeadlineExceeded", msg, sourceApps); err != nil {
				return res, err
			}
		}
	} else {
		// Complete: no older pod left, no deadline to watch.
		ro = &api.RolloutStatus{TemplateHash: hash, RollbackOf: ro.RollbackOf}
	}

	var taken map[string]bool // pod names in use, built when a pod is made
	if plan.create > 0 || len(plan.createOn) > 0 {
		taken = make(map[string]bool, len(all))
		for _, p := range all {
			taken[p.Name] = true
		}
	}
	var made []string
	mk := func(node string) error {
		pn := podName(name, hash, func(s string) bool { return taken[s] })
		taken[pn] = true
		if err := tx.Create(api.KindPod, newPod(&app, hash, pn, node)); err != nil {
			return err
		}
		made = append(made, pn)
		return nil
	}
	for range plan.create {
		if err := mk(""); err != nil {
			return res, err
		}
	}
	for _, node := range plan.createOn {
		if err := mk(node); err != nil {
			return res, err
		}
	}
	res.created = len(made)
	var retired []string
	for _, p := range plan.retire {
		if err := retire(tx, p, nv, now); err != nil {
			return res, err
		}
		retired = append(retired, p.Name)
	}
	for node, why := range plan.unfit {
		key := "unfit/" + name + "/" + node
		msg := fmt.Sprintf("no pod on node %s: %s", node, why)
		res.notes[key] = msg
		if c.reported[key] != msg {
			if err := tx.RecordEvent("apps/"+name, api.EventWarning, "FailedPlacement", msg, sourceApps); err != nil {
				return res, err
			}
		}
	}
	if len(made) > 0 {
		msg := fmt.Sprintf("created %d pods: %s", len(made), someNames(made))
		if err := tx.RecordEvent("apps/"+name, api.EventNormal, "SuccessfulCreate", msg, sourceApps); err != nil {
			return res, err
		}
	}
	if len(retired) > 0 {
		msg := fmt.Sprintf("deleting %d pods: %s", len(retired), someNames(retired))
		if err := tx.RecordEvent("apps/"+name, api.EventNormal, "SuccessfulDelete", msg, sourceApps); err != nil {
			return res, err
		}
	}
	plan.status.History = app.Status.History
	plan.status.Rollout = ro
	if !histChanged && sameStatus(before, plan.status) {
		return res, nil
	}
	app.Status = plan.status
	return res, tx.Put(api.KindApp, &app)
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

// someNames lists up to 5 names for an event message.
func someNames(names []string) string {
	const most = 5
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:most], ", "), len(names)-most)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func sameStatus(a, b api.AppStatus) bool {
	return a.TemplateHash == b.TemplateHash && a.Replicas == b.Replicas &&
		a.Ready == b.Ready && a.Updated == b.Updated && sameRollout(a.Rollout, b.Rollout)
}

func sameRollout(a, b *api.RolloutStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.TemplateHash == b.TemplateHash && a.RollbackOf == b.RollbackOf &&
		a.Progressed.Equal(b.Progressed) && a.ReadyUpdated == b.ReadyUpdated &&
		a.DeadlineExceeded == b.DeadlineExceeded
}

// retire removes a pod: an unbound pod, or one on a node that is down, is
// deleted outright (no agent would act on it); one on a node that is up is
// marked Deleting, so that it leaves endpoints at once and its agent stops
// it and then deletes the object.
func retire(tx txn, p *api.Pod, nv *nodeView, now time.Time) error {
	if !nv.podNodeUp(p) {
		return tx.Delete(api.KindPod, p.Name, p.Revision)
	}
	if p.Spec.Deleting != nil {
		return nil
	}
	t := now.UTC()
	p.Spec.Deleting = &t
	return tx.Put(api.KindPod, p)
}
