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
	// pulls are pre-pulls to start, took the ended ones this pass read
	// (app_prepull.go).
	pulls []pullJob
	took  []pullKey
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
		byApp := podsByApp(all)
		for _, name := range names {
			r, wrote, err := c.dryRunApp(tx, name, nodes, all, byApp[name], now)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("app %s: %w", name, err))
			case wrote:
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

// podsByApp groups pods by the app they belong to, keeping their order.
func podsByApp(pods []*api.Pod) map[string][]*api.Pod {
	byApp := map[string][]*api.Pod{}
	for _, p := range pods {
		byApp[p.Spec.App] = append(byApp[p.Spec.App], p)
	}
	return byApp
}

// dryRunApp reconciles app name as a dry run on the snapshot tx and
// reports whether the reconcile would write.
func (c *controller) dryRunApp(tx *store.Tx, name string, nodes []*api.Node, all, mine []*api.Pod, now time.Time) (appResult, bool, error) {
	d := &dryTx{Tx: tx}
	r, err := c.reconcileApp(d, name, nodes, all, mine, now)
	return r, d.wrote, err
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
	if c.pulls != nil {
		c.pulls.take(r.took)
		c.pulls.start(r.pulls)
	}
}

// reconcileApp reconciles one app in tx, given the nodes and every pod as
// tx sees them (mine: the app's pods among all). Like a kube controller's
// sync, it plans first (planApp, then the rollout's deadline) and then
// applies the plan: it records a new template in the history, rolls back
// an update past its progress deadline when asked to, creates and retires
// pods per the plan, and writes the status. An app that is gone has its
// pods retired. Pods in all may be changed.
func (c *controller) reconcileApp(tx txn, name string, nodes []*api.Node, all, mine []*api.Pod, now time.Time) (appResult, error) {
	res := appResult{notes: map[string]string{}}
	nv := newNodeView(nodes)
	var app api.App
	if err := tx.Get(api.KindApp, name, &app); errors.Is(err, store.ErrNotFound) {
		return res, c.retireDeletedApp(tx, name, mine, nv, now)
	} else if err != nil {
		return res, err
	}

	hash := api.TemplateHash(&app.Spec)
	before := app.Status
	was := app.Status.TemplateHash
	histChanged, err := recordTemplate(tx, &app, hash, now)
	if err != nil {
		return res, err
	}
	// While a pre-pull of hash's images holds the update back, the pass
	// plans with the template the app keeps (planned, planHash).
	planned, planHash, err := c.prepullStep(tx, &app, hash, histChanged && was != "", mine, nv, now, &res)
	if err != nil {
		return res, err
	}
	var cl *cluster // only per-node mode places pods itself
	if app.Spec.Mode == configs.ModePerNode {
		cl = newCluster(nodes, all, func(n *api.Node) bool { return nv.up[n.Name] })
	}
	plan := planApp(planned, planHash, mine, nv, cl)
	var ro *api.RolloutStatus
	if planHash != hash {
		// Held: the update has not started; its deadline does not run.
		plan.status.TemplateHash, plan.status.Updated = hash, 0
		ro = rolloutOf(&app.Status, hash)
	} else {
		var next time.Time
		var rolledBack bool
		ro, next, rolledBack, err = c.advanceRollout(tx, &app, hash, &plan, now)
		if err != nil || rolledBack {
			// A rollback wakes the next pass, which acts on the old template.
			return res, err
		}
		res.next = earliest(res.next, next)
	}

	made, err := createPods(tx, planned, planHash, &plan, all)
	if err != nil {
		return res, err
	}
	res.created = len(made)
	retired, err := retireAll(tx, plan.retire, nv, now)
	if err != nil {
		return res, err
	}
	if err := c.reportUnfit(tx, name, plan.unfit, res.notes); err != nil {
		return res, err
	}
	if err := recordPodChanges(tx, name, made, retired); err != nil {
		return res, err
	}
	plan.status.History = app.Status.History
	plan.status.Rollout = ro
	plan.status.Autoscale = app.Status.Autoscale // the autoscaler's (autoscale.go)
	plan.status.Prepull = app.Status.Prepull     // prepullStep's
	if !histChanged && sameStatus(before, plan.status) {
		return res, nil
	}
	app.Status = plan.status
	return res, tx.Put(api.KindApp, &app)
}

