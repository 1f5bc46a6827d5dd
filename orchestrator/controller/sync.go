package controller

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Event sources, one per controller.
const (
	sourceScheduler = "scheduler"
	sourceApps      = "app-controller"
	sourceNodes     = "node-controller"
)

// controller holds the state of the controllers between passes. Everything
// but queue is touched only by the loop goroutine.
type controller struct {
	st    *store.Store
	cfg   Config
	log   *slog.Logger
	queue *queue

	schedLog, appLog, nodeLog, epLog *slog.Logger

	// started is when the controller started, by its clock.
	started time.Time
	// heartbeats is when each node's heartbeat was last seen to change.
	heartbeats heartbeats
	// downSeen is when a node without a time of its own (no Ready
	// condition) was first seen down.
	downSeen map[string]time.Time
	// unsched is the last FailedScheduling message per pending pod, so that
	// a pod that stays unschedulable gets one event per distinct reason.
	unsched map[string]string
	// reported holds other warnings already recorded (key → message), for
	// the same reason. What the app controller decides about a rollout is
	// not kept here but in the app's status (api.RolloutStatus), so that a
	// restart changes none of it.
	reported map[string]string
	// pulls runs the pre-pulls (nil without Config.Images).
	pulls *prepuller
}

func newController(st *store.Store, cfg Config) *controller {
	log := cfg.Logger.With("component", "controller")
	c := &controller{
		st:         st,
		cfg:        cfg,
		log:        log,
		queue:      newQueue(),
		schedLog:   cfg.Logger.With("component", "scheduler"),
		appLog:     cfg.Logger.With("component", "app-controller"),
		nodeLog:    cfg.Logger.With("component", "node-controller"),
		epLog:      cfg.Logger.With("component", "endpoints-controller"),
		started:    cfg.Now(),
		heartbeats: heartbeats{},
		downSeen:   map[string]time.Time{},
		unsched:    map[string]string{},
		reported:   map[string]string{},
	}
	if cfg.Images != nil {
		c.pulls = newPrepuller(cfg.Images, c.queue.markApp)
	}
	return c
}

// earliest returns the earlier of two times, ignoring zero ones.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// sync makes one pass over w: node lifecycle, apps, scheduling, endpoints,
// in that order so that a pass converges (pods of a lost node are deleted,
// replaced, bound, and dropped from endpoints in one go). It returns the
// next time a pass is due without any change (a grace or deadline ends).
//
// The pass first plans everything as a dry run against one read-only
// snapshot (planPass). When nothing is to be written, as on most resyncs,
// that is all it costs; otherwise each step runs for real in order
// (applyPass), each reading fresh state in its own write transaction.
func (c *controller) sync(w work) (time.Time, error) {
	now := c.cfg.Now()
	// The pass has its own copy of the names, which it adds to: w goes
	// back to the queue as it came if the pass fails.
	pass := work{all: w.all, schedule: w.schedule || w.all, apps: map[string]bool{}, services: map[string]bool{}}
	for a := range w.apps {
		pass.apps[a] = true
	}
	for s := range w.services {
		pass.services[s] = true
	}
	pp, err := c.planPass(pass, now)
	if err != nil {
		return time.Time{}, fmt.Errorf("plan: %w", err)
	}
	if !pp.clean {
		return c.applyPass(pass, pp, now)
	}
	next := pp.next
	for name, r := range pp.results {
		c.remember(name, r)
		next = earliest(next, r.next)
	}
	if pass.schedule {
		c.noteUnschedulable(pp.unsched)
	}
	return next, errors.Join(pp.errs...)
}

// passPlan is what the dry run of a pass found.
type passPlan struct {
	// next is when a grace or heartbeat deadline ends next.
	next time.Time
	// nodes is node lifecycle's plan.
	nodes nodePlan
	// clean: no step has anything to write, and the fields below hold
	// what the pass leaves for the controller's memory.
	clean bool
	// results are the apps' results, unsched the pending pods' reasons.
	results map[string]appResult
	unsched map[string]string
	// errs are the apps that failed to plan.
	errs []error
}

