package netlb

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SetPeers makes the node's host-gw routes match peers: one route per peer
// to its pod CIDR via its node IP, tagged with netlb's route protocol.
// Routes of peers no longer listed are deleted; a peer with this node's own
// pod CIDR is ignored. The node IPs must be reachable on a connected link.
func (n *Network) SetPeers(peers []Peer) error {
	want := map[string]Peer{}
	for _, p := range peers {
		if p.PodCIDR == nil || p.NodeIP.To4() == nil {
			return fmt.Errorf("peer %q: want an IPv4 node ip and pod cidr", p.Name)
		}
		if p.PodCIDR.String() == n.cfg.PodCIDR.String() {
			continue
		}
		want[p.PodCIDR.String()] = p
	}
	have, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProto}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	var errs []error
	for _, r := range have {
		if r.Dst == nil || r.Gw == nil {
			continue // the service cidr route of SetupNode
		}
		if p, ok := want[r.Dst.String()]; ok && p.NodeIP.Equal(r.Gw) {
			delete(want, r.Dst.String())
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
		}
	}
	for _, p := range want {
		r := &netlink.Route{Dst: p.PodCIDR, Gw: p.NodeIP.To4(), Protocol: routeProto}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s (peer %s): %w", p.PodCIDR, p.NodeIP, p.Name, err))
			continue
		}
		n.log.Debug("peer route", "node", p.Name, "pod_cidr", p.PodCIDR.String(), "via", p.NodeIP.String())
	}
	return errors.Join(errs...)
}
