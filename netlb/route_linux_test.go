package netlb

import (
	"net"
	"testing"
)

// TestRouteSource: the source address for a destination on a local link
// is the link's own address. Needs no root: it only asks the kernel.
func TestRouteSource(t *testing.T) {
	tests := []struct {
		name string
		dst  net.IP
		want net.IP
	}{
		{name: "loopback", dst: net.IPv4(127, 0, 0, 1), want: net.IPv4(127, 0, 0, 1)},
		{name: "loopback subnet", dst: net.IPv4(127, 1, 2, 3), want: net.IPv4(127, 0, 0, 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RouteSource(tc.dst)
			if err != nil {
				t.Fatalf("RouteSource(%s): %v", tc.dst, err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("RouteSource(%s) = %v, want %v", tc.dst, got, tc.want)
			}
		})
	}
}
