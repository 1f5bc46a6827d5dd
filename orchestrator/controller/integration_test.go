package controller_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/controller"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// tlog sends log lines to the test's log.
type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

type env struct {
	t  *testing.T
	st *store.Store
}

// start opens a store in a temp dir and runs the controllers on it with
// short timings until the test ends.
func start(t *testing.T, tweak func(*controller.Config)) *env {
	t.Helper()
	st := storetest.Open(t)
	cfg := controller.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Resync = 200 * time.Millisecond
	cfg.NodeGrace = 1500 * time.Millisecond
	cfg.HeartbeatTimeout = 0
	cfg.MinSyncInterval = 5 * time.Millisecond
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- controller.RunConfig(ctx, st, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return &env{t: t, st: st}
}

func (e *env) update(fn func(tx *store.Tx) error) {
	e.t.Helper()
	if _, err := e.st.Update(fn); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) putNode(name string, ready bool, labels map[string]string, memory int64) {
	e.t.Helper()
	now := time.Now().UTC()
	e.update(func(tx *store.Tx) error {
		return tx.Put(api.KindNode, &api.Node{
			Meta: api.Meta{Name: name},
			Spec: api.NodeSpec{Labels: labels},
			Status: api.NodeStatus{
				Allocatable: api.Resources{MilliCPU: 4000, Memory: memory},
				Conditions:  []api.Condition{{Type: api.NodeReady, Status: ready, LastChange: now}},
			},
		})
	})
}

func (e *env) setReady(name string, ready bool) {
	e.t.Helper()
	e.update(func(tx *store.Tx) error {
		var n api.Node
		if err := tx.Get(api.KindNode, name, &n); err != nil {
			return err
		}
		n.Status.Conditions = []api.Condition{{Type: api.NodeReady, Status: ready, LastChange: time.Now().UTC()}}
		return tx.Put(api.KindNode, &n)
	})
}

func appSpec(replicas int, image string) configs.AppSpec {
	return configs.AppSpec{
		Replicas: &replicas,
		Containers: map[string]*configs.ContainerSpec{"main": {
			Image: image, Ports: map[string]int{"http": 8080}, CPU: 0.1, Memory: 16 << 20,
		}},
	}
}

func (e *env) pods() []*api.Pod {
	e.t.Helper()
	var ps []*api.Pod
	if _, err := e.st.List(api.KindPod, &ps); err != nil {
		e.t.Fatal(err)
	}
	return ps
}

// live returns the pods of app that are not being deleted.
func (e *env) live(app string) []*api.Pod {
	var out []*api.Pod
	for _, p := range e.pods() {
		if p.Spec.App == app && p.Spec.Deleting == nil {
			out = append(out, p)
		}
	}
	return out
}

// perNode counts live pods of app per node ("" for unbound).
func (e *env) perNode(app string) map[string]int {
	m := map[string]int{}
	for _, p := range e.live(app) {
		m[p.Spec.Node]++
	}
	return m
}

func (e *env) endpoints(name string) []api.Endpoint {
	var ep api.Endpoints
	if err := e.st.Get(api.KindEndpoints, name, &ep); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		e.t.Fatal(err)
	}
	return ep.Endpoints
}

func (e *env) events(object string) []api.Event {
	var evs []api.Event
	if _, err := e.st.List(api.KindEvent, &evs); err != nil {
		e.t.Fatal(err)
	}
	var out []api.Event
	for _, ev := range evs {
		if object == "" || ev.Object == object {
			out = append(out, ev)
		}
	}
	return out
}

// eventually polls cond until it returns "" or the deadline passes.
func (e *env) eventually(what string, timeout time.Duration, cond func() string) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		if last = cond(); last == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within %s: %s", what, timeout, last)
		}
		<-tick.C
	}
}

