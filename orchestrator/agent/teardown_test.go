package agent

import (
	"context"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestTeardownOrder deletes a running, ready pod in the fake world and
// checks the order the design asks for: the pod leaves the endpoints and
// the node's load balancer first (reported not ready), then its containers
// stop (SIGTERM, the grace, SIGKILL), then its IP is freed and the object
// deleted. The world refuses to free the IP of a pod whose containers
// still run, and notes the pod's readiness and the load balancer's rules
// at the moment the containers are stopped. Needs no root.
func TestTeardownOrder(t *testing.T) {
	deleting := func(p *api.Pod) { now := time.Now(); p.Spec.Deleting = &now }
	tests := []struct {
		name string
		// setup changes the world before the teardown starts.
		setup func(w *world)
		// change is what happens to the pod's object: nil means it is
		// deleted from the server without the agent.
		change func(p *api.Pod)
		// drain is the load-balancer drain bound (Config.LBDrainTimeout).
		drain time.Duration

		wantGrace   time.Duration
		wantEndedBy map[string]string
		// wantInLBAtStop: the load balancer still listed the pod when it
		// was stopped (only when it never catches up).
		wantInLBAtStop bool
		// wantObject: the object is left (the agent deletes only objects
		// marked deleting).
		wantObject bool
	}{
		{
			name: "marked deleting", change: deleting, drain: 5 * time.Second,
			wantGrace: DefaultTerminationGrace, wantEndedBy: map[string]string{"app": "SIGTERM", "sidecar": "SIGTERM"},
		},
		{
			name:  "stubborn container gets SIGKILL after the pod's grace",
			setup: func(w *world) { w.ignoreTerm["web-1/sidecar"] = true },
			change: func(p *api.Pod) {
				deleting(p)
				p.Spec.TerminationGrace = configs.Duration(3 * time.Second)
			},
			drain:     5 * time.Second,
			wantGrace: 3 * time.Second, wantEndedBy: map[string]string{"app": "SIGTERM", "sidecar": "SIGKILL"},
		},
		{
			name: "load balancer catches up after a few syncs", change: deleting, drain: 5 * time.Second,
			setup:     func(w *world) { w.lbSyncEvery = 4 },
			wantGrace: DefaultTerminationGrace, wantEndedBy: map[string]string{"app": "SIGTERM", "sidecar": "SIGTERM"},
		},
		{
			// Only the not-ready report takes it out of the endpoints: a
			// pod that moved is not marked deleting.
			name: "bound to another node", drain: 5 * time.Second,
			change:    func(p *api.Pod) { p.Spec.Node = "other" },
			setup:     func(w *world) { w.lbSyncEvery = 2 },
			wantGrace: DefaultTerminationGrace, wantEndedBy: map[string]string{"app": "SIGTERM", "sidecar": "SIGTERM"},
			wantObject: true,
		},
		{
			name: "object deleted behind the agent's back", change: nil, drain: 5 * time.Second,
			wantGrace: DefaultTerminationGrace, wantEndedBy: map[string]string{"app": "SIGTERM", "sidecar": "SIGTERM"},
		},
		{
			// A stuck load balancer cannot keep a pod forever: the wait
			// is bounded by the drain timeout.
			name: "load balancer never catches up", change: deleting, drain: 100 * time.Millisecond,
			setup:     func(w *world) { w.lbStuck = true },
			wantGrace: DefaultTerminationGrace, wantEndedBy: map[string]string{"app": "SIGTERM", "sidecar": "SIGTERM"},
			wantInLBAtStop: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			w := newWorld("n1")
			w.registry["img:1"] = true
			ps := w.newPods(time.Now, tc.drain)
			pod := &api.Pod{Meta: api.Meta{Name: "web-1"}, Spec: api.PodSpec{Node: "n1", Restart: configs.RestartAlways,
				Containers: map[string]*configs.ContainerSpec{"app": {Image: "img:1"}, "sidecar": {Image: "img:1"}}}}
			w.put(pod)

			// The pod runs and is ready; the load balancer has caught up.
			wk := newPodWorker(ps, pod.Name, w.object(pod.Name))
			if done, err := wk.sync(ctx); done || err != nil {
				t.Fatalf("first sync: done %v, %v", done, err)
			}
			running := w.object(pod.Name)
			if !running.Status.Ready || running.Status.IP == "" {
				t.Fatalf("pod not running and ready after its first sync: %+v", running.Status)
			}
			ip := running.Status.IP
			w.syncLB()
			if !w.inLB(ip) {
				t.Fatalf("the load balancer does not list the ready pod %s", ip)
			}
			if tc.setup != nil {
				tc.setup(w)
			}

			if tc.change == nil {
				if err := w.DeletePod(ctx, pod.Name); err != nil {
					t.Fatal(err)
				}
				wk.update(nil)
			} else {
				tc.change(running)
				w.put(running)
				wk.update(w.object(pod.Name))
			}
			start := time.Now()
			done, err := wk.sync(ctx)
			if err != nil || !done {
				t.Fatalf("teardown: done %v, %v", done, err)
			}

			if len(w.stops) != 1 {
				t.Fatalf("pod stopped %d times, want once", len(w.stops))
			}
			seen := w.stops[0]
			if seen.objectReady {
				t.Error("the pod was still reported ready on the server when its containers were stopped")
			}
			if seen.inLB != tc.wantInLBAtStop {
				t.Errorf("the load balancer listed the pod when it was stopped: %v, want %v", seen.inLB, tc.wantInLBAtStop)
			}
			if tc.wantInLBAtStop && time.Since(start) < tc.drain {
				t.Errorf("stopped after %s, before the drain bound %s", time.Since(start), tc.drain)
			}
			if !seen.hadIP {
				t.Error("the IP was freed before the pod was stopped")
			}
			if seen.grace != tc.wantGrace {
				t.Errorf("grace %s, want %s", seen.grace, tc.wantGrace)
			}
			for name, want := range tc.wantEndedBy {
				if seen.endedBy[name] != want {
					t.Errorf("container %s ended by %q, want %q", name, seen.endedBy[name], want)
				}
			}
			if ips, _ := (fakeNet{w}).Pods(); ips[pod.Name] != nil {
				t.Errorf("the IP %s is still held", ips[pod.Name])
			}
			if len((fakeRuntime{w}).Pods()) != 0 {
				t.Error("the sandbox is left")
			}
			if got := w.object(pod.Name) != nil; got != tc.wantObject {
				t.Errorf("object left: %v, want %v", got, tc.wantObject)
			}
		})
	}
}
