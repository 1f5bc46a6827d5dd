package agent

import (
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestWithoutDown: endpoints on down nodes leave the load balancer's input,
// unless that leaves a service with none; nothing is copied when no node
// is down.
func TestWithoutDown(t *testing.T) {
	eps := map[string]*api.Endpoints{
		"web": {Meta: api.Meta{Name: "web"}, Endpoints: []api.Endpoint{
			{Pod: "w1", Node: "n0", IP: "10.88.0.2", Port: 8080},
			{Pod: "w2", Node: "n1", IP: "10.88.1.2", Port: 8080},
		}},
		"db": {Meta: api.Meta{Name: "db"}, Endpoints: []api.Endpoint{{Pod: "d1", Node: "n0", IP: "10.88.0.3", Port: 5432}}},
	}
	tests := []struct {
		name string
		down map[string]bool
		want map[string][]string // service -> pods
	}{
		{"none down", nil, map[string][]string{"web": {"w1", "w2"}, "db": {"d1"}}},
		{"n0 down", map[string]bool{"n0": true}, map[string][]string{"web": {"w2"}, "db": {"d1"}}},
		{"n1 down", map[string]bool{"n1": true}, map[string][]string{"web": {"w1"}, "db": {"d1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := withoutDown(eps, tc.down)
			for svc, pods := range tc.want {
				var have []string
				for _, ep := range got[svc].Endpoints {
					have = append(have, ep.Pod)
				}
				if len(have) != len(pods) {
					t.Fatalf("%s: %v, want %v", svc, have, pods)
				}
				for i := range pods {
					if have[i] != pods[i] {
						t.Fatalf("%s: %v, want %v", svc, have, pods)
					}
				}
			}
			if len(eps["web"].Endpoints) != 2 {
				t.Fatalf("the input was changed: %+v", eps["web"])
			}
		})
	}
}
