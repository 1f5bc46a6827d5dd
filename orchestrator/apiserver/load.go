package apiserver

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/loadstats"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Load reports. Agents PUT a small summary of what their load balancer and
// pods saw every few seconds; the server keeps the last one per node in
// memory (loadstats), never in the store. Readers get per-service sums.

// Bounds of one load report, so that a node cannot make the server hold
// more than a few hundred KiB for it.
const (
	maxLoadServices  = 4096
	maxLoadEndpoints = 256 // per service
	maxLoadPods      = 1024
	maxLoadInterval  = 600.0
	// maxLoadActive bounds a connection count: the server adds them up
	// over nodes and a report's entries, and a sum of counts near the
	// int range would wrap to a negative one.
	maxLoadActive = 1_000_000_000
)

// Load returns the server's registry of load reports: the per-service
// rates for the metrics endpoint and the UI.
func (s *Server) Load() *loadstats.Registry { return s.load }

// putNodeLoad takes a node's load report. A node may report only for
// itself (authz: ownNode); services that do not exist are dropped, and so
// is the CPU of pods not bound to the node: it may say what its own load
// balancer and pods saw, nothing about others'.
func (s *Server) putNodeLoad(w http.ResponseWriter, r *http.Request) {
	var l api.NodeLoad
	if err := s.decode(w, r, &l, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkLoad(&l); err != nil {
		s.writeError(w, r, err)
		return
	}
	node := r.PathValue("name")
	idx, err := s.loadIndex()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	podApps, known := idx.podApps[node], idx.services
	keep := l.Services[:0]
	for _, sl := range l.Services {
		if known[sl.Service] {
			keep = append(keep, sl)
		}
	}
	l.Services = keep
	s.load.Put(node, l, podApps)
	w.WriteHeader(http.StatusNoContent)
}

// checkLoad bounds a load report and refuses numbers that are not rates.
func checkLoad(l *api.NodeLoad) error {
	rate := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 && v < 1e9 }
	switch {
	case !rate(l.Interval) || l.Interval == 0 || l.Interval > maxLoadInterval:
		return invalid("interval", "interval must be > 0 and <= %v seconds, not %v", maxLoadInterval, l.Interval)
	case len(l.Services) > maxLoadServices:
		return invalid("services", "at most %d services per report, not %d", maxLoadServices, len(l.Services))
	case len(l.Pods) > maxLoadPods:
		return invalid("pods", "at most %d pods per report, not %d", maxLoadPods, len(l.Pods))
	}
	seen := map[string]bool{}
	for i, sl := range l.Services {
		switch {
		case seen[sl.Service]:
			// The sums add every entry: a service twice would count twice.
			return invalid(fieldAt("services", i, "service"), "service %q appears twice in the report", trimmed(sl.Service))
		case !rate(sl.NewPerSec):
			return invalid(fieldAt("services", i, "new_per_sec"), "must be a rate >= 0, not %v", sl.NewPerSec)
		case sl.Active < 0 || sl.Active > maxLoadActive:
			return invalid(fieldAt("services", i, "active"), "must be 0 to %d, not %d", maxLoadActive, sl.Active)
		case len(sl.Endpoints) > maxLoadEndpoints:
			return invalid(fieldAt("services", i, "endpoints"), "at most %d endpoints, not %d", maxLoadEndpoints, len(sl.Endpoints))
		}
		seen[sl.Service] = true
		for j, e := range sl.Endpoints {
			if !rate(e.NewPerSec) || e.Active < 0 || e.Active > maxLoadActive {
				return invalid(fieldAt("services", i, "endpoints")+"["+itoa(j)+"]", "rates must be >= 0 and counts 0 to %d", maxLoadActive)
			}
		}
	}
	pods := map[string]bool{}
	for i, p := range l.Pods {
		if pods[p.Pod] {
			return invalid(fieldAt("pods", i, "pod"), "pod %q appears twice in the report", trimmed(p.Pod))
		}
		pods[p.Pod] = true
		if !rate(p.CPU) || p.CPU > 1e4 {
			return invalid(fieldAt("pods", i, "cpu"), "must be cores >= 0, not %v", p.CPU)
		}
	}
	return nil
}

// loadIndex is what a load report is checked against: each node's pods
// with their apps, and the services, as of store revision rev.
type loadIndex struct {
	rev      int64
	podApps  map[string]map[string]string // node -> pod -> app
	services map[string]bool
}

