package agent

// The load balancer's input: services and endpoints mapped onto netlb's
// shapes, with the endpoints of nodes the gossip says are down left out.

import (
	"net"
	"sort"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

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
		if addr := vipAddress(s); addr != "" {
			ns.ExternalIP = net.ParseIP(addr).To4()
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
