package metrics

import (
	"net/http/httptest"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/metrics/metricstest"
)

type rates map[string]float64

func (r rates) Rates() map[string]float64 { return r }

// TestAgentMetrics: what the agent records comes out of Handler in the
// text format, and a nil *Agent records nothing without failing.
func TestAgentMetrics(t *testing.T) {
	reg := NewRegistry()
	a, err := NewAgent(reg)
	if err != nil {
		t.Fatal(err)
	}
	a.ProbeResult("readiness", true)
	a.ProbeResult("readiness", true)
	a.ProbeResult("liveness", false)
	a.LBSynced(0.003)
	if err := RegisterServiceRates(reg, rates{"web": 12.5}); err != nil {
		t.Fatal(err)
	}
	var none *Agent
	none.ProbeResult("startup", true)
	none.LBSynced(1)

	rec := httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	fams, err := metricstest.Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string, labels ...string) float64 {
		t.Helper()
		v, ok := fams.Value(name, labels...)
		if !ok {
			t.Fatalf("no %s%v", name, labels)
		}
		return v
	}
	for _, c := range []struct {
		got, want float64
		what      string
	}{
		{get("skiff_probe_results_total", "probe", "readiness", "result", "success"), 2, "readiness successes"},
		{get("skiff_probe_results_total", "probe", "liveness", "result", "failure"), 1, "liveness failures"},
		{get("skiff_lb_sync_duration_seconds"), 1, "LB syncs"},
		{get("skiff_service_connections_per_second", "service", "web"), 12.5, "web's rate"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Errorf("the registry lacks the Go or process collector")
	}
}
