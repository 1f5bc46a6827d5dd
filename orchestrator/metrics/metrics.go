// Package metrics holds what skiff exports in the Prometheus text format
// at /metrics: the process's registry (Go runtime and process figures)
// and the metrics of the parts that run in the node's process beside the
// API server, the agent's first (probe results, load balancer syncs, and
// the hook for per-service connection rates). The API server's own
// metrics (requests, store, objects, pods, gossip members) are in
// orchestrator/apiserver/metrics.go; the controllers' queue depths in
// orchestrator/controller.
//
// Labels are bounded: route patterns, never raw paths; kinds, phases,
// probe kinds and results, member states and roles; an app or a service
// name only where the cluster's own objects bound them.
package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process
// collectors: one per process, that every part registers into.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves g in the Prometheus text format (or OpenMetrics when the
// scraper asks for it).
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Agent holds the metrics of a node agent. The zero value is not usable:
// NewAgent makes one; a nil *Agent records nothing, so that an agent
// without metrics need not check.
type Agent struct {
	probes *prometheus.CounterVec
	lbSync prometheus.Histogram
	// probeCounters: the probes' counters by probeKey, resolved once
	// (hashing the label values on every probe was 7% of an idle node's
	// CPU); a series appears with its first probe, as before.
	probeCounters sync.Map
}

type probeKey struct {
	probe string
	ok    bool
}

// NewAgent makes the agent's metrics and registers them into reg.
func NewAgent(reg prometheus.Registerer) (*Agent, error) {
	a := &Agent{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_probe_results_total",
			Help: "Container probe results on this node by probe (readiness, liveness, startup) and result (success, failure).",
		}, []string{"probe", "result"}),
		lbSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "skiff_lb_sync_duration_seconds",
			Help:    "Time to program this node's service load balancer (one iptables-restore per sync).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	for _, c := range []prometheus.Collector{a.probes, a.lbSync} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// ProbeResult counts one probe's outcome; probe is readiness, liveness or
// startup.
func (a *Agent) ProbeResult(probe string, ok bool) {
	if a == nil {
		return
	}
	k := probeKey{probe, ok}
	if c, found := a.probeCounters.Load(k); found {
		c.(prometheus.Counter).Inc()
		return
	}
	result := "failure"
	if ok {
		result = "success"
	}
	c := a.probes.WithLabelValues(probe, result)
	a.probeCounters.Store(k, c)
	c.Inc()
}

// LBSynced records how long a load balancer sync took, in seconds.
func (a *Agent) LBSynced(seconds float64) {
	if a == nil {
		return
	}
	a.lbSync.Observe(seconds)
}

// ServiceRates is the hook for per-service connection rates (the
// autoscaling measurements the agent makes at the load balancer): the
// agent implements it and registers it with RegisterServiceRates. Rates
// returns new connections per second by service name over the agent's
// last window; services are bounded by the cluster's objects.
type ServiceRates interface {
	Rates() map[string]float64
}

// RegisterServiceRates exports r as skiff_service_connections_per_second
// {service}, read at each scrape.
func RegisterServiceRates(reg prometheus.Registerer, r ServiceRates) error {
	return reg.Register(&ratesCollector{r: r})
}

var ratesDesc = prometheus.NewDesc("skiff_service_connections_per_second",
	"New connections per second to each service through this node's load balancer, over the agent's last measuring window.",
	[]string{"service"}, nil)

type ratesCollector struct{ r ServiceRates }

func (c *ratesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ratesDesc }

func (c *ratesCollector) Collect(ch chan<- prometheus.Metric) {
	for svc, v := range c.r.Rates() {
		ch <- prometheus.MustNewConstMetric(ratesDesc, prometheus.GaugeValue, v, svc)
	}
}
