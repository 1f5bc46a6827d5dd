package controller

import (
	"sort"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// targetPort resolves a service's target port against a pod: a number as
// is, a name against the pod's containers' ports (containers in name order),
// none as the service port. It returns 0 when the name is not found.
func targetPort(svc *api.Service, p *api.Pod) int {
	tp := svc.Spec.TargetPort
	switch {
	case tp.Number != 0:
		return tp.Number
	case tp.Name == "":
		return svc.Spec.Port
	}
	names := make([]string, 0, len(p.Spec.Containers))
	for n := range p.Spec.Containers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if c := p.Spec.Containers[n]; c != nil {
			if port, ok := c.Ports[tp.Name]; ok {
				return port
			}
		}
	}
	return 0
}

// endpointsFor returns the backends of svc: every pod of its app that is
// ready, not being deleted, has an IP and runs on a node that is up, at the
// resolved target port; sorted by pod name.
func endpointsFor(svc *api.Service, pods []*api.Pod, nv *nodeView) []api.Endpoint {
	eps := []api.Endpoint{}
	for _, p := range pods {
		if p.Spec.App != svc.Spec.App || !nv.podReady(p) || p.Status.IP == "" {
			continue
		}
		port := targetPort(svc, p)
		if port == 0 {
			continue
		}
		eps = append(eps, api.Endpoint{Pod: p.Name, Node: p.Spec.Node, IP: p.Status.IP, Port: port})
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].Pod < eps[j].Pod })
	return eps
}

func sameEndpoints(a, b []api.Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
