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

// TestLBFreeAddress: the first free address in pool order; CIDR pools skip
// their network and broadcast addresses; a full pool and no pools are
// errors.
func TestLBFreeAddress(t *testing.T) {
	tests := []struct {
		name  string
		pools []string
		used  []string
		want  string // "" for an error
	}{
		{"first of a range", []string{"192.168.1.240-192.168.1.241"}, nil, "192.168.1.240"},
		{"next of a range", []string{"192.168.1.240-192.168.1.241"}, []string{"192.168.1.240"}, "192.168.1.241"},
		{"range full, next pool", []string{"192.168.1.240-192.168.1.240", "10.0.0.8/30"}, []string{"192.168.1.240"}, "10.0.0.9"},
		{"cidr skips broadcast", []string{"10.0.0.8/30"}, []string{"10.0.0.9", "10.0.0.10"}, ""},
		{"a /32 pool", []string{"10.0.0.5/32"}, nil, "10.0.0.5"},
		{"no pools", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used := map[string]bool{}
			for _, u := range tt.used {
				used[u] = true
			}
			got, err := LB{Pools: tt.pools}.FreeAddress(used)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("got %s, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %s", got, err, tt.want)
			}
		})
	}
}
