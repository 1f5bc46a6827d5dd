package controller

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
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

	// downSeen is when a node without a time of its own (no Ready
	// condition) was first seen down.
	downSeen map[string]time.Time
	// unsched is the last FailedScheduling message per pending pod, so that
	// a pod that stays unschedulable gets one event per distinct reason.
	unsched map[string]string
	// reported holds other warnings already recorded (key → message), for
	// the same reason.
	reported map[string]string
	// progress is each updating app's progress, for its deadline.
	progress map[string]progress
}

func newController(st *store.Store, cfg Config) *controller {
	log := cfg.Logger.With("component", "controller")
	return &controller{
		st:       st,
		cfg:      cfg,
		log:      log,
		queue:    newQueue(),
		schedLog: cfg.Logger.With("component", "scheduler"),
		appLog:   cfg.Logger.With("component", "app-controller"),
		nodeLog:  cfg.Logger.With("component", "node-controller"),
		epLog:    cfg.Logger.With("component", "endpoints-controller"),
		downSeen: map[string]time.Time{},
		unsched:  map[string]string{},
		reported: map[string]string{},
		progress: map[string]progress{},
	}
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
func (c *controller) sync(w work) (time.Time, error) {
	now := c.cfg.Now()
	var nodes []*api.Node
	if _, err := c.st.List(api.KindNode, &nodes); err != nil {
		return time.Time{}, fmt.Errorf("list nodes: %w", err)
	}
	var pods []*api.Pod
	if _, err := c.st.List(api.KindPod, &pods); err != nil {
		return time.Time{}, fmt.Errorf("list pods: %w", err)
	}
	next, err := c.syncNodes(nodes, pods, now)
	if err != nil {
		return time.Time{}, err
	}
	apps, services := w.apps, w.services
	if w.all {
		if err := c.allNames(apps, services, pods); err != nil {
			return time.Time{}, err
		}
	}
	var errs []error
	schedule := w.schedule || w.all
	for _, name := range sortedKeys(apps) {
		created, t, err := c.syncApp(name, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("app %s: %w", name, err))
			continue
		}
		schedule = schedule || created > 0
		next = earliest(next, t)
	}
	if schedule {
		if err := c.schedulePending(); err != nil {
			errs = append(errs, fmt.Errorf("schedule: %w", err))
		}
	}
	if len(apps) > 0 {
		var svcs []*api.Service
		if _, err := c.st.List(api.KindService, &svcs); err != nil {
			return time.Time{}, errors.Join(append(errs, fmt.Errorf("list services: %w", err))...)
		}
		for _, s := range svcs {
			if apps[s.Spec.App] {
				services[s.Name] = true
			}
		}
	}
	if len(services) > 0 {
		if err := c.syncEndpoints(services, now); err != nil {
			errs = append(errs, fmt.Errorf("endpoints: %w", err))
		}
	}
	return next, errors.Join(errs...)
}

