package netlb

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// RouteSource returns the IPv4 source address the node's routing table
// picks to reach dst (with dst 1.1.1.1: the address of the default
// route), or nil when no route to dst has one. It reads the calling
// process's network namespace and changes nothing.
func RouteSource(dst net.IP) (net.IP, error) {
	routes, err := netlink.RouteGet(dst)
	if err != nil {
		return nil, fmt.Errorf("route to %s: %w", dst, err)
	}
	for _, r := range routes {
		if r.Src != nil && r.Src.To4() != nil {
			return r.Src, nil
		}
	}
	return nil, nil
}
