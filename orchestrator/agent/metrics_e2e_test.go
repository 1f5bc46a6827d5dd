package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/metrics/metricstest"
	"github.com/skiff-edge/skiff/orchestrator/nettest"
)

const metricsManifest = `
[app.mweb]
replicas = 1
termination_grace = "2s"

[app.mweb.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
ports = { http = 8080 }
cpu = 0.1
memory = "32Mi"

[app.mweb.container.http.readiness]
http_get = "/healthz"
port = "http"
period = "1s"

[service.mweb]
app = "mweb"
port = 80
target_port = "http"
`

// TestAgentMetricsAndWatchdogE2E runs `skiff server --agent` as systemd
// would with WatchdogSec= and metrics_addr set: the agent's metrics (probe
// results, load balancer syncs, a service's connection rate under
// traffic) come out of the plain /metrics in the text format, and the
// watchdog is fed while the agent's main loops, registered with it, turn.
func TestAgentMetricsAndWatchdogE2E(t *testing.T) {
	n := newNode(t)
	addr := nettest.Addr(t, "127.0.0.1")
	f, err := os.OpenFile(n.cfgFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "metrics_addr = %q\n", addr)
	f.Close()
	t.Setenv("WATCHDOG_USEC", "8000000") // rounds of 4 s: a check answers within that even on a loaded machine
	n.start()

	manifest := filepath.Join(n.dir, "metrics.toml")
	if err := os.WriteFile(manifest, []byte(metricsManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := n.skiff("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	n.waitReady("mweb", "mweb", 1, 60*time.Second)
	url := "http://" + n.vip("mweb") + "/"

	scrape := func() metricstest.Families {
		fams, err := metricstest.Scrape(nil, "http://"+addr+"/metrics")
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		return fams
	}

	// Traffic through the VIP until the sampler reports a rate for the
	// service (its first window is a baseline).
	var rate float64
	n.waitFor("skiff_service_connections_per_second{service=mweb} > 0", 30*time.Second, func() (bool, error) {
		for range 20 {
			_, _ = get(url)
		}
		v, ok := scrape().Value("skiff_service_connections_per_second", "service", "mweb")
		rate = v
		return ok && v > 0, nil
	})
	fams := scrape()
	probes, _ := fams.Value("skiff_probe_results_total", "probe", "readiness", "result", "success")
	syncs, _ := fams.Value("skiff_lb_sync_duration_seconds")
	t.Logf("mweb: %.1f new connections/s; %v readiness successes; %v load balancer syncs", rate, probes, syncs)
	if probes < 1 {
		t.Errorf("skiff_probe_results_total{probe=readiness,result=success} = %v, want > 0", probes)
	}
	if syncs < 1 {
		t.Errorf("skiff_lb_sync_duration_seconds count = %v, want > 0", syncs)
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "pod" || l.GetName() == "path" {
					t.Errorf("%s has an unbounded label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	// The watchdog: the agent's loops are registered with it, and
	// WATCHDOG=1 keeps coming after they were (the check covers them).
	var watched []string
	for _, line := range strings.Split(n.log.String(), "\n") {
		if strings.Contains(line, "loop watched by the watchdog") {
			watched = append(watched, line)
		}
	}
	for _, loop := range []string{"agent pods", "agent lb sync", "agent cache"} {
		if !strings.Contains(strings.Join(watched, "\n"), loop) {
			t.Errorf("the agent's %q loop is not watched by the watchdog; registered:\n%s", loop, strings.Join(watched, "\n"))
		}
	}
	before := strings.Count(n.notes.String(), "WATCHDOG=1")
	n.waitFor("two more WATCHDOG=1", 30*time.Second, func() (bool, error) {
		return strings.Count(n.notes.String(), "WATCHDOG=1") >= before+2, nil
	})
	if strings.Contains(n.log.String(), "watchdog: not alive") {
		t.Errorf("the watchdog found a loop stuck:\n%s", tail(n.log.String(), 40))
	}
}
