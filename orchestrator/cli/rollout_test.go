package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestRolloutNote(t *testing.T) {
	tests := []struct {
		name string
		ro   *api.RolloutStatus
		want string
	}{
		{"none", nil, ""},
		{"an update", &api.RolloutStatus{TemplateHash: "h1"}, ""},
		{"a rollback", &api.RolloutStatus{TemplateHash: "h1", RollbackOf: "h2"}, "rollback from template h2"},
		{"stopped", &api.RolloutStatus{TemplateHash: "h1", DeadlineExceeded: true}, "progress deadline exceeded"},
		{"a stopped rollback", &api.RolloutStatus{TemplateHash: "h1", RollbackOf: "h2", DeadlineExceeded: true},
			"rollback from template h2; progress deadline exceeded"},
		{"of another template", &api.RolloutStatus{TemplateHash: "h0", RollbackOf: "h2"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &api.App{Status: api.AppStatus{TemplateHash: "h1", Rollout: tt.ro}}
			if got := rolloutNote(a); got != tt.want {
				t.Fatalf("rolloutNote = %q, want %q", got, tt.want)
			}
		})
	}
}

// While the pre-pull holds an update, rollout status says so, with the
// failing node; once done, the usual counts.
func TestRolloutDonePrepull(t *testing.T) {
	a := &api.App{Meta: api.Meta{Name: "web"}, Spec: configs.AppSpec{Replicas: ptr(2)},
		Status: api.AppStatus{Replicas: 2, Ready: 2}}
	h := api.TemplateHash(&a.Spec)
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	a.Status.TemplateHash = h
	a.Status.Prepull = &api.PrepullStatus{TemplateHash: h, Started: t0, Nodes: []api.PrepullNode{
		{Name: "a", Pulled: true}, {Name: "b", Error: "pull r/x:2: 503", Failures: 2, RetryAt: t0.Add(15 * time.Second)}}}
	done, line := RolloutDone(a)
	want := "Waiting for rollout of app/web: pre-pulling 1/2 nodes; node b: pull r/x:2: 503 (2 failures, retry at 12:00:15)..."
	if done || line != want {
		t.Fatalf("pending: %v, %q; want %q", done, line, want)
	}
	a.Status.Prepull.Done = t0.Add(20 * time.Second)
	a.Status.Prepull.Nodes[1] = api.PrepullNode{Name: "b", Pulled: true}
	if done, line := RolloutDone(a); done || !strings.Contains(line, "0 out of 2 new replicas") {
		t.Fatalf("done: %v, %q", done, line)
	}
	if s := a.Status.Prepull.Summary(); s != "pre-pulled on 2/2 nodes in 20s" {
		t.Fatalf("summary %q", s)
	}
}
