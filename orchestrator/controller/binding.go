package controller

import (
	"errors"
	"sort"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// schedulePending binds every pending pod it can (see scheduleIn), reading
// fresh state.
func (c *controller) schedulePending(now time.Time) error {
	var unsched map[string]string
	var bound [][2]string
	err := c.apply(func(tx txn) error {
		var nodes []*api.Node
		if err := tx.List(api.KindNode, &nodes); err != nil {
			return err
		}
		var pods []*api.Pod
		if err := tx.List(api.KindPod, &pods); err != nil {
			return err
		}
		var err error
		unsched, bound, err = c.scheduleIn(tx, nodes, pods, now)
		return err
	})
	if err != nil {
		return err
	}
	for _, b := range bound {
		c.schedLog.Debug("pod bound", "pod", b[0], "node", b[1])
	}
	c.noteUnschedulable(unsched)
	return nil
}

// scheduleIn binds every pending pod of pods it can, oldest first; each
// binding counts against its node for the next. A pod that fits nowhere
// gets a FailedScheduling event with the reason per node, once per distinct
// reason. It returns the pods left unschedulable (pod → reason) and the
// bindings made. Pods in pods are changed.
func (c *controller) scheduleIn(tx txn, nodes []*api.Node, pods []*api.Pod, now time.Time) (map[string]string, [][2]string, error) {
	unsched := map[string]string{}
	var bound [][2]string
	nv := newNodeView(nodes)
	var pending []*api.Pod
	for _, p := range pods {
		if p.Spec.Node == "" && p.Spec.Deleting == nil && occupies(p) {
			pending = append(pending, p)
		}
	}
	if len(pending) == 0 {
		return unsched, nil, nil
	}
	cl := newCluster(nodes, pods, func(n *api.Node) bool { return nv.up[n.Name] })
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
				return nil, nil, err
			}
			continue
		}
		p.Spec.Node = node
		if err := tx.Put(api.KindPod, p); err != nil {
			return nil, nil, err
		}
		cl.bind(p, node)
		bound = append(bound, [2]string{p.Name, node})
		if err := tx.RecordEvent("pods/"+p.Name, api.EventNormal, "Scheduled", "bound to node "+node, sourceScheduler); err != nil {
			return nil, nil, err
		}
	}
	return unsched, bound, nil
}

// noteUnschedulable keeps the pending pods' reasons after a committed pass.
func (c *controller) noteUnschedulable(unsched map[string]string) {
	for p, why := range unsched {
		if c.unsched[p] != why {
			c.schedLog.Info("pod unschedulable", "pod", p, "reason", why)
		}
	}
	c.unsched = unsched
}

// syncEndpoints writes the Endpoints of each named service, reading fresh
// state (see endpointsIn).
func (c *controller) syncEndpoints(names map[string]bool, now time.Time) error {
	return c.apply(func(tx txn) error {
		var nodes []*api.Node
		if err := tx.List(api.KindNode, &nodes); err != nil {
			return err
		}
		var pods []*api.Pod
		if err := tx.List(api.KindPod, &pods); err != nil {
			return err
		}
		return c.endpointsIn(tx, names, nodes, pods, now)
	})
}

// endpointsIn writes the Endpoints of each named service when they differ
// from endpointsFor, and deletes those whose service is gone.
func (c *controller) endpointsIn(tx txn, names map[string]bool, nodes []*api.Node, pods []*api.Pod, now time.Time) error {
	nv := newNodeView(nodes)
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
		activate, err := scalesToZero(tx, &svc)
		if err != nil {
			return err
		}
		if epErr == nil && sameEndpoints(ep.Endpoints, eps) && ep.Activate == activate {
			continue
		}
		ep.Name = name
		ep.Endpoints = eps
		ep.Activate = activate
		if err := tx.Put(api.KindEndpoints, &ep); err != nil {
			return err
		}
		if !isDry(tx) {
			c.epLog.Debug("endpoints updated", "service", name, "endpoints", len(eps))
		}
	}
	return nil
}
