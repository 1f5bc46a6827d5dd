package apiserver

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestMetricsScrape scrapes /metrics over the TLS API with a read token
// and parses it with Prometheus's own text parser: requests are counted by
// route pattern (made-up pod names add no series), and pods by phase,
// restarts, store writes and the process figures are there. Without
// credentials the scrape is refused.
func TestMetricsScrape(t *testing.T) {
	e := newTLSEnv(t, time.Hour)
	_, err := e.st.Update(func(tx *store.Tx) error {
		for _, p := range []*api.Pod{
			{Meta: api.Meta{Name: "web-1"}, Spec: api.PodSpec{App: "web", Node: "n1"},
				Status: api.PodStatus{Phase: api.PodRunning, Containers: []api.ContainerStatus{{Name: "http", Restarts: 2}, {Name: "side", Restarts: 1}}}},
			{Meta: api.Meta{Name: "web-2"}, Spec: api.PodSpec{App: "web"}},
		} {
			if err := tx.Put(api.KindPod, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if rec := serve(e.s, "GET", "/v1/pods/made-up-"+string(rune('a'+i)), ""); rec.Code != http.StatusNotFound {
			t.Fatalf("GET a missing pod: %d", rec.Code)
		}
	}
	e.s.SetMembership(fakeMembership{}) // s1 alive server, a1 failed agent
	read := e.token(api.RoleRead, "1h")

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(pki.Token{CAHash: e.p.CAHash()})}}
	t.Cleanup(hc.CloseIdleConnections)
	scrape := func(secret string) *http.Response {
		req, _ := http.NewRequest("GET", e.srv.URL+"/metrics", nil)
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := scrape(""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("scrape without credentials: %d, want 401", resp.StatusCode)
	}
	resp := scrape(read)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}

	value := func(name string, labels map[string]string) (float64, bool) {
		f := fams[name]
		if f == nil {
			return 0, false
		}
	next:
		for _, m := range f.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return metricValue(m), true
		}
		return 0, false
	}
	want := []struct {
		name   string
		labels map[string]string
		check  func(float64) bool
		what   string
	}{
		{"skiff_api_requests_total", map[string]string{"method": "GET", "route": "/v1/pods/{name}", "code": "404"}, func(v float64) bool { return v == 3 }, "3"},
		{"skiff_api_requests_total", map[string]string{"method": "POST", "route": "/v1/tokens", "code": "201"}, func(v float64) bool { return v == 1 }, "1"},
		{"skiff_api_request_duration_seconds", map[string]string{"method": "GET", "route": "/v1/pods/{name}"}, func(v float64) bool { return v == 3 }, "3 observations"},
		{"skiff_pods", map[string]string{"phase": "Running"}, func(v float64) bool { return v == 1 }, "1"},
		{"skiff_pods", map[string]string{"phase": "Unscheduled"}, func(v float64) bool { return v == 1 }, "1"},
		{"skiff_pods", map[string]string{"phase": "Failed"}, func(v float64) bool { return v == 0 }, "0"},
		{"skiff_container_restarts", map[string]string{"app": "web"}, func(v float64) bool { return v == 3 }, "3"},
		{"skiff_objects", map[string]string{"kind": api.KindPod}, func(v float64) bool { return v == 2 }, "2"},
		{"skiff_store_writes_total", nil, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"skiff_store_write_bytes_total", nil, func(v float64) bool { return v > 100 }, "> 100"},
		{"skiff_store_page_write_bytes_total", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"skiff_store_revision", nil, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"skiff_gossip_members", map[string]string{"status": "alive", "role": "server"}, func(v float64) bool { return v == 1 }, "1"},
		{"skiff_gossip_members", map[string]string{"status": "failed", "role": "agent"}, func(v float64) bool { return v == 1 }, "1"},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 0 }, "> 0"},
	}
	for _, w := range want {
		v, ok := value(w.name, w.labels)
		if !ok {
			t.Errorf("%s%v: no such series", w.name, w.labels)
		} else if !w.check(v) {
			t.Errorf("%s%v = %v, want %s", w.name, w.labels, v, w.what)
		}
	}
	// Bounded labels: no raw path made it into a label.
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), "made-up") {
					t.Errorf("%s has label %s=%q: a raw path", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// metricValue is a counter's or gauge's value, or a histogram's count.
func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}
