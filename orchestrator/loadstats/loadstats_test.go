package loadstats

import (
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestSums(t *testing.T) {
	now := time.Unix(1000, 0)
	r := New(10*time.Second, func() time.Time { return now })
	r.Put("n1", api.NodeLoad{Interval: 2,
		Services: []api.ServiceLoad{{Service: "web", NewPerSec: 100, Active: 3,
			Endpoints: []api.EndpointLoad{{IP: "10.88.0.2", Port: 80, NewPerSec: 60}, {IP: "10.88.1.2", Port: 80, NewPerSec: 40}}}},
		Pods: []api.PodLoad{{Pod: "web-a", CPU: 0.2}, {Pod: "db-a", CPU: 0.5}, {Pod: "stranger", CPU: 9}},
	}, map[string]string{"web-a": "web", "db-a": "db"})
	now = now.Add(5 * time.Second)
	r.Put("n2", api.NodeLoad{Interval: 2,
		Services: []api.ServiceLoad{{Service: "web", NewPerSec: 50, Partial: true,
			Endpoints: []api.EndpointLoad{{IP: "10.88.0.2", Port: 80, NewPerSec: 50}}}},
		Pods: []api.PodLoad{{Pod: "web-b", CPU: 0.3}},
	}, map[string]string{"web-b": "web"})

	s := r.Service("web")
	if s.NewPerSec != 150 || s.Active != 3 || s.Nodes != 2 || !s.Partial || len(s.Endpoints) != 2 || s.Endpoints[0].NewPerSec != 110 {
		t.Errorf("service sum: %+v", s)
	}
	a := r.App("web", []string{"web"})
	if a.RPS != 150 || a.Pods != 2 || a.CPU < 0.499 || a.CPU > 0.501 || a.Nodes != 2 {
		t.Errorf("app sum: %+v (the stranger pod, whose app the server did not resolve, must not count)", a)
	}
	if got := r.App("db", nil); got.CPU != 0.5 || got.RPS != 0 {
		t.Errorf("db: %+v", got)
	}
	// n1's report ages out.
	now = now.Add(6 * time.Second)
	if s := r.Service("web"); s.NewPerSec != 50 || s.Nodes != 1 {
		t.Errorf("after n1's report aged out: %+v", s)
	}
	if n := r.Reporting(); n != 1 {
		t.Errorf("reporting %d, want 1", n)
	}
}
