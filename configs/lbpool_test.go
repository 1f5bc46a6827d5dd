package configs

import (
	"strings"
	"testing"
)

func TestLBPools(t *testing.T) {
	tests := []struct {
		pool    string
		in, out []string
		bad     string // part of the error, "" if the pool is valid
	}{
		{pool: "192.168.1.240-192.168.1.250", in: []string{"192.168.1.240", "192.168.1.250"}, out: []string{"192.168.1.239", "192.168.1.251"}},
		{pool: "10.0.0.8/29", in: []string{"10.0.0.8", "10.0.0.15"}, out: []string{"10.0.0.7", "10.0.0.16"}},
		{pool: "10.0.0.9/29", in: []string{"10.0.0.8"}}, // not masked: the network it names
		{pool: "10.0.0.0/16", in: []string{"10.0.255.255"}, out: []string{"10.1.0.0"}},
		{pool: "10.0.0.5/32", in: []string{"10.0.0.5"}, out: []string{"10.0.0.4", "10.0.0.6"}},
		{pool: "192.168.1.250-192.168.1.240", bad: "ends before it starts"},
		{pool: "192.168.1.1-fe80::1", bad: "not a range of IPv4 addresses"},
		{pool: "fd00::/64", bad: "neither a range"},
		{pool: "lan", bad: "neither a range"},
	}
	for _, tt := range tests {
		t.Run(tt.pool, func(t *testing.T) {
			var e errs
			l := LB{Pools: []string{tt.pool}}
			l.validate(&e)
			err := e.list.err()
			if tt.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tt.bad) || !strings.Contains(err.Error(), "lb.pools[0]") {
					t.Fatalf("pool %q: error %v, want one at lb.pools[0] with %q", tt.pool, err, tt.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, ip := range tt.in {
				if err := l.CheckExternalIP(ip); err != nil {
					t.Errorf("%s: %v, want it in %s", ip, err, tt.pool)
				}
			}
			for _, ip := range tt.out {
				if err := l.CheckExternalIP(ip); err == nil {
					t.Errorf("%s: allowed, want it outside %s", ip, tt.pool)
				}
			}
		})
	}
}
