package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// fakePuller models the nodes' image stores: a pull on a node succeeds
// unless the test made that node fail, and is counted.
type fakePuller struct {
	mu    sync.Mutex
	fail  map[string]error
	calls map[string]int // node → EnsureImage calls
}

func (f *fakePuller) EnsureImage(_ context.Context, node, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[node]++
	if err := f.fail[node]; err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

func (f *fakePuller) setFail(node string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[node] = err
}

func (f *fakePuller) count(node string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[node]
}

// prepullEnv is a rolloutEnv whose controller pre-pulls through a
// fakePuller, with nodes n1 and n2.
type prepullEnv struct {
	*rolloutEnv
	puller *fakePuller
}

func newPrepullEnv(t *testing.T) *prepullEnv {
	e := &prepullEnv{rolloutEnv: newRolloutEnv(t), puller: &fakePuller{fail: map[string]error{}, calls: map[string]int{}}}
	e.update(func(tx *store.Tx) error {
		for _, n := range []string{"n1", "n2"} {
			if err := tx.Put(api.KindNode, mkNode(n, true, 4000, 4000*mi, map[string]string{"site": "a"})); err != nil {
				return err
			}
		}
		return nil
	})
	e.restart()
	return e
}

// restart is a new controller on the same store, as after kill -9.
func (e *prepullEnv) restart() {
	if e.c != nil && e.c.pulls != nil {
		e.c.pulls.wait()
	}
	e.c = newController(e.st, Config{Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return e.clock }, Images: e.puller})
}

// run settles, lets the pulls started end, and settles again, until a
// round starts no pull and writes nothing.
func (e *prepullEnv) run() {
	e.t.Helper()
	for range 20 {
		rev := e.st.Rev()
		e.settle()
		e.c.pulls.wait()
		e.settle()
		if e.st.Rev() == rev {
			return
		}
	}
	e.t.Fatal("pre-pull rounds never settle")
}

// setApp writes web: replicas, VERSION (its template, and its image
// "img:VERSION"), prepull.
func (e *prepullEnv) setApp(replicas int, version string, prepull bool) {
	e.update(func(tx *store.Tx) error {
		a := api.App{Meta: api.Meta{Name: "web"}}
		if err := tx.Get(api.KindApp, "web", &a); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		a.Spec.Replicas = &replicas
		a.Spec.Update = &configs.UpdateSpec{AutoRollback: true, ProgressDeadline: configs.Duration(10 * time.Second), Prepull: prepull}
		a.Spec.Containers = map[string]*configs.ContainerSpec{"main": {
			Image: "img:" + version, Memory: 100 * mi, Env: map[string]string{"VERSION": version},
		}}
		return tx.Put(api.KindApp, &a)
	})
}

// pods counts the app's pods of version: alive, and being deleted.
func (e *prepullEnv) pods(version string) (alive, deleting int) {
	e.t.Helper()
	var ps []*api.Pod
	if _, err := e.st.List(api.KindPod, &ps); err != nil {
		e.t.Fatal(err)
	}
	for _, p := range ps {
		if p.Spec.Containers["main"].Env["VERSION"] != version {
			continue
		}
		if p.Spec.Deleting != nil {
			deleting++
		} else {
			alive++
		}
	}
	return alive, deleting
}

func (e *prepullEnv) setNode(name string, fn func(n *api.Node)) {
	e.update(func(tx *store.Tx) error {
		var n api.Node
		if err := tx.Get(api.KindNode, name, &n); err != nil {
			return err
		}
		fn(&n)
		return tx.Put(api.KindNode, &n)
	})
}

// startV1 runs web v1 at replicas, ready, and applies v2.
func (e *prepullEnv) startV1ThenV2(replicas int) {
	e.t.Helper()
	e.setApp(replicas, "v1", true)
	e.run()
	e.markReady("v1", -1)
	e.run()
	if a, _ := e.pods("v1"); a != replicas || e.app().Status.Prepull != nil {
		e.t.Fatalf("v1: %d pods, prepull %+v; want %d and none (a new app is not pre-pulled)", a, e.app().Status.Prepull, replicas)
	}
	e.setApp(replicas, "v2", true)
}

