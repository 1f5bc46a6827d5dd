package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestRolloutRestartE2E: `skiff rollout restart` on a real `skiff server
// --agent` replaces every pod of an app through its rolling update while a
// Go client requests the service's cluster IP in a loop, a new connection
// each time: no request fails, and none of the pods of before is left. An
// apply of the same manifest afterwards changes nothing.
func TestRolloutRestartE2E(t *testing.T) {
	n := newNode(t)
	n.start()
	ctx := context.Background()
	if _, err := n.c.Apply(ctx, demoManifestWithService(), false); err != nil {
		t.Fatal(err)
	}
	before := n.waitReady("web", "web", 3, 60*time.Second)
	vip := n.vip("web")
	// The endpoints object lists the pods a little before the node's
	// rules do: wait for the data plane before counting failures.
	n.waitFor("the VIP to answer", 10*time.Second, func() (bool, error) {
		_, err := get("http://" + vip + "/")
		return err == nil, nil
	})
	app, err := n.c.GetApp(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	oldHash := app.Status.TemplateHash

	l := loop("http://" + vip + "/")
	if out, err := n.skiff("rollout", "restart", "app", "web"); err != nil || out != "app/web restarted\n" {
		t.Fatalf("rollout restart: %v %q", err, out)
	}
	if out, err := n.skiff("rollout", "status", "app", "web", "--timeout", "120s"); err != nil ||
		!strings.HasSuffix(out, "app/web successfully rolled out\n") {
		t.Fatalf("rollout status: %v\n%s", err, out)
	}
	// Rolled out: every pod is new and ready; wait for the old ones to
	// be gone too (they stop after leaving the endpoints).
	old := map[string]bool{}
	for _, p := range before {
		old[p.Name] = true
	}
	var after []api.Pod
	n.waitFor("3 new ready pods and no old one", 60*time.Second, func() (bool, error) {
		l, err := n.c.ListPods(ctx, "web", "")
		if err != nil || len(l.Items) != 3 {
			return false, err
		}
		for _, p := range l.Items {
			if old[p.Name] || p.Spec.TemplateHash == oldHash || p.Spec.Deleting != nil || !p.Status.Ready {
				return false, nil
			}
		}
		ep, err := n.c.GetEndpoints(ctx, "web")
		after = l.Items
		return err == nil && len(ep.Endpoints) == 3, err
	})
	ok, fail, errs := l.end()
	t.Logf("rollout restart under load: %d requests ok, %d failed", ok, fail)
	if fail > 0 || ok == 0 {
		t.Errorf("rollout restart: %d of %d requests failed: %v", fail, ok+fail, errs)
	}
	app, err = n.c.GetApp(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if app.Spec.RestartedAt == "" || app.Status.TemplateHash == oldHash || after[0].Spec.TemplateHash != app.Status.TemplateHash {
		t.Errorf("after restart: stamp %q, template %s (was %s), pods at %s", app.Spec.RestartedAt, app.Status.TemplateHash, oldHash, after[0].Spec.TemplateHash)
	}

	// The manifest again (it has no stamp): nothing to do.
	res, err := n.c.Apply(ctx, demoManifestWithService(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Results {
		if r.Action != api.ActionUnchanged {
			t.Errorf("apply after restart: %s/%s %s, want unchanged", r.Kind, r.Name, r.Action)
		}
	}
	if got := n.pods("web"); len(got) != 3 || got[0].Spec.TemplateHash != app.Status.TemplateHash {
		t.Errorf("after re-apply: pods %v", got)
	}
}

// demoManifestWithService is the test's manifest: demoManifest("web", 3)
// and a cluster service in front of it.
func demoManifestWithService() *configs.Manifest {
	m := demoManifest("web", 3)
	m.Services = map[string]*configs.ServiceSpec{"web": {App: "web", Port: 80, TargetPort: configs.PortRef{Name: "http"}}}
	return m
}
