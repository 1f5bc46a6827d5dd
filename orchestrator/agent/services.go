package agent

import (
	"context"
	"maps"
	"net"
	"sort"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// lbMinInterval spaces netlb syncs so that a burst of changes makes one.
const lbMinInterval = 20 * time.Millisecond

// kickLB asks the load balancer loop for a sync; it never blocks.
func (a *Agent) kickLB() {
	select {
	case a.lbKick <- struct{}{}:
	default:
	}
}

// lbLoop syncs netlb whenever kicked, coalescing bursts, and retries a
// failed sync.
func (a *Agent) lbLoop(ctx context.Context) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.lbKick:
		case <-retry:
		}
		retry = nil
		if err := a.syncLB(); err != nil {
			a.log.Warn("load balancer sync failed; retrying", "err", err)
			retry = time.After(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(lbMinInterval):
		}
	}
}

// SetDownNodes says which nodes the gossip reports failed: this node's load
// balancer leaves their endpoints out at once, without waiting for the
// server (which may be the one cut off) to update the endpoints, unless
// that would leave a service with none. Safe to call at any time.
func (a *Agent) SetDownNodes(nodes map[string]bool) {
	a.mu.Lock()
	changed := !maps.Equal(a.downNodes, nodes)
	a.downNodes = maps.Clone(nodes)
	a.mu.Unlock()
	if changed {
		a.kickLB()
	}
}

// withoutDown returns eps without the endpoints on down nodes; a service
// whose endpoints are all on down nodes keeps them.
func withoutDown(eps map[string]*api.Endpoints, down map[string]bool) map[string]*api.Endpoints {
	if len(down) == 0 {
		return eps
	}
	out := make(map[string]*api.Endpoints, len(eps))
	for name, e := range eps {
		var keep []api.Endpoint
		for _, ep := range e.Endpoints {
			if !down[ep.Node] {
				keep = append(keep, ep)
			}
		}
		if len(keep) == len(e.Endpoints) || len(keep) == 0 {
			out[name] = e
			continue
		}
		c := *e
		c.Endpoints = keep
		out[name] = &c
	}
	return out
}

// syncLB programs netlb from the cached services and endpoints.
func (a *Agent) syncLB() error {
	a.mu.Lock()
	svcs, eps, ips := lbState(a.services, withoutDown(a.eps, a.downNodes))
	a.mu.Unlock()
	if err := a.net.Sync(svcs, eps); err != nil {
		return err
	}
	a.mu.Lock()
	a.lbIPs = ips
	a.mu.Unlock()
	return nil
}

// lbState maps services and endpoints to netlb's shapes; ips is the set
// of endpoint IPs. Services without a cluster IP yet are left out.
func lbState(services map[string]*api.Service, endpoints map[string]*api.Endpoints) ([]netlb.Service, map[string][]netlb.Endpoint, map[string]bool) {
	names := make([]string, 0, len(services))
	for name := range services {
		names = append(names, name)
	}
	sort.Strings(names)
	svcs := make([]netlb.Service, 0, len(names))
	eps := map[string][]netlb.Endpoint{}
	ips := map[string]bool{}
	for _, name := range names {
		s := services[name]
		ip := net.ParseIP(s.Status.ClusterIP).To4()
		if ip == nil || s.Spec.Port == 0 {
			continue
		}
		ns := netlb.Service{Name: name, ClusterIP: ip, Port: s.Spec.Port, Protocol: netlb.TCP,
			Affinity: s.Spec.Affinity == configs.AffinityClientIP}
		if s.Spec.Protocol == configs.ProtocolUDP {
			ns.Protocol = netlb.UDP
		}
		if s.Spec.Type == configs.ServiceNodePort || s.Spec.Type == configs.ServiceLoadBalancer {
			ns.NodePort = s.Status.NodePort
			if ns.NodePort == 0 {
				ns.NodePort = s.Spec.NodePort
			}
		}
		if s.Spec.Type == configs.ServiceLoadBalancer && s.Spec.ExternalIP != "" {
			ns.ExternalIP = net.ParseIP(s.Spec.ExternalIP).To4()
		}
		svcs = append(svcs, ns)
		if e := endpoints[name]; e != nil {
			for _, ep := range e.Endpoints {
				if eip := net.ParseIP(ep.IP).To4(); eip != nil && ep.Port > 0 {
					eps[name] = append(eps[name], netlb.Endpoint{IP: eip, Port: ep.Port})
					ips[ep.IP] = true
				}
			}
		}
	}
	return svcs, eps, ips
}

// inLB reports whether ip is still an endpoint in the cached endpoints or
// in the rules of the last netlb sync.
func (a *Agent) inLB(ip string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lbIPs[ip] {
		return true
	}
	for _, e := range a.eps {
		for _, ep := range e.Endpoints {
			if ep.IP == ip {
				return true
			}
		}
	}
	return false
}