// planPass runs a pass as a dry run against one read-only snapshot. It
// adds to pass's apps and services what the pass looks at (names), plans
// node lifecycle, and then dry-runs each app, the scheduler and the
// endpoints in turn; it stops at the first step that would write, leaving
// the plan not clean.
func (c *controller) planPass(pass work, now time.Time) (passPlan, error) {
	var pp passPlan
	err := c.st.View(func(tx *store.Tx) error {
		var nodes []*api.Node
		if err := tx.List(api.KindNode, &nodes); err != nil {
			return fmt.Errorf("list nodes: %w", err)
		}
		var pods []*api.Pod
		if err := tx.List(api.KindPod, &pods); err != nil {
			return fmt.Errorf("list pods: %w", err)
		}
		if err := c.names(tx, pass.all, pass.apps, pass.services, pods); err != nil {
			return err
		}
		pp.next, pp.nodes = c.planNodes(nodes, pods, now)
		if pp.nodes.writes() {
			return nil
		}
		byApp := podsByApp(pods)
		pp.results = map[string]appResult{}
		for _, name := range sortedKeys(pass.apps) {
			r, wrote, err := c.dryRunApp(tx, name, nodes, pods, byApp[name], now)
			if err != nil {
				pp.errs = append(pp.errs, fmt.Errorf("app %s: %w", name, err))
				continue
			}
			if wrote {
				return nil
			}
			pp.results[name] = r
		}
		if pass.schedule {
			d := &dryTx{Tx: tx}
			u, _, err := c.scheduleIn(d, nodes, pods, now)
			if err != nil || d.wrote {
				return err
			}
			pp.unsched = u
		}
		if len(pass.services) > 0 {
			d := &dryTx{Tx: tx}
			if err := c.endpointsIn(d, pass.services, nodes, pods, now); err != nil || d.wrote {
				return err
			}
		}
		pp.clean = true
		return nil
	})
	return pp, err
}

// applyPass runs the steps of a pass that has something to write, for
// real and in order, each reading fresh state: node lifecycle, whose
// failure ends the pass; then apps, scheduling (also when the apps created
// pods) and endpoints, whose errors are joined. It returns when a pass is
// due next.
func (c *controller) applyPass(pass work, pp passPlan, now time.Time) (time.Time, error) {
	next := pp.next
	if pp.nodes.writes() {
		if err := c.applyNodes(pp.nodes, now); err != nil {
			return time.Time{}, err
		}
	}
	var errs []error
	schedule := pass.schedule
	if len(pass.apps) > 0 {
		created, t, err := c.syncApps(sortedKeys(pass.apps), now)
		if err != nil {
			errs = append(errs, err)
		}
		schedule = schedule || created > 0
		next = earliest(next, t)
	}
	if schedule {
		if err := c.schedulePending(now); err != nil {
			errs = append(errs, fmt.Errorf("schedule: %w", err))
		}
	}
	if len(pass.services) > 0 {
		if err := c.syncEndpoints(pass.services, now); err != nil {
			errs = append(errs, fmt.Errorf("endpoints: %w", err))
		}
	}
	return next, errors.Join(errs...)
}

// names adds to apps and services what a pass looks at beyond the queued
// names: with all, every app (and every app that pods name, so that orphans
// are cleaned up) and every service and endpoints object; always, the
// services of the apps.
func (c *controller) names(tx *store.Tx, all bool, apps, services map[string]bool, pods []*api.Pod) error {
	if all {
		var as []*api.App
		if err := tx.List(api.KindApp, &as); err != nil {
			return fmt.Errorf("list apps: %w", err)
		}
		for _, a := range as {
			apps[a.Name] = true
		}
		for _, p := range pods {
			apps[p.Spec.App] = true
		}
		var es []*api.Endpoints
		if err := tx.List(api.KindEndpoints, &es); err != nil {
			return fmt.Errorf("list endpoints: %w", err)
		}
		for _, e := range es {
			services[e.Name] = true
		}
	}
	if !all && len(apps) == 0 {
		return nil
	}
	var ss []*api.Service
	if err := tx.List(api.KindService, &ss); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, s := range ss {
		if all || apps[s.Spec.App] {
			services[s.Name] = true
		}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
