package controller

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// fakeLoad is a LoadSource whose app load the test sets.
type fakeLoad struct {
	mu sync.Mutex
	l  map[string]api.AppLoad
}

func (f *fakeLoad) set(app string, l api.AppLoad) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.l[app] = l
}

func (f *fakeLoad) App(app string, services []string) api.AppLoad {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(services) == 0 && f.l[app].RPS > 0 {
		return api.AppLoad{} // rates come through the app's services only
	}
	return f.l[app]
}

// TestAutoscaleThroughStore drives the autoscaler's passes on a real store
// with a fake clock and load: the decision lands in the app's status with
// an event naming its inputs, the app controller makes that many pods, an
// apply of the spec keeps it, the scale down waits for the window, and a
// new controller (a server restart) starts from the stored count and
// decides nothing until it has a window of data.
func TestAutoscaleThroughStore(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "state.db")
	st, err := store.Open(dbPath, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	load := &fakeLoad{l: map[string]api.AppLoad{}}
	newCtl := func(st *store.Store) *controller {
		cfg := DefaultConfig()
		cfg.Now = func() time.Time { return now }
		cfg.Load = load
		cfg.fill()
		return newController(st, cfg)
	}
	c := newCtl(st)
	app := mkApp("web", 1)
	app.Spec.Autoscale = &configs.AutoscaleSpec{Min: 1, Max: 5, TargetRPS: 100, ScaleDownWindow: configs.Duration(10 * time.Second)}
	_, err = st.Update(func(tx *store.Tx) error {
		if err := tx.Put(api.KindNode, mkNode("n1", true, 8000, 8<<30, nil)); err != nil {
			return err
		}
		if err := tx.Put(api.KindApp, app); err != nil {
			return err
		}
		return tx.Put(api.KindService, &api.Service{Meta: api.Meta{Name: "web"}, Spec: configs.ServiceSpec{App: "web", Port: 80}})
	})
	if err != nil {
		t.Fatal(err)
	}
	scalers := map[string]*appScaler{}
	pass := func(c *controller, d time.Duration) *api.App {
		t.Helper()
		now = now.Add(d)
		if _, err := c.autoscalePass(scalers); err != nil {
			t.Fatal(err)
		}
		if _, err := c.sync(work{all: true}); err != nil {
			t.Fatal(err)
		}
		var a api.App
		if err := st.Get(api.KindApp, "web", &a); err != nil {
			t.Fatal(err)
		}
		return &a
	}
	pods := func() int {
		t.Helper()
		var ps []api.Pod
		if _, err := st.List(api.KindPod, &ps); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range ps {
			if p.Spec.Deleting == nil {
				n++
			}
		}
		return n
	}

	load.set("web", api.AppLoad{RPS: 0, Nodes: 1})
	if a := pass(c, time.Second); a.Status.Autoscale == nil || a.Status.Autoscale.Desired != 1 {
		t.Fatalf("first pass: autoscale status %+v, want desired 1", a.Status.Autoscale)
	}
	// 3x one replica's target: 3 replicas on the next pass.
	load.set("web", api.AppLoad{RPS: 300, Nodes: 1})
	a := pass(c, time.Second)
	if got := a.Status.Autoscale.Desired; got != 3 {
		t.Fatalf("under 300 req/s: desired %d, want 3", got)
	}
	if n := pods(); n != 3 {
		t.Fatalf("%d pods, want 3", n)
	}
	var evs []api.Event
	if _, err := st.List(api.KindEvent, &evs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		found = found || e.Reason == "Autoscaled" && e.Message == "scaled 1 → 3: 300 req/s over 1 node, target 100/replica"
	}
	if !found {
		t.Errorf("no Autoscaled event with the inputs among %+v", evs)
	}

	// An apply of the manifest (replicas = 1) keeps the autoscaler's count.
	_, err = st.Update(func(tx *store.Tx) error {
		var cur api.App
		if err := tx.Get(api.KindApp, "web", &cur); err != nil {
			return err
		}
		cur.Spec.Replicas = intp(1)
		return tx.Put(api.KindApp, &cur)
	})
	if err != nil {
		t.Fatal(err)
	}
	if a := pass(c, time.Second); a.Status.Autoscale.Desired != 3 || pods() != 3 {
		t.Fatalf("after an apply with replicas 1: desired %d, %d pods; want 3, 3", a.Status.Autoscale.Desired, pods())
	}

	// Steady load inside the band: no change, no write.
	load.set("web", api.AppLoad{RPS: 320, Nodes: 1})
	for range 5 {
		a = pass(c, time.Second)
	}
	if a.Status.Autoscale.Desired != 3 || len(a.Status.Autoscale.Decisions) != 1 {
		t.Fatalf("steady load in the band: %+v", a.Status.Autoscale)
	}

	// Load stops: nothing for 10 s, then back to min.
	load.set("web", api.AppLoad{RPS: 0, Nodes: 1})
	for i := 0; i < 9; i++ {
		if a := pass(c, time.Second); a.Status.Autoscale.Desired != 3 {
			t.Fatalf("%ds after the load stopped: desired %d, want 3 until the window passes", i+1, a.Status.Autoscale.Desired)
		}
	}
	// The last 3 left the window by now+few seconds.
	var downAt int
	for i := 10; i < 20; i++ {
		if a := pass(c, time.Second); a.Status.Autoscale.Desired == 1 {
			downAt = i
			break
		}
	}
	if downAt == 0 {
		t.Fatal("never scaled down")
	}
	if n := pods(); n != 1 {
		t.Errorf("%d pods after scaling down, want 1", n)
	}
	t.Logf("scaled down %ds after the load stopped (window 10s)", downAt)

	// A reported but partial load (counters reset) decides nothing.
	load.set("web", api.AppLoad{RPS: 100000, Nodes: 1, Partial: true})
	if a := pass(c, time.Second); a.Status.Autoscale.Desired != 1 {
		t.Errorf("a partial report scaled to %d", a.Status.Autoscale.Desired)
	}

	// Up again, then a new controller (a restart): it starts from the
	// stored count and does not scale down before a window of its own data.
	load.set("web", api.AppLoad{RPS: 500, Nodes: 1})
	if a := pass(c, time.Second); a.Status.Autoscale.Desired != 5 {
		t.Fatalf("desired %d, want 5", a.Status.Autoscale.Desired)
	}
	st.Close()
	st, err = store.Open(dbPath, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c = newCtl(st)
	scalers = map[string]*appScaler{}
	load.set("web", api.AppLoad{RPS: 0, Nodes: 1})
	for i := 0; i < 9; i++ {
		a := pass(c, time.Second)
		if a.Status.Autoscale.Desired != 5 {
			t.Fatalf("%ds after a restart: desired %d, want 5 (no window of data yet)", i+1, a.Status.Autoscale.Desired)
		}
	}
	a = pass(c, 2*time.Second)
	if a.Status.Autoscale.Desired != 1 {
		t.Errorf("a window after the restart: desired %d, want 1", a.Status.Autoscale.Desired)
	}
	last := a.Status.Autoscale.Decisions[len(a.Status.Autoscale.Decisions)-1]
	if !strings.HasPrefix(last.Message, "scaled 5 → 1: 0 req/s") {
		t.Errorf("last decision %q", last.Message)
	}
}

// TestAutoscalePassIdle: a pass with no autoscaled app and no autoscale
// state reports nothing to do (runAutoscaler then waits for the store to
// change); an autoscaled app, or state left to clear, is work.
func TestAutoscalePassIdle(t *testing.T) {
	st := storetest.Open(t)
	cfg := DefaultConfig()
	cfg.Load = &fakeLoad{l: map[string]api.AppLoad{}}
	cfg.fill()
	c := newController(st, cfg)
	put := func(app *api.App) {
		t.Helper()
		if _, err := st.Update(func(tx *store.Tx) error { return tx.Put(api.KindApp, app) }); err != nil {
			t.Fatal(err)
		}
	}
	pass := func() bool {
		t.Helper()
		active, err := c.autoscalePass(map[string]*appScaler{})
		if err != nil {
			t.Fatal(err)
		}
		return active
	}
	if pass() {
		t.Error("an empty store: a pass found work")
	}
	app := mkApp("web", 1)
	put(app)
	if pass() {
		t.Error("an app without autoscale: a pass found work")
	}
	app.Spec.Autoscale = &configs.AutoscaleSpec{Min: 1, Max: 5, TargetRPS: 100}
	put(app)
	if !pass() {
		t.Error("an autoscaled app: the pass found no work")
	}
	var got api.App
	if err := st.Get(api.KindApp, "web", &got); err != nil || got.Status.Autoscale == nil {
		t.Fatalf("the pass did not start the app's autoscale state: %v %+v", err, got.Status)
	}
	got.Spec.Autoscale = nil
	put(&got)
	if !pass() {
		t.Error("autoscale state to clear: the pass found no work")
	}
	if pass() {
		t.Error("after the state was cleared: a pass found work")
	}
}
