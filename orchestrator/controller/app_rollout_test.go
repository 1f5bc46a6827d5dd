package controller

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

func TestAutoRollbackChoice(t *testing.T) {
	withHistory := func(auto bool, hashes ...string) *api.App {
		a := mkApp("web", 1)
		a.Spec.Update = &configs.UpdateSpec{AutoRollback: auto}
		for _, h := range hashes {
			a.Status.History = append(a.Status.History, api.AppRevision{TemplateHash: h})
		}
		return a
	}
	tests := []struct {
		name string
		app  *api.App
		ro   api.RolloutStatus
		want bool
	}{
		{name: "asked, with a previous template", app: withHistory(true, "h0", "h1"), ro: api.RolloutStatus{TemplateHash: "h1"}, want: true},
		{name: "not asked", app: withHistory(false, "h0", "h1"), ro: api.RolloutStatus{TemplateHash: "h1"}},
		{name: "no update section", app: mkApp("web", 1)},
		{name: "nothing to go back to", app: withHistory(true, "h1"), ro: api.RolloutStatus{TemplateHash: "h1"}},
		{name: "never a rollback", app: withHistory(true, "h1", "h0"), ro: api.RolloutStatus{TemplateHash: "h0", RollbackOf: "h1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := autoRollback(tt.app, &tt.ro); got != tt.want {
				t.Fatalf("autoRollback = %v, want %v", got, tt.want)
			}
		})
	}
}

// rolloutEnv runs app controller passes on a real store with a clock the
// test moves. A "restart" is a new controller on the same store: it knows
// only what the store holds, as after a kill -9 of the server.
type rolloutEnv struct {
	t     *testing.T
	st    *store.Store
	c     *controller
	clock time.Time
}

func newRolloutEnv(t *testing.T) *rolloutEnv {
	st := storetest.Open(t)
	e := &rolloutEnv{t: t, st: st, clock: t0}
	e.restart()
	// One node with room for two 400Mi pods.
	e.update(func(tx *store.Tx) error { return tx.Put(api.KindNode, mkNode("n1", true, 4000, 1000*mi, nil)) })
	return e
}

func (e *rolloutEnv) restart() {
	e.c = newController(e.st, Config{Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return e.clock }})
}

func (e *rolloutEnv) update(fn func(tx *store.Tx) error) {
	e.t.Helper()
	if _, err := e.st.Update(fn); err != nil {
		e.t.Fatal(err)
	}
}

// settle runs passes at the current time until one writes nothing.
func (e *rolloutEnv) settle() {
	e.t.Helper()
	for range 20 {
		rev := e.st.Rev()
		if _, err := e.c.sync(work{all: true}); err != nil {
			e.t.Fatal(err)
		}
		if e.st.Rev() == rev {
			return
		}
	}
	e.t.Fatal("passes at one time never stop writing")
}

func (e *rolloutEnv) app() *api.App {
	e.t.Helper()
	var a api.App
	if err := e.st.Get(api.KindApp, "web", &a); err != nil {
		e.t.Fatal(err)
	}
	return &a
}

// setApp writes web's replicas and VERSION (its template).
func (e *rolloutEnv) setApp(replicas int, version string) {
	e.update(func(tx *store.Tx) error {
		a := api.App{Meta: api.Meta{Name: "web"}}
		if err := tx.Get(api.KindApp, "web", &a); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		a.Spec.Replicas = &replicas
		a.Spec.Update = &configs.UpdateSpec{AutoRollback: true, ProgressDeadline: configs.Duration(10 * time.Second)}
		a.Spec.Containers = map[string]*configs.ContainerSpec{"main": {
			Image: "img", Memory: 400 * mi, Env: map[string]string{"VERSION": version},
		}}
		return tx.Put(api.KindApp, &a)
	})
}

func (e *rolloutEnv) version() string { return e.app().Spec.Containers["main"].Env["VERSION"] }

// markReady plays the agent: the bound pods of version become ready.
func (e *rolloutEnv) markReady(version string, most int) {
	e.update(func(tx *store.Tx) error {
		var ps []*api.Pod
		if err := tx.List(api.KindPod, &ps); err != nil {
			return err
		}
		for i, p := range ps {
			if most == 0 {
				break
			}
			if p.Spec.Node == "" || p.Spec.Deleting != nil || p.Status.Ready || p.Spec.Containers["main"].Env["VERSION"] != version {
				continue
			}
			p.Status = api.PodStatus{Phase: api.PodRunning, Ready: true, IP: fmt.Sprintf("10.88.0.%d", i+2)}
			if err := tx.Put(api.KindPod, p); err != nil {
				return err
			}
			most--
		}
		return nil
	})
}