// markReady plays the agents: every bound live pod of app becomes Running
// and Ready with an IP.
func (e *env) markReady(app string) {
	e.t.Helper()
	e.update(func(tx *store.Tx) error {
		var ps []*api.Pod
		if err := tx.List(api.KindPod, &ps); err != nil {
			return err
		}
		for i, p := range ps {
			if p.Spec.App != app || p.Spec.Node == "" || p.Spec.Deleting != nil || p.Status.Ready {
				continue
			}
			p.Status = api.PodStatus{Phase: api.PodRunning, Ready: true, IP: fmt.Sprintf("10.88.%d.%d", len(p.Spec.Node), i+2)}
			if err := tx.Put(api.KindPod, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// quiet checks that, once converged, passes write nothing: no store event
// over several resync periods (a bounded observation window; there is no
// condition to wait for when asserting that nothing happens).
func (e *env) quiet(window time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	ch, err := e.st.Watch(ctx, "", e.st.Rev())
	if err != nil {
		e.t.Fatal(err)
	}
	for ev := range ch {
		e.t.Fatalf("converged state rewritten: %s %s %s", ev.Type, ev.Kind, ev.Object)
	}
}

func hasReason(evs []api.Event, reason string) bool {
	for _, ev := range evs {
		if ev.Reason == reason {
			return true
		}
	}
	return false
}

func wantPerNode(got map[string]int, want map[string]int) string {
	for k, v := range want {
		if got[k] != v {
			return fmt.Sprintf("pods per node %v, want %v", got, want)
		}
	}
	for k, v := range got {
		if want[k] != v {
			return fmt.Sprintf("pods per node %v, want %v", got, want)
		}
	}
	return ""
}

// TestReplicasAcrossNodes is the integration test: 6 replicas on 3
// nodes, 2 each; a node goes NotReady: its endpoints go at once, and after
// the grace its pods are replaced on the other two (3 each); then scale.
func TestReplicasAcrossNodes(t *testing.T) {
	e := start(t, nil)
	for _, n := range []string{"n1", "n2", "n3"} {
		e.putNode(n, true, nil, 4<<30)
	}
	e.update(func(tx *store.Tx) error {
		if err := tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: "web"}, Spec: appSpec(6, "echo:1")}); err != nil {
			return err
		}
		return tx.Create(api.KindService, &api.Service{Meta: api.Meta{Name: "web"},
			Spec: configs.ServiceSpec{App: "web", Port: 80, TargetPort: configs.PortRef{Name: "http"}}})
	})
	e.eventually("2 pods per node", 5*time.Second, func() string {
		return wantPerNode(e.perNode("web"), map[string]int{"n1": 2, "n2": 2, "n3": 2})
	})
	for _, p := range e.live("web") {
		if !strings.HasPrefix(p.Name, "web-"+p.Spec.TemplateHash[:5]+"-") || len(p.Name) != len("web-")+5+1+5 {
			t.Errorf("pod name %q: want web-<hash5>-<rand5>", p.Name)
		}
	}

	e.markReady("web")
	e.eventually("6 endpoints on port 8080", 5*time.Second, func() string {
		eps := e.endpoints("web")
		if len(eps) != 6 {
			return fmt.Sprintf("%d endpoints", len(eps))
		}
		for _, ep := range eps {
			if ep.Port != 8080 || ep.IP == "" {
				return fmt.Sprintf("endpoint %+v", ep)
			}
		}
		return ""
	})
	e.eventually("app status", 5*time.Second, func() string {
		var app api.App
		if err := e.st.Get(api.KindApp, "web", &app); err != nil {
			return err.Error()
		}
		if s := app.Status; s.Replicas != 6 || s.Ready != 6 || s.Updated != 6 || s.TemplateHash == "" || len(s.History) != 1 {
			return fmt.Sprintf("status %+v", s)
		}
		return ""
	})

	e.quiet(4 * 200 * time.Millisecond)

	// n3 fails: its endpoints go before the grace ends, while its pods
	// still exist.
	var onN3 []string
	for _, p := range e.live("web") {
		if p.Spec.Node == "n3" {
			onN3 = append(onN3, p.Name)
		}
	}
	e.setReady("n3", false)
	failed := time.Now()
	e.eventually("endpoints without n3", time.Second, func() string {
		for _, ep := range e.endpoints("web") {
			if ep.Node == "n3" {
				return "endpoint on n3: " + ep.Pod
			}
		}
		return ""
	})
	if time.Since(failed) < 1500*time.Millisecond {
		if got := e.perNode("web")["n3"]; got != 2 {
			t.Fatalf("n3 has %d pods before the grace ended, want 2", got)
		}
	}
	e.eventually("pods replaced on n1 and n2", 10*time.Second, func() string {
		return wantPerNode(e.perNode("web"), map[string]int{"n1": 3, "n2": 3})
	})
	if since := time.Since(failed); since < 1500*time.Millisecond {
		t.Fatalf("pods replaced after %s, before the grace", since)
	}
	if !hasReason(e.events("pods/"+onN3[0]), "NodeLost") {
		t.Errorf("events of a lost pod = %+v, want NodeLost", e.events("pods/"+onN3[0]))
	}
	if !hasReason(e.events("nodes/n3"), "NodeLost") {
		t.Errorf("events of the lost node = %+v, want NodeLost", e.events("nodes/n3"))
	}
	e.markReady("web")
	e.eventually("6 endpoints on n1 and n2", 5*time.Second, func() string {
		eps := e.endpoints("web")
		for _, ep := range eps {
			if ep.Node == "n3" {
				return "endpoint on n3"
			}
		}
		if len(eps) != 6 {
			return fmt.Sprintf("%d endpoints", len(eps))
		}
		return ""
	})

	// n3 returns: the replaced pods are gone for good, so one copy of each
	// replica runs.
	e.setReady("n3", true)
	e.eventually("still 6 pods after n3 returns", 5*time.Second, func() string {
		if n := len(e.live("web")); n != 6 {
			return fmt.Sprintf("%d pods", n)
		}
		for _, p := range e.pods() {
			for _, gone := range onN3 {
				if p.Name == gone {
					return "old pod " + gone + " still there"
				}
			}
		}
		return ""
	})

	// Scale down to 4: two pods are marked Deleting (their nodes are up)
	// and leave the endpoints at once.
	scale := func(n int) {
		e.update(func(tx *store.Tx) error {
			var app api.App
			if err := tx.Get(api.KindApp, "web", &app); err != nil {
				return err
			}
			app.Spec.Replicas = &n
			return tx.Put(api.KindApp, &app)
		})
	}
	scale(4)
	e.eventually("4 live pods, 4 endpoints", 5*time.Second, func() string {
		live, eps := len(e.live("web")), len(e.endpoints("web"))
		if live != 4 || eps != 4 {
			return fmt.Sprintf("%d live pods, %d endpoints", live, eps)
		}
		deleting := 0
		for _, p := range e.pods() {
			if p.Spec.Deleting != nil {
				deleting++
			}
		}
		if deleting != 2 {
			return fmt.Sprintf("%d pods deleting, want 2", deleting)
		}
		return ""
	})
	scale(7)
	e.eventually("7 live pods, all bound", 5*time.Second, func() string {
		m := e.perNode("web")
		total := 0
		for _, n := range m {
			total += n
		}
		if total != 7 || m[""] != 0 {
			return fmt.Sprintf("pods per node %v", m)
		}
		return ""
	})

	// Delete the app and the service: pods are marked Deleting and the
	// endpoints go.
	e.update(func(tx *store.Tx) error {
		if err := tx.Delete(api.KindApp, "web", 0); err != nil {
			return err
		}
		return tx.Delete(api.KindService, "web", 0)
	})
	e.eventually("app and endpoints gone", 5*time.Second, func() string {
		if n := len(e.live("web")); n != 0 {
			return fmt.Sprintf("%d live pods", n)
		}
		var ep api.Endpoints
		if err := e.st.Get(api.KindEndpoints, "web", &ep); !errors.Is(err, store.ErrNotFound) {
			return fmt.Sprintf("endpoints: %v", err)
		}
		return ""
	})
}

// TestUnschedulable checks the per-node reason event and that the pod is
// bound once a node that fits is added.
func TestUnschedulable(t *testing.T) {
	e := start(t, nil)
	e.putNode("small", true, map[string]string{"site": "x"}, 64<<20)
	e.putNode("elsewhere", true, map[string]string{"site": "y"}, 4<<30)
	spec := appSpec(1, "echo:1")
	spec.Containers["main"].Memory = 128 << 20
	spec.NodeSelector = map[string]string{"site": "x"}
	e.update(func(tx *store.Tx) error {
		return tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: "big"}, Spec: spec})
	})
	const want = "0/2 nodes fit: 1 insufficient memory, 1 selector mismatch"
	var pod string
	e.eventually("FailedScheduling event", 5*time.Second, func() string {
		ps := e.live("big")
		if len(ps) != 1 {
			return fmt.Sprintf("%d pods", len(ps))
		}
		pod = ps[0].Name
		for _, ev := range e.events("pods/" + pod) {
			if ev.Reason == "FailedScheduling" && ev.Message == want && ev.Type == api.EventWarning {
				return ""
			}
		}
		return fmt.Sprintf("events %+v", e.events("pods/"+pod))
	})
	e.putNode("roomy", true, map[string]string{"site": "x"}, 4<<30)
	e.eventually("bound to the new node", 5*time.Second, func() string {
		return wantPerNode(e.perNode("big"), map[string]int{"roomy": 1})
	})
	// The unschedulable pod waited; its event was recorded once per reason,
	// not once per pass.
	for _, ev := range e.events("pods/" + pod) {
		if ev.Reason == "FailedScheduling" && ev.Count > 1 {
			t.Errorf("FailedScheduling recorded %d times", ev.Count)
		}
	}
}

