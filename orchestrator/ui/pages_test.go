package ui

import (
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestAppRowRollout(t *testing.T) {
	three := 3
	pods := func(n int) []*api.Pod {
		var out []*api.Pod
		for range n {
			out = append(out, &api.Pod{Spec: api.PodSpec{App: "web"}, Status: api.PodStatus{Ready: true}})
		}
		return out
	}
	tests := []struct {
		name        string
		status      api.AppStatus
		rolling, ok bool
		pct         int
	}{
		{"complete", api.AppStatus{Updated: 3, Rollout: &api.RolloutStatus{TemplateHash: "a"}}, false, true, 100},
		{"under way", api.AppStatus{Updated: 1, Rollout: &api.RolloutStatus{TemplateHash: "b", Progressed: time.Now(), ReadyUpdated: 1}}, true, false, 33},
		{"no rollout yet", api.AppStatus{}, false, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &snapshot{Pods: pods(3)}
			row := s.appRow(&api.App{Meta: api.Meta{Name: "web"}, Spec: appSpec(&three), Status: tc.status})
			if row.Rolling != tc.rolling || row.Healthy != tc.ok || row.Progress.Pct != tc.pct || row.Ready != 3 || row.Desired != 3 {
				t.Errorf("got rolling %v healthy %v pct %d ready %d/%d, want %v %v %d 3/3", row.Rolling, row.Healthy, row.Progress.Pct, row.Ready, row.Desired, tc.rolling, tc.ok, tc.pct)
			}
		})
	}
}

func appSpec(replicas *int) (s configs.AppSpec) {
	s.Replicas = replicas
	return s
}