// allNames adds every app (and every app that pods name, so orphans are
// cleaned up) and every service and endpoints object.
func (c *controller) allNames(apps, services map[string]bool, pods []*api.Pod) error {
	var as []*api.App
	if _, err := c.st.List(api.KindApp, &as); err != nil {
		return fmt.Errorf("list apps: %w", err)
	}
	for _, a := range as {
		apps[a.Name] = true
	}
	for _, p := range pods {
		apps[p.Spec.App] = true
	}
	var ss []*api.Service
	if _, err := c.st.List(api.KindService, &ss); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, s := range ss {
		services[s.Name] = true
	}
	var es []*api.Endpoints
	if _, err := c.st.List(api.KindEndpoints, &es); err != nil {
		return fmt.Errorf("list endpoints: %w", err)
	}
	for _, e := range es {
		services[e.Name] = true
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

// syncNodes is the node lifecycle controller. A node that is up needs
// nothing (but its heartbeat deadline). A node whose heartbeat is stale gets
// its Ready condition set false. A node down for longer than the grace has
// its pods deleted outright, so that the app controller replaces them
// elsewhere; pods bound to a node that no longer exists go at once. (Its
// endpoints left already: the endpoints controller only lists pods on nodes
// that are up.) When such a node returns, its agent finds its pods' objects
// gone and stops them, so one copy of each replica runs.
func (c *controller) syncNodes(nodes []*api.Node, pods []*api.Pod, now time.Time) (time.Time, error) {
	hb := c.cfg.HeartbeatTimeout
	var next time.Time
	lost := map[string]bool{}
	known := map[string]bool{}
	for _, n := range nodes {
		known[n.Name] = true
		if nodeUp(n, now, hb) {
			delete(c.downSeen, n.Name)
			if cond := readyCondition(n); hb > 0 && cond != nil && !cond.LastHeartbeat.IsZero() {
				next = earliest(next, cond.LastHeartbeat.Add(hb))
			}
			continue
		}
		if heartbeatStale(n, now, hb) {
			if err := c.markNodeDown(n.Name, now); err != nil {
				return time.Time{}, err
			}
		}
		since := downSince(n, hb)
		if since.IsZero() {
			s, ok := c.downSeen[n.Name]
			if !ok {
				s = now
				c.downSeen[n.Name] = s
			}
			since = s
		}
		if end := since.Add(c.cfg.NodeGrace); now.Before(end) {
			next = earliest(next, end)
			continue
		}
		lost[n.Name] = true
	}
	for name := range c.downSeen {
		if !known[name] {
			delete(c.downSeen, name)
		}
	}
	evict := false
	for _, p := range pods {
		if p.Spec.Node != "" && (lost[p.Spec.Node] || !known[p.Spec.Node]) {
			evict = true
			break
		}
	}
	if !evict {
		return next, nil
	}
	return next, c.evict(lost, now)
}

// markNodeDown writes a stale node's Ready condition false.
func (c *controller) markNodeDown(name string, now time.Time) error {
	hb := c.cfg.HeartbeatTimeout
	return c.update(func(tx *store.Tx) error {
		var n api.Node
		if err := tx.Get(api.KindNode, name, &n); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		cond := readyCondition(&n)
		if !heartbeatStale(&n, now, hb) || cond == nil {
			return nil
		}
		cond.Status = false
		cond.Reason = "NodeStatusUnknown"
		cond.Message = fmt.Sprintf("no heartbeat for %s", now.Sub(cond.LastHeartbeat).Round(time.Second))
		cond.LastChange = cond.LastHeartbeat.Add(hb)
		if err := tx.Put(api.KindNode, &n); err != nil {
			return err
		}
		c.nodeLog.Warn("node not ready", "node", name, "reason", cond.Message)
		return tx.RecordEvent("nodes/"+name, api.EventWarning, "NodeNotReady", cond.Message, sourceNodes)
	})
}

// evict deletes the pods of lost nodes and of nodes that no longer exist,
// checking again inside the transaction that each node is still down.
func (c *controller) evict(lost map[string]bool, now time.Time) error {
	hb := c.cfg.HeartbeatTimeout
	return c.update(func(tx *store.Tx) error {
		var nodes []*api.Node
		if err := tx.List(api.KindNode, &nodes); err != nil {
			return err
		}
		nv := newNodeView(nodes, now, hb)
		var pods []*api.Pod
		if err := tx.List(api.KindPod, &pods); err != nil {
			return err
		}
		gone := map[string][]string{}
		for _, p := range pods {
			node := p.Spec.Node
			if node == "" {
				continue
			}
			_, exists := nv.byName[node]
			if exists && (!lost[node] || nv.up[node]) {
				continue
			}
			if err := tx.Delete(api.KindPod, p.Name, p.Revision); err != nil {
				return err
			}
			why := fmt.Sprintf("node %s is gone", node)
			if exists {
				why = fmt.Sprintf("node %s not ready for longer than %s", node, c.cfg.NodeGrace)
			}
			if err := tx.RecordEvent("pods/"+p.Name, api.EventWarning, "NodeLost", "deleted: "+why, sourceNodes); err != nil {
				return err
			}
			gone[node] = append(gone[node], p.Name)
		}
		for node, names := range gone {
			if _, exists := nv.byName[node]; !exists {
				continue
			}
			msg := fmt.Sprintf("not ready for longer than %s: deleted %d pods (%s)", c.cfg.NodeGrace, len(names), strings.Join(names, ", "))
			if err := tx.RecordEvent("nodes/"+node, api.EventWarning, "NodeLost", msg, sourceNodes); err != nil {
				return err
			}
			c.nodeLog.Warn("node lost; pods deleted", "node", node, "pods", len(names))
		}
		return nil
	})
}

// schedulePending binds every pending pod it can, oldest first, in one
// transaction; each binding counts against its node for the next.
func (c *controller) schedulePending() error {
	var unsched map[string]string
	var bound [][2]string
	err := c.update(func(tx *store.Tx) error {
		unsched, bound = map[string]string{}, nil
		var nodes []*api.Node
		if err := tx.List(api.KindNode, &nodes); err != nil {
			return err
		}
		var pods []*api.Pod
		if err := tx.List(api.KindPod, &pods); err != nil {
			return err
		}
		nv := newNodeView(nodes, c.cfg.Now(), c.cfg.HeartbeatTimeout)
		cl := newCluster(nodes, pods, func(n *api.Node) bool { return nv.up[n.Name] })
		var pending []*api.Pod
		for _, p := range pods {
			if p.Spec.Node == "" && p.Spec.Deleting == nil && occupies(p) {
				pending = append(pending, p)
			}
		}
		sort.SliceStable(pending, func(i, j int) bool {
			if !pending[i].Created.Equal(pending[j].Created) {
				return pending[i].Created.Before(pending[j].Created)
			}
			return pending[i].Name < pending[j].Name
		})
		for _, p := range pending {
			node, why := cl.schedule(p)
			if node == "" {
				unsched[p.Name] = why
				if c.unsched[p.Name] == why {
					continue
				}
				if err := tx.RecordEvent("pods/"+p.Name, api.EventWarning, "FailedScheduling", why, sourceScheduler); err != nil {
					return err
				}
				continue
			}
			p.Spec.Node = node
			if err := tx.Put(api.KindPod, p); err != nil {
				return err
			}
			cl.bind(p, node)
			bound = append(bound, [2]string{p.Name, node})
			if err := tx.RecordEvent("pods/"+p.Name, api.EventNormal, "Scheduled", "bound to node "+node, sourceScheduler); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, b := range bound {
		c.schedLog.Debug("pod bound", "pod", b[0], "node", b[1])
	}
	for p, why := range unsched {
		if c.unsched[p] != why {
			c.schedLog.Info("pod unschedulable", "pod", p, "reason", why)
		}
	}
	c.unsched = unsched
	return nil
}

// syncEndpoints writes the Endpoints of each named service (and deletes
// those whose service is gone), in one transaction.
func (c *controller) syncEndpoints(names map[string]bool, now time.Time) error {
	return c.update(func(tx *store.Tx) error {
		var nodes []*api.Node
		if err := tx.List(api.KindNode, &nodes); err != nil {
			return err
		}
		var pods []*api.Pod
		if err := tx.List(api.KindPod, &pods); err != nil {
			return err
		}
		nv := newNodeView(nodes, now, c.cfg.HeartbeatTimeout)
		for _, name := range sortedKeys(names) {
			var svc api.Service
			svcErr := tx.Get(api.KindService, name, &svc)
			if svcErr != nil && !errors.Is(svcErr, store.ErrNotFound) {
				return svcErr
			}
			var ep api.Endpoints
			epErr := tx.Get(api.KindEndpoints, name, &ep)
			if epErr != nil && !errors.Is(epErr, store.ErrNotFound) {
				return epErr
			}
			if svcErr != nil { // the service is gone
				if epErr == nil {
					if err := tx.Delete(api.KindEndpoints, name, ep.Revision); err != nil {
						return err
					}
				}
				continue
			}
			eps := endpointsFor(&svc, pods, nv)
			if epErr == nil && sameEndpoints(ep.Endpoints, eps) {
				continue
			}
			ep.Name = name
			ep.Endpoints = eps
			if err := tx.Put(api.KindEndpoints, &ep); err != nil {
				return err
			}
			c.epLog.Debug("endpoints updated", "service", name, "endpoints", len(eps))
		}
		return nil
	})
}
