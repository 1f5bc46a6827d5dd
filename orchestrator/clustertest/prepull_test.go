package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestPrepullBeforeRollout: an app with `prepull = true` moves from image
// v1 to v2 only once both nodes hold v2. The registry (in this process,
// served on loopback inside each node's netns) refuses v2's manifest to
// node 1 until the test lets it: meanwhile node 0 has pulled, the app's
// status and `skiff describe app` say "pre-pulling 1/2 nodes" and name
// node 1 with the registry's words, an event PrePullFailed names it, and
// both v1 pods serve untouched. The server is killed (-9) and started
// again: the pre-pull goes on from the store (node 0 done, node 1's
// failures counted on), still held. Once node 1 may pull, its retry gets
// v2, the pre-pull is done, and no pod is created or stopped before the
// write that records it (by store revision, from watches opened while
// held, after a list that shows the pods untouched).
func TestPrepullBeforeRollout(t *testing.T) {
	c := New(t, Options{Nodes: 2})
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var refuse atomic.Bool
	refuse.Store(true)
	var mu sync.Mutex
	served := map[int]int{} // node → v2 manifests served
	port := serveInNodesEach(t, c, func(i int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/manifests/v2") {
				if i == 1 && refuse.Load() {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusNotFound)
					fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not on this node's mirror yet"}]}`)
					return
				}
				if r.Method == http.MethodGet {
					mu.Lock()
					served[i]++
					mu.Unlock()
				}
			}
			reg.ServeHTTP(w, r)
		})
	})
	host := serveOnHost(t, reg)

	// v1 is the demo image; v2 the same with one more small layer.
	v1, err := imagetest.BinaryImage(build(t).demoBin)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := imagetest.Layer([]imagetest.File{{Path: "etc/version", Data: []byte("v2 " + c.id + "\n")}})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := mutate.AppendLayers(v1, extra)
	if err != nil {
		t.Fatal(err)
	}
	if err := imagetest.Push(host+"/skt/demo:v1", v1); err != nil {
		t.Fatal(err)
	}
	if err := imagetest.Push(host+"/skt/demo:v2", v2); err != nil {
		t.Fatal(err)
	}
	ref := func(tag string) string { return fmt.Sprintf("127.0.0.1:%d/skt/demo:%s", port, tag) }
	manifest := func(tag string) string {
		m := strings.Replace(DemoManifest(2), `restart = "always"`, `restart = "always"

[app.web.update]
max_surge = 1
max_unavailable = 0
prepull = true`, 1)
		return strings.Replace(m, DemoRef, ref(tag), 1)
	}
	c.Apply(manifest("v1"))
	old := c.WaitAppReady("web", 2, 90*time.Second)
	// Both nodes are eligible wherever the v1 pods run (the scheduler
	// spreads them, one a node).
	t.Logf("v1 pods: %s", podSummary(old))
	oldNames := map[string]bool{}
	for _, p := range old {
		oldNames[p.Name] = true
	}
	n1 := c.Nodes[1].Name

	cl := c.Client(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Apply(manifest("v2"))

	// Node 0 has v2, node 1 fails: the update waits, and says why.
	heldAt := func(minFailures int) *api.App {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			a, err := cl.GetApp(ctx, "web")
			if err == nil {
				if pp := a.Status.Prepull; pp != nil && pp.PulledNodes() == 1 && len(pp.Nodes) == 2 {
					for _, n := range pp.Nodes {
						if n.Name == n1 && n.Failures >= minFailures && strings.Contains(n.Error, "MANIFEST_UNKNOWN") {
							return a
						}
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no pre-pull at 1/2 with %s failed %d times: %+v (%v)", n1, minFailures, a, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	held := heldAt(1)
	if !held.Status.Prepull.Done.IsZero() || held.Status.Updated != 0 {
		t.Fatalf("held app: %+v", held.Status)
	}
	started, failures := held.Status.Prepull.Started, 0
	for _, n := range held.Status.Prepull.Nodes {
		if n.Name == n1 {
			failures = n.Failures
		}
	}
	out, err := c.CLI(0, "describe", "app", "web")
	if err != nil || !strings.Contains(out, "pre-pulling 1/2 nodes; node "+n1+": ") || !strings.Contains(out, "MANIFEST_UNKNOWN") {
		t.Errorf("describe app web while held: %v\n%s", err, out)
	}
	out, err = c.CLI(0, "get", "events")
	if err != nil || !strings.Contains(out, "PrePullFailed") || !strings.Contains(out, "node "+n1+": ") {
		t.Errorf("get events while held: %v\n%s", err, out)
	}
	pods, err := c.ReadyPods("web", "web", 2)
	if err != nil {
		t.Fatalf("v1 pods while held: %v", err)
	}
	for _, p := range pods {
		if !oldNames[p.Name] {
			t.Fatalf("pod %s created while held: %s", p.Name, podSummary(pods))
		}
	}
	mu.Lock()
	if served[0] == 0 || served[1] != 0 {
		t.Errorf("v2 manifests served while held: node 0 %d, node 1 %d; want >0 and 0", served[0], served[1])
	}
	mu.Unlock()

	// kill -9 of the server (node 0: server and agent in one process; its
	// pods' containers live on). The one that starts reads the pre-pull
	// from the store: node 0 done, node 1's failures counted on from
	// where they were, still held.
	c.Kill(0)
	c.Start(0)
	held = heldAt(failures + 1)
	if pp := held.Status.Prepull; !pp.Done.IsZero() || !pp.Started.Equal(started) {
		t.Fatalf("after kill -9: %+v", pp)
	}
	t.Logf("after kill -9 of the server: %s", held.Status.Prepull.Summary())
	list, err := cl.ListPods(ctx, "web", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if !oldNames[p.Name] || p.Spec.Deleting != nil {
			t.Fatalf("pods changed while held: %s", podSummary(list.Items))
		}
	}

	// Watch pods and apps from now on: store revisions order what the
	// controller did.
	since := list.Revision
	podEvents, _ := cl.Watch(ctx, api.KindPod, since)
	appEvents, _ := cl.Watch(ctx, api.KindApp, since)
	var wmu sync.Mutex
	firstPodChange, doneRev := int64(0), int64(0)
	var donePP *api.PrepullStatus
	var firstChange string
	go func() {
		for ev := range podEvents {
			var p api.Pod
			if json.Unmarshal(ev.Object, &p) != nil || p.Spec.App != "web" {
				continue
			}
			change := ""
			switch {
			case !oldNames[p.Name]:
				change = "created " + p.Name
			case p.Spec.Deleting != nil || ev.Type == api.EventDelete:
				change = "stopping " + p.Name
			}
			wmu.Lock()
			if change != "" && firstPodChange == 0 {
				firstPodChange, firstChange = ev.Revision, change
			}
			wmu.Unlock()
		}
	}()
	go func() {
		for ev := range appEvents {
			var a api.App
			if json.Unmarshal(ev.Object, &a) != nil || a.Name != "web" {
				continue
			}
			wmu.Lock()
			if pp := a.Status.Prepull; pp != nil && !pp.Done.IsZero() && doneRev == 0 {
				doneRev, donePP = ev.Revision, pp
			}
			wmu.Unlock()
		}
	}()

	// Node 1 may pull now: its retry (5 or 10 s on) gets v2, then the update runs.
	refuse.Store(false)
	deadline := time.Now().Add(120 * time.Second)
	for {
		a, err := cl.GetApp(ctx, "web")
		if err == nil && a.Status.Updated == 2 && a.Status.Ready == 2 && a.Status.Replicas == 2 {
			if _, err := c.ReadyPods("web", "web", 2); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("update did not complete after node 1 could pull: %+v (%v)", a, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	mu.Lock()
	if served[1] == 0 {
		t.Errorf("node 1 never got v2's manifest")
	}
	// Node 0 fetched v2 once: the restarted server did not ask it again
	// (the store says it has it), and neither a node asked to ensure an
	// image it holds nor a pod's start goes back to the registry.
	if served[0] != 1 {
		t.Errorf("node 0 fetched v2's manifest %d times, want 1", served[0])
	}
	mu.Unlock()
	out, err = c.CLI(0, "images", "ls", "--nodes", "all")
	if err != nil || strings.Count(out, ref("v2")) != 2 {
		t.Errorf("images ls --nodes all: v2 not on both nodes: %v\n%s", err, out)
	}
	// The order, by store revision: the first pod of the update was
	// created, or an old one stopped, no earlier than the write that
	// recorded node 1's pull and the pre-pull done (the same pass may do
	// both: it writes in one transaction).
	waitFor(t, 10*time.Second, func() bool {
		wmu.Lock()
		defer wmu.Unlock()
		return firstPodChange != 0 && doneRev != 0
	})
	wmu.Lock()
	t.Logf("pre-pull done at revision %d; first pod change at %d (%s)", doneRev, firstPodChange, firstChange)
	if firstPodChange < doneRev {
		t.Errorf("a pod changed (%s, revision %d) before the pre-pull was done (revision %d)", firstChange, firstPodChange, doneRev)
	}
	if donePP.PulledNodes() != 2 {
		t.Errorf("pre-pull done without both nodes: %+v", donePP)
	}
	wmu.Unlock()
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