// complete reports whether every pod of the app is of the current template
// and ready.
func complete(s api.AppStatus, n int) bool {
	return s.Replicas == n && s.Updated == n && s.Ready == n
}

func (e *rolloutEnv) events(reason string) int {
	var evs []api.Event
	if _, err := e.st.List(api.KindEvent, &evs); err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Reason == reason {
			n += max(ev.Count, 1)
		}
	}
	return n
}

// A rollback that cannot progress either stays where it is, however many
// times the controller restarts: it used to be rolled back in turn by the
// first controller that had not seen it happen (v1 → v2 → v1 ...).
func TestRollbackIsNotRolledBackAfterRestart(t *testing.T) {
	e := newRolloutEnv(t)
	e.setApp(1, "v1")
	e.settle()
	e.markReady("v1", -1)
	e.settle()
	v1 := e.app().Status.TemplateHash

	// v2 at 3 replicas never becomes ready; one of its pods fits beside
	// v1's, the others wait for room.
	e.setApp(3, "v2")
	e.settle()
	v2 := e.app().Status.TemplateHash
	e.clock = e.clock.Add(11 * time.Second)
	e.settle()
	if got := e.version(); got != "v1" || e.events("RolledBack") != 1 {
		t.Fatalf("after v2's deadline: spec at %s, %d RolledBack events; want v1 and 1", got, e.events("RolledBack"))
	}
	ro := e.app().Status.Rollout
	if ro == nil || ro.TemplateHash != v1 || ro.RollbackOf != v2 {
		t.Fatalf("rollout after the rollback: %+v, want template %s rolled back from %s", ro, v1, v2)
	}
	// v1 at 3 replicas has no room for its third pod: stuck, and stopped.
	e.clock = e.clock.Add(11 * time.Second)
	e.settle()
	if ro := e.app().Status.Rollout; ro == nil || !ro.DeadlineExceeded || e.events("ProgressDeadlineExceeded") != 1 {
		t.Fatalf("v1 past its deadline: rollout %+v, %d ProgressDeadlineExceeded events", ro, e.events("ProgressDeadlineExceeded"))
	}
	rev := e.app().Revision
	for i := range 3 {
		e.restart()
		e.clock = e.clock.Add(11 * time.Second)
		e.settle()
		if got := e.version(); got != "v1" || e.events("RolledBack") != 1 {
			t.Fatalf("restart %d: spec at %s, %d RolledBack events; want v1 and 1", i+1, got, e.events("RolledBack"))
		}
		// Nothing about the app is rewritten, nor reported again.
		if a := e.app(); a.Revision != rev || e.events("ProgressDeadlineExceeded") != 1 {
			t.Fatalf("restart %d: app rewritten (revision %d -> %d, status %+v) or event repeated (%d)",
				i+1, rev, a.Revision, a.Status.Rollout, e.events("ProgressDeadlineExceeded"))
		}
	}

	// A new template is an update again, which may be rolled back.
	e.setApp(1, "v3")
	e.settle()
	if ro := e.app().Status.Rollout; ro == nil || ro.RollbackOf != "" || ro.DeadlineExceeded {
		t.Fatalf("rollout of v3: %+v, want a fresh one", ro)
	}
}

// An update that makes progress slower than its deadline per pod, but
// within it from pod to pod, is not rolled back because the controller
// restarted and forgot when the last pod became ready.
func TestProgressSurvivesRestart(t *testing.T) {
	e := newRolloutEnv(t)
	e.update(func(tx *store.Tx) error {
		n := mkNode("n1", true, 4000, 4000*mi, nil)
		return tx.Put(api.KindNode, n)
	})
	e.setApp(3, "v1")
	e.settle()
	e.markReady("v1", -1)
	e.settle()
	e.setApp(3, "v2")
	e.settle()
	for i := 0; !complete(e.app().Status, 3); i++ {
		if i > 10 {
			t.Fatalf("update stuck: %+v", e.app().Status)
		}
		// 8s per pod, each within the 10s deadline of the one before.
		e.clock = e.clock.Add(8 * time.Second)
		e.markReady("v2", 1)
		e.restart()
		e.settle()
		if got := e.version(); got != "v2" {
			t.Fatalf("after %d pods of v2 and a restart: rolled back to %s", i+1, got)
		}
	}
	if ro := e.app().Status.Rollout; ro == nil || !ro.Progressed.IsZero() || ro.DeadlineExceeded {
		t.Fatalf("complete rollout: %+v", ro)
	}
	if n := e.events("RolledBack"); n != 0 {
		t.Fatalf("%d RolledBack events", n)
	}
}