// retireDeletedApp retires the pods of app name, which is gone. A pod
// already marked Deleting on a node that is up is left to its agent.
func (c *controller) retireDeletedApp(tx txn, name string, mine []*api.Pod, nv *nodeView, now time.Time) error {
	var doomed []*api.Pod
	for _, p := range mine {
		if p.Spec.Deleting != nil && nv.podNodeUp(p) {
			continue
		}
		doomed = append(doomed, p)
	}
	gone, err := retireAll(tx, doomed, nv, now)
	if err != nil {
		return err
	}
	if len(gone) > 0 && !isDry(tx) {
		c.appLog.Info("app deleted; pods retired", "app", name, "pods", len(gone))
	}
	return nil
}

// recordTemplate notes app's current template hash in its history (see
// recordRevision) and, when it replaces an earlier template, records a
// NewRevision event. It reports whether the history changed.
func recordTemplate(tx txn, app *api.App, hash string, now time.Time) (bool, error) {
	was := app.Status.TemplateHash
	if !recordRevision(&app.Status, &app.Spec, hash, now) {
		return false, nil
	}
	if was == "" {
		return true, nil
	}
	msg := fmt.Sprintf("new template %s (was %s)", hash, was)
	return true, tx.RecordEvent("apps/"+app.Name, api.EventNormal, "NewRevision", msg, sourceApps)
}

// createPods creates the pods plan asks for: plan.create unbound ones
// first, then one bound to each node of plan.createOn, each named apart
// from every pod in all. It returns the names of those it created.
func createPods(tx txn, app *api.App, hash string, plan *appPlan, all []*api.Pod) ([]string, error) {
	if plan.create == 0 && len(plan.createOn) == 0 {
		return nil, nil
	}
	taken := make(map[string]bool, len(all)) // pod names in use
	for _, p := range all {
		taken[p.Name] = true
	}
	// An empty node is an unbound pod, left to the scheduler.
	on := append(make([]string, plan.create, plan.create+len(plan.createOn)), plan.createOn...)
	var made []string
	for _, node := range on {
		pn := podName(app.Name, hash, func(s string) bool { return taken[s] })
		taken[pn] = true
		if err := tx.Create(api.KindPod, newPod(app, hash, pn, node)); err != nil {
			return made, err
		}
		made = append(made, pn)
	}
	return made, nil
}

// retireAll retires each of ps in order (see retire) and returns their
// names.
func retireAll(tx txn, ps []*api.Pod, nv *nodeView, now time.Time) ([]string, error) {
	var retired []string
	for _, p := range ps {
		if err := retire(tx, p, nv, now); err != nil {
			return retired, err
		}
		retired = append(retired, p.Name)
	}
	return retired, nil
}

// reportUnfit notes in notes, per node, why the per-node pod of app name
// could not be placed there, and records a FailedPlacement event for each
// reason not already reported.
func (c *controller) reportUnfit(tx txn, name string, unfit, notes map[string]string) error {
	for node, why := range unfit {
		key := "unfit/" + name + "/" + node
		msg := fmt.Sprintf("no pod on node %s: %s", node, why)
		notes[key] = msg
		if c.reported[key] != msg {
			if err := tx.RecordEvent("apps/"+name, api.EventWarning, "FailedPlacement", msg, sourceApps); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordPodChanges records the events of a pass that created the pods made
// and retired the pods retired of app name.
func recordPodChanges(tx txn, name string, made, retired []string) error {
	if len(made) > 0 {
		msg := fmt.Sprintf("created %d pods: %s", len(made), someNames(made))
		if err := tx.RecordEvent("apps/"+name, api.EventNormal, "SuccessfulCreate", msg, sourceApps); err != nil {
			return err
		}
	}
	if len(retired) > 0 {
		msg := fmt.Sprintf("deleting %d pods: %s", len(retired), someNames(retired))
		return tx.RecordEvent("apps/"+name, api.EventNormal, "SuccessfulDelete", msg, sourceApps)
	}
	return nil
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
		a.Ready == b.Ready && a.Updated == b.Updated && sameRollout(a.Rollout, b.Rollout) &&
		samePrepull(a.Prepull, b.Prepull)
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
