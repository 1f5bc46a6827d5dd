package ui

import (
	"context"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// History defaults: a point a minute, an hour of them.
const (
	DefaultChartStep   = time.Minute
	DefaultChartPoints = 60
)

// history keeps what the console's small charts draw: each service's
// request rate and each app's ready replicas, one point a step over the
// last hour, oldest first. It lives in memory only (an edge box's disk
// is not written for a chart) and starts empty when the server starts.
// A series whose service or app is gone at a sample is dropped, so it is
// bounded by the objects in the store times points.
type history struct {
	points int

	mu   sync.Mutex
	svcs map[string][]float64
	apps map[string][]float64
}

func newHistory(points int) *history {
	return &history{points: points, svcs: map[string][]float64{}, apps: map[string][]float64{}}
}

// record adds one point to every series in now; series not in now are
// dropped.
func (h *history) record(svcs, apps map[string]float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.svcs = appendPoints(h.svcs, svcs, h.points)
	h.apps = appendPoints(h.apps, apps, h.points)
}

func appendPoints(old map[string][]float64, now map[string]float64, points int) map[string][]float64 {
	next := make(map[string][]float64, len(now))
	for name, v := range now {
		s := append(old[name], v)
		if len(s) > points {
			s = append(s[:0:0], s[len(s)-points:]...)
		}
		next[name] = s
	}
	return next
}

func (h *history) service(name string) []float64 { return h.get(h.svcs, name) }
func (h *history) app(name string) []float64     { return h.get(h.apps, name) }

func (h *history) get(m map[string][]float64, name string) []float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]float64(nil), m[name]...)
}

// sampleLoop records a point at once and then every step until ctx ends.
func (c *Console) sampleLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.ChartStep)
	defer t.Stop()
	for {
		if err := c.sample(); err != nil {
			c.log.Warn("console charts: sample", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample reads the services' rates and the apps' ready pods once.
func (c *Console) sample() error {
	var apps []*api.App
	var pods []*api.Pod
	var svcs []*api.Service
	err := c.st.View(func(tx *store.Tx) error {
		if err := tx.List(api.KindApp, &apps); err != nil {
			return err
		}
		if err := tx.List(api.KindService, &svcs); err != nil {
			return err
		}
		return tx.List(api.KindPod, &pods)
	})
	if err != nil {
		return err
	}
	ready := make(map[string]float64, len(apps))
	for _, a := range apps {
		ready[a.Name] = 0
	}
	for _, p := range pods {
		if _, ok := ready[p.Spec.App]; ok && p.Status.Ready && p.Spec.Deleting == nil {
			ready[p.Spec.App]++
		}
	}
	rates := map[string]float64{}
	if c.cfg.ServiceRates != nil {
		now := c.cfg.ServiceRates()
		for _, s := range svcs {
			rates[s.Name] = now[s.Name] // no report: no traffic seen
		}
	}
	c.hist.record(rates, ready)
	return nil
}