// loadIndex returns the index of the store's current revision, read again
// only when the store changed since: every node reports every 2 s, and
// decoding every pod and service for each report was most of what a
// report cost the server. The maps are shared, never written once made.
func (s *Server) loadIndex() (*loadIndex, error) {
	if idx := s.loadIdx.Load(); idx != nil && idx.rev == s.st.Rev() {
		return idx, nil
	}
	idx := &loadIndex{podApps: map[string]map[string]string{}, services: map[string]bool{}}
	err := s.st.View(func(tx *store.Tx) error {
		idx.rev = tx.Rev()
		var pods []api.Pod
		if err := tx.List(api.KindPod, &pods); err != nil {
			return err
		}
		for _, p := range pods {
			if p.Spec.Node == "" {
				continue
			}
			if idx.podApps[p.Spec.Node] == nil {
				idx.podApps[p.Spec.Node] = map[string]string{}
			}
			idx.podApps[p.Spec.Node][p.Name] = p.Spec.App
		}
		var svcs []api.Service
		if err := tx.List(api.KindService, &svcs); err != nil {
			return err
		}
		for _, sv := range svcs {
			idx.services[sv.Name] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.loadIdx.Store(idx)
	return idx, nil
}

func fieldAt(list string, i int, field string) string {
	return list + "[" + itoa(i) + "]." + field
}

func itoa(i int) string { return strconv.Itoa(i) }

// serviceStats answers GET /v1/services/{name}/stats: the service's load
// summed over the nodes that reported in the last loadstats.DefaultMaxAge.
func (s *Server) serviceStats(w http.ResponseWriter, r *http.Request) {
	var svc api.Service
	if err := s.st.Get(api.KindService, r.PathValue("name"), &svc); err != nil {
		s.writeError(w, r, err)
		return
	}
	st := s.load.Service(svc.Name)
	st.App = svc.Spec.App
	writeJSON(w, http.StatusOK, &st)
}

// listStats answers GET /v1/stats: every service's sums and every
// autoscaled app's load.
func (s *Server) listStats(w http.ResponseWriter, r *http.Request) {
	var svcs []api.Service
	if _, err := s.st.List(api.KindService, &svcs); err != nil {
		s.writeError(w, r, err)
		return
	}
	out := api.StatsList{Services: map[string]api.ServiceStats{}, Apps: map[string]api.AppLoad{}, Time: time.Now().UTC()}
	byApp := map[string][]string{}
	for _, sv := range svcs {
		st := s.load.Service(sv.Name)
		st.App = sv.Spec.App
		out.Services[sv.Name] = st
		byApp[sv.Spec.App] = append(byApp[sv.Spec.App], sv.Name)
	}
	var apps []api.App
	if _, err := s.st.List(api.KindApp, &apps); err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, a := range apps {
		out.Apps[a.Name] = s.load.App(a.Name, byApp[a.Name])
	}
	writeJSON(w, http.StatusOK, &out)
}

// wakeResponse answers POST /v1/services/{name}/wake.
type wakeResponse struct {
	App   string `json:"app"`
	Woken bool   `json:"woken"`
}

// wakeService answers POST /v1/services/{name}/wake: a node's activator
// holds a connection to the service, whose app is at zero replicas. It sets
// the app's autoscaled count from 0 to 1, and nothing else: a node may ask
// it of any service (every node's load balancer serves every service), but
// only for an app that scales to zero and only while it is at zero, so it
// can never set a count of its own choosing.
func (s *Server) wakeService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	who := identityOf(r.Context()).String()
	var out wakeResponse
	_, err := s.st.Update(func(tx *store.Tx) error {
		var svc api.Service
		if err := tx.Get(api.KindService, name, &svc); err != nil {
			return err
		}
		var app api.App
		if err := tx.Get(api.KindApp, svc.Spec.App, &app); err != nil {
			return err
		}
		out = wakeResponse{App: app.Name}
		as := app.Spec.Autoscale
		if as == nil || as.Min != 0 {
			return invalid("", "service %q: its app %q does not scale to zero (autoscale min 0)", name, app.Name)
		}
		st := app.Status.Autoscale
		if st != nil && st.Desired > 0 {
			return nil // awake already, or being woken
		}
		now := time.Now().UTC()
		next := api.AutoscaleStatus{}
		if st != nil {
			next = *st
			next.Reversals = append([]time.Time(nil), st.Reversals...)
			next.Decisions = append([]api.ScaleDecision(nil), st.Decisions...)
		}
		if next.LastDirection < 0 {
			next.Reversals = append(next.Reversals, now)
		}
		msg := fmt.Sprintf("scaled 0 → 1: a connection to service %s held by %s", name, who)
		next.Desired, next.LastScale, next.LastDirection = 1, now, 1
		next.Decisions = append(next.Decisions, api.ScaleDecision{Time: now, From: 0, To: 1, Message: msg})
		if len(next.Decisions) > 10 {
			next.Decisions = next.Decisions[len(next.Decisions)-10:]
		}
		app.Status.Autoscale = &next
		if err := tx.Put(api.KindApp, &app); err != nil {
			return err
		}
		out.Woken = true
		return tx.RecordEvent(api.KindApp+"/"+app.Name, api.EventNormal, "Autoscaled", msg, eventSource)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, &out)
}