// TestPerNode runs one pod on each matching node, bound by the app
// controller, and follows nodes that come.
func TestPerNode(t *testing.T) {
	e := start(t, nil)
	e.putNode("a", true, map[string]string{"role": "edge"}, 4<<30)
	e.putNode("b", true, map[string]string{"role": "edge"}, 4<<30)
	e.putNode("c", true, map[string]string{"role": "core"}, 4<<30)
	spec := appSpec(0, "agent:1")
	spec.Replicas = nil
	spec.Mode = configs.ModePerNode
	spec.NodeSelector = map[string]string{"role": "edge"}
	e.update(func(tx *store.Tx) error {
		return tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: "agent"}, Spec: spec})
	})
	e.eventually("one pod on a and b", 5*time.Second, func() string {
		return wantPerNode(e.perNode("agent"), map[string]int{"a": 1, "b": 1})
	})
	e.putNode("d", true, map[string]string{"role": "edge"}, 4<<30)
	e.eventually("one pod on d too", 5*time.Second, func() string {
		return wantPerNode(e.perNode("agent"), map[string]int{"a": 1, "b": 1, "d": 1})
	})
	// A lost node's pod goes after the grace and is not placed elsewhere;
	// it comes back with the node.
	e.setReady("a", false)
	e.eventually("a's pod gone, none added", 10*time.Second, func() string {
		return wantPerNode(e.perNode("agent"), map[string]int{"b": 1, "d": 1})
	})
	e.setReady("a", true)
	e.eventually("a's pod back", 5*time.Second, func() string {
		return wantPerNode(e.perNode("agent"), map[string]int{"a": 1, "b": 1, "d": 1})
	})
	// Relabelled off the selector: its pod goes.
	e.putNode("b", true, map[string]string{"role": "core"}, 4<<30)
	e.eventually("b's pod retired", 5*time.Second, func() string {
		return wantPerNode(e.perNode("agent"), map[string]int{"a": 1, "d": 1})
	})
}

