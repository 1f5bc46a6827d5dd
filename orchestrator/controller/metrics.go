package controller

import "github.com/prometheus/client_golang/prometheus"

var descQueue = prometheus.NewDesc("skiff_controller_queue_depth",
	"Work waiting for the controllers' next pass: apps to reconcile, services whose endpoints to recompute, and 1 for a pending full resync or scheduling.",
	[]string{"queue"}, nil)

// queueCollector reports the queue's depth at each scrape.
type queueCollector struct{ q *queue }

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descQueue }

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.q.mu.Lock()
	apps, services, all, schedule := len(c.q.w.apps), len(c.q.w.services), c.q.w.all, c.q.w.schedule
	c.q.mu.Unlock()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(apps), "apps")
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(services), "services")
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, b(all), "resync")
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, b(schedule), "scheduler")
}
