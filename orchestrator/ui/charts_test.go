package ui_test

import (
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/ui"
)

// TestCharts: with the server's per-service rates, the services page
// draws each service's request rate and the app page its ready replicas
// from the console's own samples; without rates the column says so.
func TestCharts(t *testing.T) {
	var rate atomic.Int64
	rate.Store(42)
	p := newInproc(t, func(c *ui.Config) {
		c.ServiceRates = func() map[string]float64 { return map[string]float64{"web": float64(rate.Load())} }
		c.ChartStep = 10 * time.Millisecond
	})
	p.apply(webManifest)
	read, _ := p.token(api.RoleRead)
	b := p.browser()
	b.login(read)

	chart := regexp.MustCompile(`aria-label="request rate, last hour"><polyline points="([0-9., ]+)"/></svg> ([0-9.]+)`)
	deadline := time.Now().Add(10 * time.Second)
	var body string
	for {
		_, body = b.get("/ui/services")
		if m := chart.FindStringSubmatch(body); m != nil && m[2] == "42.0" && strings.Count(m[1], ",") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("services page: no rate chart of at least 2 points ending at 42.0:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond) // the sampling pace
	}
	_, body = b.get("/ui/apps/web")
	if !strings.Contains(body, `id="replicas-chart"`) || !strings.Contains(body, "</svg> 0 (max 0)") {
		t.Errorf("app page: want a replicas chart at 0 ready (no nodes run the pods):\n%s", body)
	}

	plain := newInproc(t)
	plain.apply(webManifest)
	rt, _ := plain.token(api.RoleRead)
	pb := plain.browser()
	pb.login(rt)
	if _, body := pb.get("/ui/services"); chart.MatchString(body) || !strings.Contains(body, "Request rates appear here once") {
		t.Errorf("services page without rates: want no chart and the note:\n%s", body)
	}
}