// TestFailedPodReplaced: a pod that ends Failed under restart "always" is
// retired (marked Deleting for its agent) and replaced; under "never" it
// stays.
func TestFailedPodReplaced(t *testing.T) {
	e := start(t, nil)
	e.putNode("n1", true, nil, 4<<30)
	never := appSpec(1, "job:1")
	never.Restart = configs.RestartNever
	e.update(func(tx *store.Tx) error {
		if err := tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: "web"}, Spec: appSpec(1, "echo:1")}); err != nil {
			return err
		}
		return tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: "job"}, Spec: never})
	})
	var first, job string
	e.eventually("pods bound", 5*time.Second, func() string {
		w, j := e.perNode("web"), e.perNode("job")
		if w["n1"] != 1 || j["n1"] != 1 {
			return fmt.Sprintf("web %v job %v", w, j)
		}
		first, job = e.live("web")[0].Name, e.live("job")[0].Name
		return ""
	})
	e.update(func(tx *store.Tx) error {
		for _, name := range []string{first, job} {
			var p api.Pod
			if err := tx.Get(api.KindPod, name, &p); err != nil {
				return err
			}
			p.Status = api.PodStatus{Phase: api.PodFailed, Reason: "Error"}
			if err := tx.Put(api.KindPod, &p); err != nil {
				return err
			}
		}
		return nil
	})
	e.eventually("failed web pod replaced", 5*time.Second, func() string {
		live := e.live("web")
		if len(live) != 1 || live[0].Name == first || live[0].Spec.Node != "n1" {
			return fmt.Sprintf("live pods %v", live)
		}
		var p api.Pod
		if err := e.st.Get(api.KindPod, first, &p); err != nil || p.Spec.Deleting == nil {
			return fmt.Sprintf("failed pod %s not marked deleting: %v", first, err)
		}
		return ""
	})
	if live := e.live("job"); len(live) != 1 || live[0].Name != job {
		t.Fatalf("restart never: pods %v, want the failed %s kept", live, job)
	}
}