// The update waits for every eligible node to have the new image; a node
// that fails is named in the status and an event and tried again with
// back-off; a restart of the controller keeps what was decided and pulls
// again only where no pull succeeded; the update starts once every node
// has the image, and its progress deadline counts from then.
func TestPrepullHoldsUpdateUntilEveryNodeHasTheImages(t *testing.T) {
	e := newPrepullEnv(t)
	e.startV1ThenV2(2)
	e.puller.setFail("n2", errors.New("registry answered 503"))
	e.run()

	a := e.app()
	pp := a.Status.Prepull
	if pp == nil || pp.PulledNodes() != 1 || len(pp.Nodes) != 2 || !pp.Done.IsZero() {
		t.Fatalf("prepull after n2 failed: %+v", pp)
	}
	n2 := pp.Nodes[1]
	if n2.Name != "n2" || n2.Pulled || n2.Failures != 1 || !strings.Contains(n2.Error, "registry answered 503") || !n2.RetryAt.Equal(e.clock.Add(5*time.Second)) {
		t.Fatalf("n2's entry: %+v", n2)
	}
	if s := pp.Summary(); !strings.HasPrefix(s, "pre-pulling 1/2 nodes; node n2: pull img:v2: registry answered 503 (1 failures, retry at") {
		t.Fatalf("summary: %q", s)
	}
	if e.events("PrePullFailed") != 1 {
		t.Fatalf("%d PrePullFailed events, want 1", e.events("PrePullFailed"))
	}
	if alive, del := e.pods("v2"); alive != 0 || del != 0 {
		t.Fatalf("v2 pods while pre-pulling: %d, %d deleting", alive, del)
	}
	if alive, del := e.pods("v1"); alive != 2 || del != 0 {
		t.Fatalf("v1 pods while pre-pulling: %d, %d deleting; want 2 and none", alive, del)
	}
	if a.Status.Updated != 0 || a.Status.Ready != 2 {
		t.Fatalf("status while pre-pulling: %+v", a.Status)
	}

	// kill -9: a new controller knows only the store. Before n2's retry
	// time nothing is pulled (n1 is not asked again), nothing changes.
	n1Calls := e.puller.count("n1")
	rev := e.st.Rev()
	e.restart()
	e.clock = e.clock.Add(4 * time.Second)
	e.run()
	if e.puller.count("n1") != n1Calls || e.puller.count("n2") != 1 || e.st.Rev() != rev {
		t.Fatalf("after a restart before the retry: n1 %d calls (was %d), n2 %d; store %d -> %d",
			e.puller.count("n1"), n1Calls, e.puller.count("n2"), rev, e.st.Rev())
	}
	// The retry fails again: 10 s more.
	e.clock = e.clock.Add(time.Second)
	e.run()
	if pp := e.app().Status.Prepull; pp.Nodes[1].Failures != 2 || !pp.Nodes[1].RetryAt.Equal(e.clock.Add(10*time.Second)) {
		t.Fatalf("second failure: %+v", pp.Nodes[1])
	}
	// Well past the progress deadline of the template's arrival (10 s):
	// the update has not started, so nothing is rolled back.
	e.puller.setFail("n2", nil)
	e.clock = e.clock.Add(10 * time.Second)
	e.run()
	a = e.app()
	if pp := a.Status.Prepull; pp.Done.IsZero() || pp.PulledNodes() != 2 || e.events("PrePulled") != 1 {
		t.Fatalf("after n2 pulled: %+v, %d PrePulled events", pp, e.events("PrePulled"))
	}
	if e.version() != "v2" || e.events("RolledBack") != 0 {
		t.Fatalf("rolled back (spec at %s, %d events): the deadline ran while pre-pulling", e.version(), e.events("RolledBack"))
	}
	if ro := a.Status.Rollout; ro == nil || !ro.Progressed.Equal(a.Status.Prepull.Done) {
		t.Fatalf("rollout %+v: its deadline should count from the pre-pull's end %v", ro, a.Status.Prepull.Done)
	}
	if alive, _ := e.pods("v2"); alive == 0 {
		t.Fatal("no v2 pod once the pre-pull is done")
	}
	for range 4 {
		e.markReady("v2", -1)
		e.run()
	}
	if !complete(e.app().Status, 2) {
		t.Fatalf("update not complete: %+v", e.app().Status)
	}
	// Done is final: a node that comes later, or a restart, pulls nothing.
	calls := e.puller.count("n1") + e.puller.count("n2")
	e.restart()
	e.run()
	if got := e.puller.count("n1") + e.puller.count("n2"); got != calls {
		t.Fatalf("pulls after done: %d, was %d", got, calls)
	}
}

// While the pre-pull holds the update, the app keeps its old template: a
// failed pod is replaced by one of the old template, and a scale up too.
func TestPrepullHoldKeepsOldTemplate(t *testing.T) {
	e := newPrepullEnv(t)
	e.startV1ThenV2(2)
	e.puller.setFail("n1", errors.New("no route to host"))
	e.puller.setFail("n2", errors.New("no route to host"))
	e.run()
	v1Hash := e.app().Status.Prepull.From
	e.update(func(tx *store.Tx) error {
		var ps []*api.Pod
		if err := tx.List(api.KindPod, &ps); err != nil {
			return err
		}
		ps[0].Status = api.PodStatus{Phase: api.PodFailed}
		return tx.Put(api.KindPod, ps[0])
	})
	e.setApp(3, "v2", true)
	e.run()
	if alive, _ := e.pods("v2"); alive != 0 {
		t.Fatalf("%d v2 pods while held", alive)
	}
	alive, _ := e.pods("v1")
	var ps []*api.Pod
	if _, err := e.st.List(api.KindPod, &ps); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Spec.TemplateHash != v1Hash {
			t.Fatalf("pod %s of template %s while held at %s", p.Name, p.Spec.TemplateHash, v1Hash)
		}
	}
	if alive != 3 {
		t.Fatalf("%d v1 pods alive while held; want 3 (failed one replaced, one more for the scale)", alive)
	}
	if a := e.app(); a.Status.TemplateHash == v1Hash || a.Status.Updated != 0 || a.Status.Replicas != 3 {
		t.Fatalf("status while held: %+v", a.Status)
	}
}

