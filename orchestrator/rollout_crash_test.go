package orchestrator_test

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// rolloutManifest is app web with 400Mi pods (two fit on node n1, see
// TestAutoRollbackSurvivesKill9) that roll back by themselves after 1s
// without progress. version goes into the pod template.
func rolloutManifest(replicas int, version string) string {
	return fmt.Sprintf(`{"apps":{"web":{"replicas":%d,
		"update":{"auto_rollback":true,"progress_deadline":"1s"},
		"containers":{"c":{"image":"busybox:1","memory":"400Mi","env":{"VERSION":%q}}}}}}`, replicas, version)
}

// The ping-pong: v2 misses its deadline and is rolled back to v1,
// which cannot progress either (its third pod has no room), so the
// controller stops there. Each kill -9 of the server must leave it stopped:
// what the controller decided (this revision is a rollback; its deadline
// passed) is in the store, not in its memory. It used to roll v1 back to v2
// after a restart, then v2 to v1 after the next, and so on.
func TestAutoRollbackSurvivesKill9(t *testing.T) {
	s := startServer(t, serverOpts{})
	// A node without an agent: Ready for good (it sends no heartbeats to
	// miss), room for two 400Mi pods. The test plays its agent.
	node := api.Node{Meta: api.Meta{Name: "n1"}, Status: api.NodeStatus{
		Capacity:    api.Resources{MilliCPU: 4000, Memory: 1000 << 20, Pods: 100},
		Allocatable: api.Resources{MilliCPU: 4000, Memory: 1000 << 20, Pods: 100},
		Addresses:   []string{"127.0.0.1"},
		Conditions:  []api.Condition{{Type: api.NodeReady, Status: true, LastChange: time.Now().UTC()}},
	}}
	s.mustDo("PUT", "/v1/nodes/n1", node, 201, nil)

	s.mustDo("POST", "/v1/apply", rolloutManifest(1, "v1"), 200, nil)
	var v1 api.Pod
	waitFor(t, "the v1 pod bound to n1", func() bool {
		pods := appPods(s, "web")
		if len(pods) != 1 || pods[0].Spec.Node != "n1" {
			return false
		}
		v1 = pods[0]
		return true
	})
	v1.Status = api.PodStatus{Phase: api.PodRunning, Ready: true, IP: "10.88.0.2"}
	s.mustDo("PUT", "/v1/pods/"+v1.Name+"/status", v1, 200, nil)
	waitFor(t, "web ready at v1", func() bool {
		var app api.App
		s.mustDo("GET", "/v1/apps/web", nil, 200, &app)
		return app.Status.Ready == 1 && len(app.Status.History) == 1
	})

	// v2 at 3 replicas: none of its pods ever becomes ready.
	s.mustDo("POST", "/v1/apply", rolloutManifest(3, "v2"), 200, nil)
	waitFor(t, "v2 rolled back to v1, then stopped at its deadline", func() bool {
		evs := appEvents(s, "web")
		return evs["RolledBack"] == 1 && evs["ProgressDeadlineExceeded"] >= 1
	})
	want := appVersion(t, s)
	if want != "v1" {
		t.Fatalf("after the automatic rollback the spec is at %s, want v1", want)
	}
	before := podSet(s)
	t.Logf("stopped at v1 with pods %v", before)

	for i := range 3 {
		s.kill(syscall.SIGKILL)
		s = startServer(t, serverOpts{dataDir: s.dataDir, runDir: s.runDir})
		// The first pass after a start looks at every app, one after the
		// other by name: once a pod of an app named after web exists, that
		// pass has decided about web.
		marker := fmt.Sprintf("zz-marker-%d", i)
		s.mustDo("POST", "/v1/apply", fmt.Sprintf(`{"apps":{%q:{"replicas":1,"containers":{"c":{"image":"busybox:1"}}}}}`, marker), 200, nil)
		waitFor(t, "the controller's first pass after restart "+fmt.Sprint(i+1), func() bool {
			return len(appPods(s, marker)) == 1
		})
		if n := appEvents(s, "web")["RolledBack"]; n != 1 {
			t.Fatalf("restart %d: %d RolledBack events, want 1 (a rollback was rolled back)", i+1, n)
		}
		if got := appVersion(t, s); got != want {
			t.Fatalf("restart %d: the spec went to %s, want it to stay at %s", i+1, got, want)
		}
		if after := podSet(s); !slices.Equal(after, before) {
			t.Fatalf("restart %d: web's pods changed from %v to %v", i+1, before, after)
		}
	}
	// The store says why: v1 is a rollback from v2, stopped at its
	// deadline. (Decoded on its own, so that this test also builds against
	// a tree without the fix, to show it fails there.)
	var app struct {
		Status struct {
			Rollout struct {
				TemplateHash     string `json:"template_hash"`
				RollbackOf       string `json:"rollback_of"`
				DeadlineExceeded bool   `json:"deadline_exceeded"`
			} `json:"rollout"`
		} `json:"status"`
	}
	s.mustDo("GET", "/v1/apps/web", nil, 200, &app)
	if ro := app.Status.Rollout; ro.RollbackOf == "" || !ro.DeadlineExceeded {
		t.Fatalf("stored rollout %+v, want a rollback past its deadline", ro)
	}
}

// appPods lists the app's pods.
func appPods(s *server, app string) []api.Pod {
	var pods struct{ Items []api.Pod }
	s.mustDo("GET", "/v1/pods?app="+app, nil, 200, &pods)
	return pods.Items
}

// podSet names web's pods that are not being deleted, with their template
// and node, sorted.
func podSet(s *server) []string {
	var out []string
	for _, p := range appPods(s, "web") {
		if p.Spec.Deleting == nil {
			out = append(out, p.Name+"@"+p.Spec.Node)
		}
	}
	slices.Sort(out)
	return out
}

// appEvents counts the app's events by reason (repeats included).
func appEvents(s *server, app string) map[string]int {
	var evs struct{ Items []api.Event }
	s.mustDo("GET", "/v1/events?object=apps/"+app, nil, 200, &evs)
	n := map[string]int{}
	for _, e := range evs.Items {
		n[e.Reason] += max(e.Count, 1)
	}
	return n
}

// appVersion returns the VERSION in web's spec.
func appVersion(t *testing.T, s *server) string {
	t.Helper()
	var app api.App
	s.mustDo("GET", "/v1/apps/web", nil, 200, &app)
	c := app.Spec.Containers["c"]
	if c == nil {
		t.Fatalf("web has no container c: %+v", app.Spec)
	}
	return strings.TrimSpace(c.Env["VERSION"])
}
