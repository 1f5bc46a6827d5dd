package main

import (
	"testing"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/netlb"
)

// TestLibraryDefaults: configs is the one home of the node's defaults. The
// libraries the orchestrator drives import nothing of the project's, so the
// few defaults of theirs that name the same things are spelled again there;
// they must say the same as configs (the orchestrator gives them the node's
// values anyway, but their docs and standalone users go by them).
func TestLibraryDefaults(t *testing.T) {
	nl := netlb.DefaultConfig()
	tests := []struct {
		name, got, want string
	}{
		{"netlb bridge", nl.Bridge, configs.DefaultBridge},
		{"netlb cluster cidr", nl.ClusterCIDR.String(), configs.DefaultClusterCIDR},
		{"netlb service cidr", nl.ServiceCIDR.String(), configs.DefaultServiceCIDR},
		{"containers cgroup parent", containers.DefaultConfig().CgroupParent, configs.DefaultCgroupParent},
		{"cluster bind address", cluster.DefaultConfig().BindAddr, configs.DefaultGossipAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s is %q, configs says %q", tt.name, tt.got, tt.want)
			}
		})
	}
}