// fakeAgents plays every node's agent until the test ends: bound pods
// become ready (unless bad says no), and pods marked Deleting are removed.
func fakeAgents(e *env, bad func(*api.Pod) bool) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	e.t.Cleanup(func() { cancel(); wg.Wait() })
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := e.st.Update(func(tx *store.Tx) error {
				var ps []*api.Pod
				if err := tx.List(api.KindPod, &ps); err != nil {
					return err
				}
				for i, p := range ps {
					switch {
					case p.Spec.Deleting != nil:
						if err := tx.Delete(api.KindPod, p.Name, p.Revision); err != nil {
							return err
						}
					case p.Spec.Node != "" && !p.Status.Ready && !bad(p):
						p.Status = api.PodStatus{Phase: api.PodRunning, Ready: true, IP: fmt.Sprintf("10.88.0.%d", i+2)}
						if err := tx.Put(api.KindPod, p); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				e.t.Errorf("fake agent: %v", err)
				return
			}
		}
	}()
}

func (e *env) getApp(name string) *api.App {
	e.t.Helper()
	var app api.App
	if err := e.st.Get(api.KindApp, name, &app); err != nil {
		e.t.Fatal(err)
	}
	return &app
}

func (e *env) setImage(name, image string) {
	e.t.Helper()
	e.update(func(tx *store.Tx) error {
		var app api.App
		if err := tx.Get(api.KindApp, name, &app); err != nil {
			return err
		}
		app.Spec.Containers = map[string]*configs.ContainerSpec{"main": {Image: image, Ports: map[string]int{"http": 8080}}}
		return tx.Put(api.KindApp, &app)
	})
}

// images returns the sorted images of app's live pods.
func (e *env) images(app string) []string {
	var out []string
	for _, p := range e.live(app) {
		out = append(out, p.Spec.Containers["main"].Image)
	}
	sort.Strings(out)
	return out
}

func allImage(got []string, n int, image string) string {
	if len(got) != n {
		return fmt.Sprintf("images %v, want %d of %s", got, n, image)
	}
	for _, g := range got {
		if g != image {
			return fmt.Sprintf("images %v, want %d of %s", got, n, image)
		}
	}
	return ""
}

