package cli

import (
	"testing"

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