// Which nodes count: Ready, schedulable, matching the new template's
// selector. A failing node that goes NotReady no longer holds the update.
func TestPrepullEligibleNodes(t *testing.T) {
	e := newPrepullEnv(t)
	e.setNode("n1", func(n *api.Node) { n.Spec.Labels = nil }) // newRolloutEnv's, unlabelled
	e.update(func(tx *store.Tx) error {
		if err := tx.Put(api.KindNode, mkNode("down", false, 4000, 4000*mi, map[string]string{"site": "a"})); err != nil {
			return err
		}
		n := mkNode("cordoned", true, 4000, 4000*mi, map[string]string{"site": "a"})
		n.Spec.Unschedulable = true
		if err := tx.Put(api.KindNode, n); err != nil {
			return err
		}
		return tx.Put(api.KindNode, mkNode("n3", true, 4000, 4000*mi, map[string]string{"site": "a"}))
	})
	e.startV1ThenV2(1)
	e.update(func(tx *store.Tx) error {
		var a api.App
		if err := tx.Get(api.KindApp, "web", &a); err != nil {
			return err
		}
		a.Spec.NodeSelector = map[string]string{"site": "a"}
		return tx.Put(api.KindApp, &a)
	})
	e.puller.setFail("n3", errors.New("disk full"))
	e.run()
	pp := e.app().Status.Prepull
	var got []string
	for _, n := range pp.Nodes {
		got = append(got, n.Name)
	}
	if strings.Join(got, ",") != "n2,n3" || !pp.Done.IsZero() {
		t.Fatalf("eligible nodes %v (want n2,n3), done %v", got, pp.Done)
	}
	if e.puller.count("down")+e.puller.count("cordoned")+e.puller.count("n1") != 0 {
		t.Fatal("a node that is not eligible was asked to pull")
	}
	e.setNode("n3", func(n *api.Node) { n.Status.Conditions[0].Status = false })
	e.run()
	if pp := e.app().Status.Prepull; pp.Done.IsZero() || len(pp.Nodes) != 1 {
		t.Fatalf("n3 NotReady: prepull %+v, want done on n2 alone", pp)
	}
	if alive, _ := e.pods("v2"); alive != 1 {
		t.Fatalf("%d v2 pods after the pre-pull", alive)
	}
}

// No pre-pull: without the key, for a rollback, or when turned off while
// it waits (the update then starts).
func TestPrepullNotWanted(t *testing.T) {
	t.Run("without the key", func(t *testing.T) {
		e := newPrepullEnv(t)
		e.setApp(1, "v1", false)
		e.run()
		e.markReady("v1", -1)
		e.run()
		e.setApp(1, "v2", false)
		e.run()
		if pp := e.app().Status.Prepull; pp != nil || e.puller.count("n1")+e.puller.count("n2") != 0 {
			t.Fatalf("prepull %+v", pp)
		}
		if alive, _ := e.pods("v2"); alive != 1 {
			t.Fatalf("%d v2 pods: the update did not start", alive)
		}
	})
	t.Run("turned off while waiting", func(t *testing.T) {
		e := newPrepullEnv(t)
		e.startV1ThenV2(1)
		e.puller.setFail("n2", errors.New("timeout"))
		e.run()
		if !e.app().Status.Prepull.Pending(e.app().Status.TemplateHash) {
			t.Fatal("not pending")
		}
		e.setApp(1, "v2", false)
		e.run()
		if pp := e.app().Status.Prepull; pp != nil || e.events("PrePullSkipped") != 1 {
			t.Fatalf("prepull %+v, %d PrePullSkipped", pp, e.events("PrePullSkipped"))
		}
		if alive, _ := e.pods("v2"); alive != 1 {
			t.Fatalf("%d v2 pods: the update did not start", alive)
		}
	})
	t.Run("a rollback", func(t *testing.T) {
		e := newPrepullEnv(t)
		e.startV1ThenV2(1)
		e.run()
		if pp := e.app().Status.Prepull; pp == nil || pp.Done.IsZero() {
			t.Fatalf("v2 prepull %+v", pp)
		}
		calls := e.puller.count("n1") + e.puller.count("n2")
		e.update(RollbackTx("web"))
		e.run()
		if pp := e.app().Status.Prepull; pp != nil || e.puller.count("n1")+e.puller.count("n2") != calls {
			t.Fatalf("rollback pre-pulled: %+v", pp)
		}
	})
}
