package apiserver

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// allocateService fills svc.Status (cluster IP, node port) inside tx, so
// that two writers can never be given the same address. An address already
// held (old is the stored service, or nil) is kept across re-applies; a
// fixed cluster_ip or node_port outside its range is a 400 and one held by
// another service a 409.
func (s *Server) allocateService(tx *store.Tx, svc, old *api.Service) error {
	var all []*api.Service
	if err := tx.List(api.KindService, &all); err != nil {
		return err
	}
	ips := map[string]string{}
	ports := map[int]string{}
	lan := map[string]string{}
	for _, o := range all {
		if o.Name == svc.Name {
			continue
		}
		if o.Status.ClusterIP != "" {
			ips[o.Status.ClusterIP] = o.Name
		}
		if o.Status.Address != "" {
			lan[o.Status.Address] = o.Name
		}
		if o.Status.NodePort != 0 {
			ports[o.Status.NodePort] = o.Name
		}
	}
	var prev api.ServiceStatus
	if old != nil {
		prev = old.Status
	}
	field := "service." + svc.Name + "."

	// Cluster IP.
	switch want := svc.Spec.ClusterIP; {
	case want != "":
		ip := net.ParseIP(want).To4()
		if ip == nil || !s.serviceCIDR.Contains(ip) || !hostAddr(s.serviceCIDR, ip) {
			return invalid(field+"cluster_ip", "cluster_ip %s is not a host address of the service CIDR %s", want, s.serviceCIDR)
		}
		if other, ok := ips[ip.String()]; ok {
			return conflict("cluster_ip %s is held by service %q", ip, other)
		}
		svc.Status.ClusterIP = ip.String()
	case prev.ClusterIP != "" && ips[prev.ClusterIP] == "" && s.serviceCIDR.Contains(net.ParseIP(prev.ClusterIP)):
		svc.Status.ClusterIP = prev.ClusterIP
	default:
		ip, err := freeIP(s.serviceCIDR, ips)
		if err != nil {
			return conflict("%v", err)
		}
		svc.Status.ClusterIP = ip
	}

	if err := s.allocateAddress(svc, prev, lan, field); err != nil {
		return err
	}

	// Node port, for the types that have one.
	svc.Status.NodePort = 0
	if svc.Spec.Type != configs.ServiceNodePort && svc.Spec.Type != configs.ServiceLoadBalancer {
		return nil
	}
	switch want := svc.Spec.NodePort; {
	case want != 0:
		if want < configs.NodePortMin || want > configs.NodePortMax {
			return invalid(field+"node_port", "node_port %d is outside %d-%d", want, configs.NodePortMin, configs.NodePortMax)
		}
		if other, ok := ports[want]; ok {
			return conflict("node_port %d is held by service %q", want, other)
		}
		svc.Status.NodePort = want
	case prev.NodePort != 0 && ports[prev.NodePort] == "":
		svc.Status.NodePort = prev.NodePort
	default:
		for p := configs.NodePortMin; p <= configs.NodePortMax; p++ {
			if _, ok := ports[p]; !ok {
				svc.Status.NodePort = p
				return nil
			}
		}
		return conflict("no free node port in %d-%d", configs.NodePortMin, configs.NodePortMax)
	}
	return nil
}

// allocateAddress fills svc.Status.Address (and keeps Holder while the
// address stays) for a load-balancer service: the address it asks for, the
// one it had, or the first free one of the server's pools; used maps the
// addresses other services hold to their names. An asked-for address that
// another service holds is a 409; with no pools (Options.FreeExternalIP
// nil, or the pools empty) a service that asks for none gets none, and a
// full pool is a 409. The server sets FreeExternalIP only when it has
// pools. The validation before the write has checked that an
// asked-for address lies in the pools (a 400 naming the field).
func (s *Server) allocateAddress(svc *api.Service, prev api.ServiceStatus, used map[string]string, field string) error {
	svc.Status.Address, svc.Status.Holder = "", ""
	if svc.Spec.Type != configs.ServiceLoadBalancer {
		return nil
	}
	inPools := func(ip string) bool { return s.opts.CheckExternalIP == nil || s.opts.CheckExternalIP(ip) == nil }
	switch want := svc.Spec.WantAddress(); {
	case want != "":
		if other, ok := used[want]; ok {
			return conflict("%s: address %s is held by service %q", field+svc.Spec.AddressField(), want, other)
		}
		svc.Status.Address = want
	case prev.Address != "" && used[prev.Address] == "" && inPools(prev.Address):
		svc.Status.Address = prev.Address
	case s.opts.FreeExternalIP == nil:
		return nil
	default:
		taken := make(map[string]bool, len(used))
		for ip := range used {
			taken[ip] = true
		}
		ip, err := s.opts.FreeExternalIP(taken)
		if err != nil {
			return conflict("%s: %v", field+"address", err)
		}
		svc.Status.Address = ip
	}
	if svc.Status.Address == prev.Address {
		svc.Status.Holder = prev.Holder
	}
	return nil
}

// hostAddr reports whether ip is neither the network nor the broadcast
// address of n.
func hostAddr(n *net.IPNet, ip net.IP) bool {
	ones, bits := n.Mask.Size()
	off := ip4(ip) - ip4(n.IP)
	return off != 0 && off != 1<<(bits-ones)-1
}

func ip4(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func fromU32(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}

// freeIP returns the lowest host address of n that is not in used.
func freeIP(n *net.IPNet, used map[string]string) (string, error) {
	ones, bits := n.Mask.Size()
	base := ip4(n.IP)
	size := uint32(1) << (bits - ones)
	for off := uint32(1); off+1 < size; off++ {
		ip := fromU32(base + off).String()
		if _, ok := used[ip]; !ok {
			return ip, nil
		}
	}
	return "", fmt.Errorf("no free cluster IP in %s", n)
}

// allocatePodCIDR gives node a /24 of the cluster CIDR that no other node
// holds, keeping the one it had (old may be nil).
func (s *Server) allocatePodCIDR(tx *store.Tx, node, old *api.Node) error {
	if old != nil && old.Spec.PodCIDR != "" {
		node.Spec.PodCIDR = old.Spec.PodCIDR
		return nil
	}
	var all []*api.Node
	if err := tx.List(api.KindNode, &all); err != nil {
		return err
	}
	used := map[string]bool{}
	for _, n := range all {
		if n.Name != node.Name && n.Spec.PodCIDR != "" {
			used[n.Spec.PodCIDR] = true
		}
	}
	ones, _ := s.clusterCIDR.Mask.Size()
	base := ip4(s.clusterCIDR.IP)
	for i := uint32(0); i < 1<<(24-ones); i++ {
		c := fmt.Sprintf("%s/24", fromU32(base+i<<8))
		if !used[c] {
			node.Spec.PodCIDR = c
			return nil
		}
	}
	return conflict("no free /24 left in cluster CIDR %s", s.clusterCIDR)
}
