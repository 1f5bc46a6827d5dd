package controller

import (
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

const mi = 1 << 20

// mkNode returns a node with the given readiness, cpu (milli) and memory.
func mkNode(name string, ready bool, milliCPU, memory int64, labels map[string]string) *api.Node {
	return &api.Node{
		Meta: api.Meta{Name: name},
		Spec: api.NodeSpec{Labels: labels},
		Status: api.NodeStatus{
			Allocatable: api.Resources{MilliCPU: milliCPU, Memory: memory},
			Conditions:  []api.Condition{{Type: api.NodeReady, Status: ready, LastChange: t0}},
		},
	}
}

// podOpt changes a test pod.
type podOpt func(*api.Pod)

func onNode(n string) podOpt { return func(p *api.Pod) { p.Spec.Node = n } }
func ready(ip string) podOpt {
	return func(p *api.Pod) { p.Status.Phase, p.Status.Ready, p.Status.IP = api.PodRunning, true, ip }
}
func running() podOpt        { return func(p *api.Pod) { p.Status.Phase = api.PodRunning } }
func phase(ph string) podOpt { return func(p *api.Pod) { p.Status.Phase = ph } }
func hashed(h string) podOpt { return func(p *api.Pod) { p.Spec.TemplateHash = h } }
func created(d time.Duration) podOpt {
	return func(p *api.Pod) { p.Created = t0.Add(d) }
}
func deleting() podOpt {
	return func(p *api.Pod) { t := t0; p.Spec.Deleting = &t }
}
func requests(cpu float64, mem int64) podOpt {
	return func(p *api.Pod) {
		p.Spec.Containers["main"].CPU, p.Spec.Containers["main"].Memory = cpu, configs.Bytes(mem)
	}
}
func hostPort(port int) podOpt {
	return func(p *api.Pod) { p.Spec.Containers["main"].HostPorts = map[string]int{"http": port} }
}
func selector(k, v string) podOpt {
	return func(p *api.Pod) { p.Spec.NodeSelector = map[string]string{k: v} }
}
func restart(r string) podOpt { return func(p *api.Pod) { p.Spec.Restart = r } }

func mkPod(name, app string, opts ...podOpt) *api.Pod {
	p := &api.Pod{
		Meta: api.Meta{Name: name, Created: t0},
		Spec: api.PodSpec{
			App:          app,
			TemplateHash: "h1",
			Containers: map[string]*configs.ContainerSpec{
				"main": {Image: "img", Ports: map[string]int{"http": 8080}},
			},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func mkApp(name string, replicas int) *api.App {
	return &api.App{
		Meta: api.Meta{Name: name},
		Spec: configs.AppSpec{
			Replicas:   &replicas,
			Containers: map[string]*configs.ContainerSpec{"main": {Image: "img"}},
		},
	}
}

func intp(n int) *int { return &n }

func names(ps []*api.Pod) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// RollbackTx rolls app name back to its previous template, as POST
// /v1/apps/NAME/rollback does, inside a store transaction. Exported for
// the controller_test package's tests too.
func RollbackTx(name string) func(tx *store.Tx) error {
	return func(tx *store.Tx) error {
		var a api.App
		if err := tx.Get(api.KindApp, name, &a); err != nil {
			return err
		}
		if _, _, err := api.Rollback(&a, ""); err != nil {
			return err
		}
		return tx.Put(api.KindApp, &a)
	}
}
