package api

import (
	"testing"

	"github.com/skiff-edge/skiff/configs"
)

func ptr[T any](v T) *T { return &v }

func baseSpec() configs.AppSpec {
	return configs.AppSpec{
		Replicas:   ptr(3),
		Containers: map[string]*configs.ContainerSpec{"main": {Image: "img"}},
	}
}

func TestTemplateHash(t *testing.T) {
	base := baseSpec()
	h := TemplateHash(&base)
	if len(h) != 10 {
		t.Fatalf("hash %q: want 10 hex digits", h)
	}
	tests := []struct {
		name   string
		change func(s *configs.AppSpec)
		same   bool
	}{
		{"replicas", func(s *configs.AppSpec) { s.Replicas = ptr(9) }, true},
		{"update strategy", func(s *configs.AppSpec) { s.Update = &configs.UpdateSpec{AutoRollback: true} }, true},
		{"mode", func(s *configs.AppSpec) { s.Mode = configs.ModePerNode }, true},
		{"image", func(s *configs.AppSpec) { s.Containers = map[string]*configs.ContainerSpec{"main": {Image: "img:2"}} }, false},
		{"env", func(s *configs.AppSpec) {
			s.Containers = map[string]*configs.ContainerSpec{"main": {Image: "img", Env: map[string]string{"A": "1"}}}
		}, false},
		{"selector", func(s *configs.AppSpec) { s.NodeSelector = map[string]string{"a": "b"} }, false},
		{"restart stamp", func(s *configs.AppSpec) { s.RestartedAt = "2026-01-01T12:00:00Z" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.change(&s)
			if got := TemplateHash(&s); (got == h) != tt.same {
				t.Fatalf("hash after %s change = %s, base %s; same want %v", tt.name, got, h, tt.same)
			}
		})
	}
}

// A template never restarted hashes as before the restart stamp existed:
// an upgrade of the server rolls no pod.
func TestTemplateHashStable(t *testing.T) {
	s := baseSpec()
	s.Containers["main"].Env = map[string]string{"A": "1"}
	s.Restart = "always"
	s.TerminationGrace = configs.Duration(10e9)
	if got, want := TemplateHash(&s), "a7820d1f08"; got != want {
		t.Fatalf("hash %s, want %s as before", got, want)
	}
}

func TestSetTemplateKeepsScaleAndStrategy(t *testing.T) {
	to := baseSpec()
	to.Update = &configs.UpdateSpec{AutoRollback: true}
	from := baseSpec()
	from.Replicas = ptr(7)
	from.Containers = map[string]*configs.ContainerSpec{"main": {Image: "img:2"}}
	from.RestartedAt = "2026-01-01T12:00:00Z"
	SetTemplate(&to, &from)
	if TemplateHash(&to) != TemplateHash(&from) {
		t.Fatalf("template not copied: %s != %s", TemplateHash(&to), TemplateHash(&from))
	}
	if *to.Replicas != 3 || to.Update == nil || !to.Update.AutoRollback {
		t.Fatalf("SetTemplate changed replicas or update: %+v", to)
	}
}
