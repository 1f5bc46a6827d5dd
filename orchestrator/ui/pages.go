package ui

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/cli"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// snapshot is the store's objects the pages show, read in one transaction.
type snapshot struct {
	Rev       int64
	Nodes     []*api.Node
	Apps      []*api.App
	Pods      []*api.Pod
	Services  []*api.Service
	Endpoints map[string]*api.Endpoints
	Events    []*api.Event // newest first
}

// read reads the kinds of the snapshot that want names, after checking
// that the user may read each (the API's rule for GET of its list).
func (c *Console) read(r *http.Request, u *user, kinds ...string) (*snapshot, error) {
	for _, k := range kinds {
		if err := c.api.Authorize(u.id, "GET /v1/"+k, r); err != nil {
			return nil, err
		}
	}
	s := &snapshot{Endpoints: map[string]*api.Endpoints{}}
	err := c.st.View(func(tx *store.Tx) error {
		s.Rev = tx.Rev()
		for _, k := range kinds {
			var err error
			switch k {
			case api.KindNode:
				err = tx.List(k, &s.Nodes)
			case api.KindApp:
				err = tx.List(k, &s.Apps)
			case api.KindPod:
				err = tx.List(k, &s.Pods)
			case api.KindService:
				err = tx.List(k, &s.Services)
			case api.KindEndpoints:
				var eps []*api.Endpoints
				err = tx.List(k, &eps)
				for _, e := range eps {
					s.Endpoints[e.Name] = e
				}
			case api.KindEvent:
				err = tx.List(k, &s.Events)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	slices.SortFunc(s.Events, func(a, b *api.Event) int { return b.Time.Compare(a.Time) })
	return s, err
}

// nodeRow is a node with what its pods request of it.
type nodeRow struct {
	*api.Node
	Ready         bool
	Pods          int
	CPU, Mem      bar
	ReqCPU, ReqMB float64
}

// bar is a filled fraction, drawn as an inline SVG bar.
type bar struct {
	Pct   int    // 0-100, the filled width
	Label string // "0.5 / 2 cpu"
	Warn  bool   // over 90%
}

func newBar(used, total float64, label string) bar {
	pct := 0
	if total > 0 {
		pct = int(min(100, used*100/total+0.5))
	}
	return bar{Pct: pct, Label: label, Warn: pct >= 90}
}

func (s *snapshot) nodeRows() []nodeRow {
	var rows []nodeRow
	for _, n := range s.Nodes {
		row := nodeRow{Node: n, Ready: n.Ready()}
		for _, p := range s.Pods {
			if p.Spec.Node != n.Name || p.Spec.Deleting != nil {
				continue
			}
			row.Pods++
			for _, ct := range p.Spec.Containers {
				row.ReqCPU += ct.CPU
				row.ReqMB += float64(ct.Memory) / (1 << 20)
			}
		}
		a := n.Status.Allocatable
		row.CPU = newBar(row.ReqCPU*1000, float64(a.MilliCPU), fmt.Sprintf("%.2g / %.2g cpu requested", row.ReqCPU, float64(a.MilliCPU)/1000))
		row.Mem = newBar(row.ReqMB, float64(a.Memory)/(1<<20), fmt.Sprintf("%.0f / %.0f MiB requested", row.ReqMB, float64(a.Memory)/(1<<20)))
		rows = append(rows, row)
	}
	return rows
}

// appRow is an app with its pods counted and its rollout drawn.
type appRow struct {
	*api.App
	Desired  int
	Ready    int
	Running  int
	PerNode  bool
	Progress bar // updated pods of desired while a rollout runs
	Rolling  bool
	Healthy  bool
}

func (s *snapshot) appRow(a *api.App) appRow {
	row := appRow{App: a, PerNode: a.Spec.Mode == "per-node"}
	_, row.Desired = cli.AppDesired(a) // the autoscaler's count for an autoscaled app
	for _, p := range s.Pods {
		if p.Spec.App != a.Name || p.Spec.Deleting != nil {
			continue
		}
		row.Running++
		if p.Status.Ready {
			row.Ready++
		}
	}
	if row.PerNode {
		row.Desired = row.Running
	}
	// A rollout is under way while it has a progress time; once no older
	// pod is left the controller keeps it with none (complete).
	ro := a.Status.Rollout
	row.Rolling = ro != nil && !ro.Progressed.IsZero()
	updated := a.Status.Updated
	if row.Rolling {
		updated = ro.ReadyUpdated
	}
	row.Progress = newBar(float64(updated), float64(max(row.Desired, 1)), fmt.Sprintf("%d of %d updated", updated, row.Desired))
	row.Progress.Warn = false // a full rollout bar is good news
	row.Healthy = row.Ready == row.Desired && !row.Rolling
	return row
}

// serviceRow is a service with its endpoints and, if the server has them,
// its request rates.
type serviceRow struct {
	*api.Service
	Endpoints []api.Endpoint
	Rate      *rateChart
}

func (c *Console) serviceRows(s *snapshot) []serviceRow {
	var rows []serviceRow
	for _, svc := range s.Services {
		row := serviceRow{Service: svc}
		if e := s.Endpoints[svc.Name]; e != nil {
			row.Endpoints = e.Endpoints
		}
		if c.cfg.ServiceRates != nil {
			row.Rate = newRateChart(c.hist.service(svc.Name))
		}
		rows = append(rows, row)
	}
	return rows
}

// rateChart is a request-rate series drawn as an SVG polyline: Points is
// "x,y x,y ..." in a 120x24 box, numbers only.
type rateChart struct {
	Points string
	Last   float64
	Max    float64
}

func newRateChart(pts []float64) *rateChart {
	if len(pts) == 0 {
		return nil
	}
	ch := &rateChart{Last: pts[len(pts)-1]}
	for _, v := range pts {
		ch.Max = max(ch.Max, v)
	}
	var b strings.Builder
	for i, v := range pts {
		x := 0.0
		if len(pts) > 1 {
			x = float64(i) * 120 / float64(len(pts)-1)
		}
		y := 24.0
		if ch.Max > 0 {
			y = 24 - v*22/ch.Max
		}
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	ch.Points = strings.TrimSpace(b.String())
	return ch
}

// overviewData is the overview page.
type overviewData struct {
	Nodes    []nodeRow
	Apps     []appRow
	Services []serviceRow
	Warnings []*api.Event
	Pods     int
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, u *user) {
	s, err := c.read(r, u, api.KindNode, api.KindApp, api.KindPod, api.KindService, api.KindEndpoints, api.KindEvent)
	if err != nil {
		c.fail(w, r, u, err)
		return
	}
	d := overviewData{Nodes: s.nodeRows(), Services: c.serviceRows(s), Pods: len(s.Pods)}
	for _, a := range s.Apps {
		d.Apps = append(d.Apps, s.appRow(a))
	}
	for _, e := range s.Events {
		if e.Type == api.EventWarning && len(d.Warnings) < 10 {
			d.Warnings = append(d.Warnings, e)
		}
	}
	c.render(w, r, "overview", http.StatusOK, &page{Title: "Overview", Nav: "overview", User: u, Data: d, Rev: s.Rev, Live: true, RateOK: c.cfg.ServiceRates != nil})
}

// eventsOf returns the events of object ("kind/name"), newest first, at
// most n.
func eventsOf(s *snapshot, n int, objects ...string) []*api.Event {
	var out []*api.Event
	for _, e := range s.Events {
		if slices.Contains(objects, e.Object) && len(out) < n {
			out = append(out, e)
		}
	}
	return out
}

type nodeData struct {
	Row    nodeRow
	Pods   []*api.Pod
	Events []*api.Event
	Member *api.Member
}

func (c *Console) nodePage(w http.ResponseWriter, r *http.Request, u *user) {
	name, ok := validName(w, r)
	if !ok {
		return
	}
	s, err := c.read(r, u, api.KindNode, api.KindPod, api.KindEvent)
	if err != nil {
		c.fail(w, r, u, err)
		return
	}
	d := nodeData{}
	found := false
	for _, row := range s.nodeRows() {
		if row.Name == name {
			d.Row, found = row, true
		}
	}
	if !found {
		c.fail(w, r, u, fmt.Errorf("node %s: %w", name, store.ErrNotFound))
		return
	}
	for _, p := range s.Pods {
		if p.Spec.Node == name {
			d.Pods = append(d.Pods, p)
		}
	}
	d.Events = eventsOf(s, 30, api.KindNode+"/"+name)
	if status, body := c.call(r, u, "GET", "/v1/members", nil); status == http.StatusOK {
		var l struct{ Items []api.Member }
		if json.Unmarshal(body, &l) == nil {
			for i := range l.Items {
				if l.Items[i].Name == name {
					d.Member = &l.Items[i]
				}
			}
		}
	}
	c.render(w, r, "node", http.StatusOK, &page{Title: "Node " + name, Nav: "overview", User: u, Data: d, Rev: s.Rev, Live: true})
}

type appData struct {
	Row appRow
	// Replicas is the app's ready pods over the last hour (the console's
	// own samples); nil before the first.
	Replicas *rateChart
	Pods     []*api.Pod
	Events   []*api.Event
	History  []historyRow
}

type historyRow struct {
	Hash    string
	Time    time.Time
	Current bool
	Images  string
}

func (c *Console) appPage(w http.ResponseWriter, r *http.Request, u *user) {
	name, ok := validName(w, r)
	if !ok {
		return
	}
	s, err := c.read(r, u, api.KindApp, api.KindPod, api.KindEvent)
	if err != nil {
		c.fail(w, r, u, err)
		return
	}
	i := slices.IndexFunc(s.Apps, func(a *api.App) bool { return a.Name == name })
	if i < 0 {
		c.fail(w, r, u, fmt.Errorf("app %s: %w", name, store.ErrNotFound))
		return
	}
	a := s.Apps[i]
	d := appData{Row: s.appRow(a), Replicas: newRateChart(c.hist.app(name))}
	objs := []string{api.KindApp + "/" + name}
	for _, p := range s.Pods {
		if p.Spec.App == name {
			d.Pods = append(d.Pods, p)
			objs = append(objs, api.KindPod+"/"+p.Name)
		}
	}
	d.Events = eventsOf(s, 30, objs...)
	for j := len(a.Status.History) - 1; j >= 0; j-- {
		h := a.Status.History[j]
		var imgs []string
		for cn, ct := range h.Spec.Containers {
			imgs = append(imgs, cn+"="+ct.Image)
		}
		slices.Sort(imgs)
		d.History = append(d.History, historyRow{Hash: h.TemplateHash, Time: h.Time, Current: h.TemplateHash == a.Status.TemplateHash, Images: strings.Join(imgs, " ")})
	}
	c.render(w, r, "app", http.StatusOK, &page{Title: "App " + name, Nav: "overview", User: u, Data: d, Rev: s.Rev, Live: true,
		Flash: r.URL.Query().Get("done")})
}

type podData struct {
	Pod        *api.Pod
	Containers []containerRow
	Events     []*api.Event
	Container  string // the container whose log is shown
	Log        string
	LogErr     string
}

type containerRow struct {
	Name   string
	Image  string
	Status *api.ContainerStatus
	Probes []string
}

func (c *Console) podPage(w http.ResponseWriter, r *http.Request, u *user) {
	name, ok := validName(w, r)
	if !ok {
		return
	}
	s, err := c.read(r, u, api.KindPod, api.KindEvent)
	if err != nil {
		c.fail(w, r, u, err)
		return
	}
	i := slices.IndexFunc(s.Pods, func(p *api.Pod) bool { return p.Name == name })
	if i < 0 {
		c.fail(w, r, u, fmt.Errorf("pod %s: %w", name, store.ErrNotFound))
		return
	}
	p := s.Pods[i]
	d := podData{Pod: p, Events: eventsOf(s, 30, api.KindPod+"/"+name)}
	for cn, ct := range p.Spec.Containers {
		row := containerRow{Name: cn, Image: ct.Image}
		for j := range p.Status.Containers {
			if p.Status.Containers[j].Name == cn {
				row.Status = &p.Status.Containers[j]
			}
		}
		if ct.Liveness != nil {
			row.Probes = append(row.Probes, "liveness")
		}
		if ct.Readiness != nil {
			row.Probes = append(row.Probes, "readiness")
		}
		if ct.Startup != nil {
			row.Probes = append(row.Probes, "startup")
		}
		d.Containers = append(d.Containers, row)
	}
	slices.SortFunc(d.Containers, func(a, b containerRow) int { return cmp.Compare(a.Name, b.Name) })
	d.Container = r.URL.Query().Get("container")
	if d.Container == "" && len(d.Containers) > 0 {
		d.Container = d.Containers[0].Name
	}
	// The page shows the log's end without JavaScript; the script then
	// follows it live. The fragment refresh leaves the log alone.
	if r.Header.Get("X-Skiff-Fragment") == "" {
		status, body := c.call(r, u, "GET", "/v1/pods/"+name+"/logs?tail=200&container="+d.Container, nil)
		if status == http.StatusOK {
			d.Log = string(body)
		} else {
			d.LogErr = apiMessage(body)
		}
	}
	c.render(w, r, "pod", http.StatusOK, &page{Title: "Pod " + name, Nav: "overview", User: u, Data: d, Rev: s.Rev, Live: true})
}

func (c *Console) servicesPage(w http.ResponseWriter, r *http.Request, u *user) {
	s, err := c.read(r, u, api.KindService, api.KindEndpoints)
	if err != nil {
		c.fail(w, r, u, err)
		return
	}
	c.render(w, r, "services", http.StatusOK, &page{Title: "Services", Nav: "services", User: u, Data: c.serviceRows(s), Rev: s.Rev, Live: true, RateOK: c.cfg.ServiceRates != nil})
}

type eventsData struct {
	Type, Object, Reason string
	Events               []*api.Event
	Total                int
}

func (c *Console) eventsPage(w http.ResponseWriter, r *http.Request, u *user) {
	s, err := c.read(r, u, api.KindEvent)
	if err != nil {
		c.fail(w, r, u, err)
		return
	}
	q := r.URL.Query()
	d := eventsData{Type: q.Get("type"), Object: q.Get("object"), Reason: q.Get("reason"), Total: len(s.Events)}
	for _, e := range s.Events {
		if (d.Type == "" || e.Type == d.Type) && (d.Object == "" || strings.Contains(e.Object, d.Object)) &&
			(d.Reason == "" || strings.EqualFold(e.Reason, d.Reason)) && len(d.Events) < 500 {
			d.Events = append(d.Events, e)
		}
	}
	c.render(w, r, "events", http.StatusOK, &page{Title: "Events", Nav: "events", User: u, Data: d, Rev: s.Rev, Live: true})
}

// fail renders an error page: the API's status for the API's errors.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, u *user, err error) {
	status, msg := http.StatusNotFound, err.Error()
	if !errors.Is(err, store.ErrNotFound) {
		status, msg = apiserver.ErrorStatus(err)
	}
	c.render(w, r, "overview", status, &page{Title: "Error", User: u, Error: msg, Data: overviewData{}})
}
