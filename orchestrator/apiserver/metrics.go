package apiserver

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/metrics"
)

// apiMetrics are the API server's own metrics. Requests are labelled by
// the route pattern that served them ("/v1/pods/{name}"), never by the raw
// path: a client cannot grow the label set by asking for made-up names.
type apiMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newAPIMetrics(reg prometheus.Registerer, s *Server) *apiMetrics {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_api_requests_total",
			Help: "API requests by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skiff_api_request_duration_seconds",
			Help: "API request latencies by method and route pattern (watches and log follows last as long as their stream).",
			// From a cached GET on loopback to an apply that fsyncs on an
			// SD card.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.duration, &stateCollector{s: s})
	return m
}

// observe records one request: r.Pattern is the pattern the mux matched
// ("GET /v1/pods/{name}", "/v1/pods/{name}" for a 405, "/" for a 404).
func (m *apiMetrics) observe(r *http.Request, code int, took time.Duration) {
	method := r.Method
	switch method {
	case "GET", "HEAD", "PUT", "POST", "DELETE":
	default:
		method = "other" // keep the label set bounded
	}
	route := r.Pattern
	if _, p, ok := strings.Cut(route, " "); ok {
		route = p
	}
	if route == "" {
		route = "none" // answered before the mux (none today)
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(method, route).Observe(took.Seconds())
}

// metrics serves the registry (the API's auth applies: see authz.go).
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	s.metricsHandler.ServeHTTP(w, r)
}

// Registry is the registry /metrics serves: Options.Metrics, or the one
// New made. Other parts of the process (the controllers, the agent)
// register into it.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// stateCollector reads, at each scrape, what the store and the gossip
// hold: nothing is kept twice, and a scrape costs a few reads of the
// store.
type stateCollector struct{ s *Server }

var (
	descRevision   = prometheus.NewDesc("skiff_store_revision", "Current revision of the state store.", nil, nil)
	descWatchers   = prometheus.NewDesc("skiff_store_watchers", "Open watches on the store.", nil, nil)
	descCommits    = prometheus.NewDesc("skiff_store_writes_total", "Store transactions that wrote something (each one a bbolt commit with fsync).", nil, nil)
	descPutBytes   = prometheus.NewDesc("skiff_store_write_bytes_total", "Bytes of keys and values the store wrote (objects and their watch events).", nil, nil)
	descPageBytes  = prometheus.NewDesc("skiff_store_page_write_bytes_total", "Bytes of the pages bbolt wrote to the store's file (what reaches the disk, besides a meta page per commit).", nil, nil)
	descObjects    = prometheus.NewDesc("skiff_objects", "Objects in the store by kind.", []string{"kind"}, nil)
	descPods       = prometheus.NewDesc("skiff_pods", "Pods by phase (Unscheduled: no node yet).", []string{"phase"}, nil)
	descRestarts   = prometheus.NewDesc("skiff_container_restarts", "Container restarts of the pods that exist, summed by app.", []string{"app"}, nil)
	descMembers    = prometheus.NewDesc("skiff_gossip_members", "Gossip members by status (alive, suspect, leaving, left, failed) and role.", []string{"status", "role"}, nil)
	stateCollected = []*prometheus.Desc{descRevision, descWatchers, descCommits, descPutBytes, descPageBytes, descObjects, descPods, descRestarts, descMembers}
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range stateCollected {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.st
	ch <- prometheus.MustNewConstMetric(descRevision, prometheus.GaugeValue, float64(st.Rev()))
	ch <- prometheus.MustNewConstMetric(descWatchers, prometheus.GaugeValue, float64(st.Watchers()))
	commits, putBytes, _, pageBytes := st.WriteStats()
	ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(commits))
	ch <- prometheus.MustNewConstMetric(descPutBytes, prometheus.CounterValue, float64(putBytes))
	ch <- prometheus.MustNewConstMetric(descPageBytes, prometheus.CounterValue, float64(pageBytes))
	for _, kind := range []string{api.KindNode, api.KindApp, api.KindPod, api.KindService, api.KindEndpoints, api.KindEvent} {
		if n, err := st.Count(kind); err == nil {
			ch <- prometheus.MustNewConstMetric(descObjects, prometheus.GaugeValue, float64(n), kind)
		}
	}
	var pods []*api.Pod
	if _, err := st.List(api.KindPod, &pods); err == nil {
		phases := map[string]int{}
		for _, p := range []string{api.PodPending, api.PodRunning, api.PodSucceeded, api.PodFailed, api.PodUnknown} {
			phases[p] = 0 // every phase, so a rate or an alert sees 0, not no series
		}
		restarts := map[string]int{}
		for _, p := range pods {
			phase := p.Status.Phase
			switch {
			case p.Spec.Node == "":
				phase = "Unscheduled"
			case phase == "":
				phase = api.PodPending
			}
			phases[phase]++
			for _, cs := range p.Status.Containers {
				restarts[p.Spec.App] += cs.Restarts
			}
		}
		for phase, n := range phases {
			ch <- prometheus.MustNewConstMetric(descPods, prometheus.GaugeValue, float64(n), phase)
		}
		for app, n := range restarts {
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.GaugeValue, float64(n), app)
		}
	}
	if m := c.s.members.Load(); m != nil {
		type key struct{ status, role string }
		counts := map[key]int{}
		for _, mem := range (*m).Members() {
			counts[key{mem.Status, mem.Role}]++
		}
		for k, n := range counts {
			ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), k.status, k.role)
		}
	}
}

// newRegistry is the registry of a Server whose Options give none.
func newRegistry() *prometheus.Registry { return metrics.NewRegistry() }