// TestRollingUpdateAndRollback updates an app's image with agents that make
// pods ready, never dropping below the replicas ready, then rolls back.
func TestRollingUpdateAndRollback(t *testing.T) {
	e := start(t, nil)
	for _, n := range []string{"n1", "n2", "n3"} {
		e.putNode(n, true, nil, 4<<30)
	}
	fakeAgents(e, func(*api.Pod) bool { return false })
	e.update(func(tx *store.Tx) error {
		return tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: "web"}, Spec: appSpec(3, "echo:1")})
	})
	e.eventually("3 ready pods of echo:1", 5*time.Second, func() string {
		if s := e.getApp("web").Status; s.Ready != 3 {
			return fmt.Sprintf("status %+v", s)
		}
		return allImage(e.images("web"), 3, "echo:1")
	})
	e.setImage("web", "echo:2")
	minReady := 3
	e.eventually("3 ready pods of echo:2", 10*time.Second, func() string {
		s := e.getApp("web").Status
		minReady = min(minReady, s.Ready)
		if s.Ready != 3 || s.Updated != 3 || s.Replicas != 3 || len(s.History) != 2 {
			return fmt.Sprintf("status %+v", s)
		}
		return allImage(e.images("web"), 3, "echo:2")
	})
	if minReady < 3 {
		t.Errorf("ready pods fell to %d during the update (max_unavailable 0)", minReady)
	}
	e.update(controller.RollbackTx("web"))
	e.eventually("rolled back to echo:1", 10*time.Second, func() string {
		s := e.getApp("web").Status
		if s.Ready != 3 || s.Updated != 3 {
			return fmt.Sprintf("status %+v", s)
		}
		return allImage(e.images("web"), 3, "echo:1")
	})
	if h := e.getApp("web").Status.History; len(h) != 2 || h[1].Spec.Containers["main"].Image != "echo:1" {
		t.Fatalf("history after rollback: %+v", h)
	}
}

// TestAutoRollback updates to an image whose pods never become ready; after
// the progress deadline the app goes back to the previous template.
func TestAutoRollback(t *testing.T) {
	e := start(t, nil)
	e.putNode("n1", true, nil, 4<<30)
	e.putNode("n2", true, nil, 4<<30)
	fakeAgents(e, func(p *api.Pod) bool { return p.Spec.Containers["main"].Image == "bad" })
	spec := appSpec(2, "good")
	spec.Update = &configs.UpdateSpec{AutoRollback: true, ProgressDeadline: configs.Duration(time.Second)}
	e.update(func(tx *store.Tx) error {
		return tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: "web"}, Spec: spec})
	})
	e.eventually("2 ready pods", 5*time.Second, func() string {
		if s := e.getApp("web").Status; s.Ready != 2 {
			return fmt.Sprintf("status %+v", s)
		}
		return ""
	})
	e.setImage("web", "bad")
	e.eventually("a surge pod of the bad image", 5*time.Second, func() string {
		for _, img := range e.images("web") {
			if img == "bad" {
				return ""
			}
		}
		return fmt.Sprintf("images %v", e.images("web"))
	})
	e.eventually("rolled back to good", 10*time.Second, func() string {
		app := e.getApp("web")
		if img := app.Spec.Containers["main"].Image; img != "good" {
			return "spec image " + img
		}
		if s := app.Status; s.Ready != 2 || s.Updated != 2 {
			return fmt.Sprintf("status %+v", s)
		}
		return allImage(e.images("web"), 2, "good")
	})
	if !hasReason(e.events("apps/web"), "RolledBack") {
		t.Errorf("no RolledBack event: %+v", e.events("apps/web"))
	}
}

// TestHeartbeatTimeout: a Ready node that stops sending heartbeats is
// marked not ready by the controller.
func TestHeartbeatTimeout(t *testing.T) {
	e := start(t, func(c *controller.Config) { c.HeartbeatTimeout = 300 * time.Millisecond })
	e.update(func(tx *store.Tx) error {
		now := time.Now().UTC()
		return tx.Put(api.KindNode, &api.Node{Meta: api.Meta{Name: "n1"}, Status: api.NodeStatus{
			Conditions: []api.Condition{{Type: api.NodeReady, Status: true, LastHeartbeat: now, LastChange: now}},
		}})
	})
	e.eventually("node marked not ready", 5*time.Second, func() string {
		var n api.Node
		if err := e.st.Get(api.KindNode, "n1", &n); err != nil {
			return err.Error()
		}
		if n.Ready() || n.Status.Conditions[0].Reason != "NodeStatusUnknown" {
			return fmt.Sprintf("conditions %+v", n.Status.Conditions)
		}
		return ""
	})
}
