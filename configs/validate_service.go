package configs

import (
	"fmt"
	"net/netip"
)

// NodePort range of node-port and load-balancer services.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// ValidateService checks the service spec s named name. Zero values of
// defaulted fields are accepted. The error is an ErrorList without
// positions, with field paths "service.NAME....".
func ValidateService(name string, s *ServiceSpec) error {
	var e errs
	validateService(&e, name, s)
	return e.list.err()
}

func validateService(e *errs, name string, s *ServiceSpec) {
	p := path{"service", name}
	if !ValidName(name) {
		e.addKey(p, "%s", nameMsg(name))
	}
	if s == nil {
		e.add(p, "is empty")
		return
	}
	switch {
	case s.App == "":
		e.add(p.with("app"), "is required")
	case !ValidName(s.App):
		e.add(p.with("app"), "%s", nameMsg(s.App))
	}
	switch {
	case s.Port == 0:
		e.add(p.with("port"), "is required")
	case s.Port < 1 || s.Port > 65535:
		e.add(p.with("port"), "%s", portRangeMsg(int64(s.Port)))
	}
	validatePortRef(e, p.with("target_port"), s.TargetPort, false)
	switch s.Protocol {
	case "", ProtocolTCP, ProtocolUDP:
	default:
		e.add(p.with("protocol"), "%s", enumMsg(s.Protocol, "protocol", ProtocolTCP, ProtocolUDP))
	}
	typ := s.Type
	switch typ {
	case "":
		typ = ServiceCluster
	case ServiceCluster, ServiceNodePort, ServiceLoadBalancer:
	default:
		e.add(p.with("type"), "%s", enumMsg(s.Type, "service type", ServiceCluster, ServiceNodePort, ServiceLoadBalancer))
	}
	if s.NodePort != 0 {
		switch {
		case s.NodePort < NodePortMin || s.NodePort > NodePortMax:
			e.add(p.with("node_port"), "%d is out of range %d-%d", s.NodePort, NodePortMin, NodePortMax)
		case typ == ServiceCluster:
			e.add(p.with("node_port"), `needs type "node-port" or "load-balancer"`)
		}
	}
	if s.Address != "" && s.ExternalIP != "" {
		e.add(p.with("address"), "set address or external_ip (its older name), not both")
	}
	for _, f := range []struct{ name, val string }{{"address", s.Address}, {"external_ip", s.ExternalIP}} {
		if f.val == "" {
			continue
		}
		if msg := ipv4Msg(f.val); msg != "" {
			e.add(p.with(f.name), "%s", msg)
		} else if typ == ServiceCluster || typ == ServiceNodePort {
			e.add(p.with(f.name), `needs type "load-balancer"`)
		}
	}
	switch s.Announce {
	case "", AnnounceAnyNode, AnnounceReadyNode:
		if s.Announce != "" && typ != ServiceLoadBalancer {
			e.add(p.with("announce"), `needs type "load-balancer"`)
		}
	default:
		e.add(p.with("announce"), "%s", enumMsg(s.Announce, "announce policy", AnnounceAnyNode, AnnounceReadyNode))
	}
	switch s.Affinity {
	case "", AffinityNone, AffinityClientIP:
	default:
		e.add(p.with("affinity"), "%s", enumMsg(s.Affinity, "affinity", AffinityNone, AffinityClientIP))
	}
	if s.ClusterIP != "" {
		if msg := ipv4Msg(s.ClusterIP); msg != "" {
			e.add(p.with("cluster_ip"), "%s", msg)
		}
	}
}

// ipv4Msg explains why s is not an IPv4 address, or returns "".
func ipv4Msg(s string) string {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return fmt.Sprintf("%s is not an IP address", quoteShort(s))
	case !a.Is4():
		return fmt.Sprintf("%s is not an IPv4 address (services are IPv4)", quoteShort(s))
	case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
		return fmt.Sprintf("%s cannot be a service address", quoteShort(s))
	}
	return ""
}
