package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestRolloutRestart: `rollout restart` stamps the app's template (a new
// revision, every pod to be replaced), and applying the manifest again
// leaves it so.
func TestRolloutRestart(t *testing.T) {
	addr := startServer(t)
	web := writeFile(t, t.TempDir(), "web.toml", webManifest)
	must(t, addr, "apply", "-f", web)
	getApp := func() api.App {
		var a api.App
		if err := json.Unmarshal([]byte(must(t, addr, "get", "app", "web", "-o", "json")), &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := getApp()
	before := api.TemplateHash(&a.Spec)

	if out := must(t, addr, "rollout", "restart", "app", "web"); out != "app/web restarted\n" {
		t.Errorf("restart said %q", out)
	}
	a = getApp()
	after := api.TemplateHash(&a.Spec)
	if a.Spec.RestartedAt == "" || after == before {
		t.Fatalf("after restart: stamp %q, template %s (was %s)", a.Spec.RestartedAt, after, before)
	}
	if out := must(t, addr, "describe", "app", "web"); !strings.Contains(out, "Restarted:") || !strings.Contains(out, a.Spec.RestartedAt) {
		t.Errorf("describe app lacks the restart stamp %s:\n%s", a.Spec.RestartedAt, out)
	}
	if out := must(t, addr, "apply", "-f", web); out != "app/web unchanged\nservice/web unchanged\n" {
		t.Errorf("apply after restart said %q", out)
	}
	if got := getApp(); got.Spec.RestartedAt != a.Spec.RestartedAt {
		t.Errorf("apply after restart: stamp %q, want %q", got.Spec.RestartedAt, a.Spec.RestartedAt)
	}
	if r := skiff(t, addr, "rollout", "restart", "app", "nope"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("restart of a missing app: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := skiff(t, addr, "rollout", "restart", "service", "web"); r.code != 2 {
		t.Errorf("restart of a service: exit %d, want 2 (usage)", r.code)
	}
}
