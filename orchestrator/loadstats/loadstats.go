// Package loadstats keeps, in the server's memory, the load summaries that
// node agents report (PUT /v1/nodes/{name}/load) and sums them per service
// and per app for the API (GET /v1/services/{name}/stats), the autoscaler
// and the metrics endpoint. Nothing here touches the store: a report every
// few seconds from every node must not cost a disk write, and a lost
// report (a server restart) costs only one reporting interval.
package loadstats

import (
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// DefaultMaxAge is how long a node's report counts: a node that stops
// reporting (down, cut off) leaves the sums after it.
const DefaultMaxAge = 10 * time.Second

// Registry holds the last report of every node. It is safe for concurrent
// use; the zero value is not: use New.
type Registry struct {
	maxAge time.Duration
	now    func() time.Time

	// mu protects nodes.
	mu    sync.Mutex
	nodes map[string]report
}

// report is one node's last summary, with the app of each of its pods
// resolved by the server when it was put.
type report struct {
	at   time.Time
	load api.NodeLoad
	apps map[string]string // pod -> app
}

// New returns an empty registry whose reports count for maxAge (0:
// DefaultMaxAge) by the clock now (nil: time.Now).
func New(maxAge time.Duration, now func() time.Time) *Registry {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if now == nil {
		now = time.Now
	}
	return &Registry{maxAge: maxAge, now: now, nodes: map[string]report{}}
}

// Put replaces node's report. podApps maps each pod of l.Pods to its app;
// the caller has checked that the pods are bound to node (pods missing
// from it are dropped).
func (r *Registry) Put(node string, l api.NodeLoad, podApps map[string]string) {
	pods := l.Pods[:0:0]
	for _, p := range l.Pods {
		if podApps[p.Pod] != "" {
			pods = append(pods, p)
		}
	}
	l.Pods = pods
	r.mu.Lock()
	r.nodes[node] = report{at: r.now(), load: l, apps: podApps}
	r.mu.Unlock()
}

// Forget drops node's report (a node deleted).
func (r *Registry) Forget(node string) {
	r.mu.Lock()
	delete(r.nodes, node)
	r.mu.Unlock()
}

// fresh returns the reports younger than maxAge, dropping the others.
// Called with mu held.
func (r *Registry) fresh() map[string]report {
	cut := r.now().Add(-r.maxAge)
	for n, rep := range r.nodes {
		if rep.at.Before(cut) {
			delete(r.nodes, n)
		}
	}
	return r.nodes
}

// Service sums the fresh reports of one service.
func (r *Registry) Service(name string) api.ServiceStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sumService(name, r.fresh())
}

// Services sums the fresh reports of every service any node reported,
// keyed by service name. The UI and the metrics endpoint read it.
func (r *Registry) Services() map[string]api.ServiceStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	nodes := r.fresh()
	names := map[string]bool{}
	for _, rep := range nodes {
		for _, s := range rep.load.Services {
			names[s.Service] = true
		}
	}
	out := make(map[string]api.ServiceStats, len(names))
	for n := range names {
		out[n] = sumService(n, nodes)
	}
	return out
}

func sumService(name string, nodes map[string]report) api.ServiceStats {
	st := api.ServiceStats{ServiceLoad: api.ServiceLoad{Service: name}}
	eps := map[string]*api.EndpointLoad{}
	for _, rep := range nodes {
		for _, s := range rep.load.Services {
			if s.Service != name {
				continue
			}
			st.Nodes++
			st.NewPerSec += s.NewPerSec
			st.Active += s.Active
			st.Partial = st.Partial || s.Partial
			if rep.at.After(st.Updated) {
				st.Updated = rep.at
			}
			for _, e := range s.Endpoints {
				k := e.IP + ":" + strconv.Itoa(e.Port)
				if eps[k] == nil {
					eps[k] = &api.EndpointLoad{IP: e.IP, Port: e.Port}
				}
				eps[k].NewPerSec += e.NewPerSec
				eps[k].Active += e.Active
			}
		}
	}
	for _, e := range eps {
		st.Endpoints = append(st.Endpoints, *e)
	}
	sort.Slice(st.Endpoints, func(i, j int) bool {
		a, b := st.Endpoints[i], st.Endpoints[j]
		if a.IP != b.IP {
			return a.IP < b.IP
		}
		return a.Port < b.Port
	})
	return st
}

// App sums the load of app: the rates of services (the app's services,
// named by the caller) and the CPU of the app's pods.
func (r *Registry) App(app string, services []string) api.AppLoad {
	r.mu.Lock()
	defer r.mu.Unlock()
	var l api.AppLoad
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	for _, rep := range r.fresh() {
		counted := false
		for _, s := range rep.load.Services {
			if want[s.Service] {
				l.RPS += s.NewPerSec
				l.Active += s.Active
				l.Partial = l.Partial || s.Partial
				counted = true
			}
		}
		for _, p := range rep.load.Pods {
			if rep.apps[p.Pod] == app {
				l.CPU += p.CPU
				l.Pods++
				counted = true
			}
		}
		if counted {
			l.Nodes++
			if rep.at.After(l.Updated) {
				l.Updated = rep.at
			}
		}
	}
	return l
}

// Reporting returns how many nodes have a fresh report.
func (r *Registry) Reporting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.fresh())
}
