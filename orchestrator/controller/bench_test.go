package controller

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// BenchmarkSchedule places one pod among 100 nodes that hold 2000 pods.
func BenchmarkSchedule(b *testing.B) {
	var nodes []*api.Node
	for i := range 100 {
		nodes = append(nodes, mkNode(fmt.Sprintf("n%03d", i), true, 64000, 256<<30, nil))
	}
	var pods []*api.Pod
	for i := range 2000 {
		pods = append(pods, mkPod(fmt.Sprintf("p%d", i), fmt.Sprintf("app%d", i%50), onNode(fmt.Sprintf("n%03d", i%100)), requests(0.1, 16*mi)))
	}
	cl := newCluster(nodes, pods, func(*api.Node) bool { return true })
	p := mkPod("new", "app7", requests(0.1, 16*mi))
	b.ResetTimer()
	for b.Loop() {
		if n, why := cl.schedule(p); n == "" {
			b.Fatal(why)
		}
	}
}

// BenchmarkSyncSteady is one full pass (resync) over a converged store of
// 10 nodes, 50 apps of 10 replicas and 50 services: what every resync costs
// when nothing changed. BenchmarkListPods on the same store is the
// baseline: one read of every pod.
func BenchmarkSyncSteady(b *testing.B) {
	st, c := convergedStore(b)
	rev := st.Rev()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.sync(work{all: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st.Rev() != rev {
		b.Fatalf("a steady pass wrote: revision %d → %d", rev, st.Rev())
	}
}

// BenchmarkListPods lists the 500 pods of BenchmarkSyncSteady's store.
func BenchmarkListPods(b *testing.B) {
	st, _ := convergedStore(b)
	b.ResetTimer()
	for b.Loop() {
		var ps []*api.Pod
		if _, err := st.List(api.KindPod, &ps); err != nil || len(ps) != 500 {
			b.Fatal(len(ps), err)
		}
	}
}

// convergedStore makes BenchmarkSyncSteady's store and a controller on it,
// and runs passes until the state is converged.
func convergedStore(b *testing.B) (*store.Store, *controller) {
	st := storetest.Open(b)
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	c := newController(st, cfg)
	_, err := st.Update(func(tx *store.Tx) error {
		for i := range 10 {
			if err := tx.Put(api.KindNode, mkNode(fmt.Sprintf("n%d", i), true, 16000, 64<<30, nil)); err != nil {
				return err
			}
		}
		for i := range 50 {
			name := fmt.Sprintf("app%d", i)
			if err := tx.Create(api.KindApp, mkApp(name, 10)); err != nil {
				return err
			}
			svc := &api.Service{Meta: api.Meta{Name: name}, Spec: configs.ServiceSpec{App: name, Port: 80}}
			if err := tx.Create(api.KindService, svc); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.sync(work{all: true}); err != nil {
		b.Fatal(err)
	}
	_, err = st.Update(func(tx *store.Tx) error {
		var ps []*api.Pod
		if err := tx.List(api.KindPod, &ps); err != nil {
			return err
		}
		for i, p := range ps {
			p.Status = api.PodStatus{Phase: api.PodRunning, Ready: true, IP: fmt.Sprintf("10.88.%d.%d", i/200, i%200+2)}
			if err := tx.Put(api.KindPod, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.sync(work{all: true}); err != nil {
		b.Fatal(err)
	}
	return st, c
}
