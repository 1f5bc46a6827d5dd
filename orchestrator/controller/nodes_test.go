package controller

import (
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestNodeUp(t *testing.T) {
	const timeout = 40 * time.Second
	withHB := func(ready bool, hb time.Time) *api.Node {
		n := mkNode("n", ready, 1, 1, nil)
		n.Status.Conditions[0].LastHeartbeat = hb
		return n
	}
	tests := []struct {
		name    string
		node    *api.Node
		timeout time.Duration
		up      bool
		since   time.Time
	}{
		{name: "ready, fresh heartbeat", node: withHB(true, t0.Add(-10*time.Second)), timeout: timeout, up: true},
		{name: "ready, never a heartbeat", node: withHB(true, time.Time{}), timeout: timeout, up: true},
		{name: "ready, stale heartbeat", node: withHB(true, t0.Add(-time.Minute)), timeout: timeout, since: t0.Add(-20 * time.Second)},
		{name: "stale heartbeat, check off", node: withHB(true, t0.Add(-time.Minute)), up: true},
		{name: "not ready", node: withHB(false, t0), timeout: timeout, since: t0},
		{name: "no condition", node: &api.Node{Meta: api.Meta{Name: "n"}}, timeout: timeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nodeUp(tt.node, t0, tt.timeout); got != tt.up {
				t.Fatalf("up = %v, want %v", got, tt.up)
			}
			if tt.up {
				return
			}
			if got := downSince(tt.node, tt.timeout); !got.Equal(tt.since) {
				t.Fatalf("down since %v, want %v", got, tt.since)
			}
		})
	}
}
