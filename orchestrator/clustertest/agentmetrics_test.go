package clustertest

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/metrics/metricstest"
)

// TestAgentMetricsAndWatchdog runs a standalone `skiff agent` as systemd
// would with WatchdogSec= and metrics_addr set: it feeds WATCHDOG=1 while
// its pod, load balancer and cache loops (registered with the watchdog)
// turn, and serves its metrics on metrics_addr (probe results of its pod,
// load balancer syncs, the service's connection rate under traffic sent
// through its load balancer), parsed with the Prometheus text parser.
func TestAgentMetricsAndWatchdog(t *testing.T) {
	c := New(t, Options{Nodes: 2, NoStart: true, ExtraConfig: `metrics_addr = "0.0.0.0:9464"`})
	c.Start(0)
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	t.Setenv("NOTIFY_SOCKET", path)      // the agent's alone: the server started without
	t.Setenv("WATCHDOG_USEC", "8000000") // rounds of 4 s: a check answers within that even on a loaded machine
	c.Start(1)
	c.Apply(DemoManifest(2))
	c.WaitAppReady("web", 2, appTimeout)
	vip := c.VIP("web")

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: dialIn(c.Nodes[1].NetnsPath()), DisableKeepAlives: true}}
	scrape := func() (metricstest.Families, error) {
		return metricstest.Scrape(hc, "http://127.0.0.1:9464/metrics")
	}
	var fams metricstest.Families
	c.WaitFor("the agent's skiff_service_connections_per_second{service=web} > 0", 60*time.Second, func() (bool, error) {
		Hit(c.Nodes[1].NetnsPath(), vip, 20)
		var err error
		if fams, err = scrape(); err != nil {
			return false, err
		}
		v, ok := fams.Value("skiff_service_connections_per_second", "service", "web")
		return ok && v > 0, nil
	})
	probes, _ := fams.Value("skiff_probe_results_total", "probe", "readiness", "result", "success")
	syncs, _ := fams.Value("skiff_lb_sync_duration_seconds")
	rate, _ := fams.Value("skiff_service_connections_per_second", "service", "web")
	t.Logf("agent: web %.1f new connections/s, %v readiness successes, %v load balancer syncs", rate, probes, syncs)
	if probes < 1 {
		t.Errorf("skiff_probe_results_total{probe=readiness,result=success} = %v, want > 0 (a web pod on the agent?)", probes)
	}
	if syncs < 1 {
		t.Errorf("skiff_lb_sync_duration_seconds count = %v, want > 0", syncs)
	}
	if fams["go_goroutines"] == nil {
		t.Errorf("the agent's registry lacks the Go collector")
	}

	// The watchdog: fed, and its check covers the agent's loops.
	got := map[string]int{}
	buf := make([]byte, 4096)
	deadline := time.Now().Add(60 * time.Second)
	for got["WATCHDOG=1"] < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("in 60s the agent sent %v; want READY=1 and 3 WATCHDOG=1", got)
		}
		sock.SetReadDeadline(time.Now().Add(time.Second))
		n, err := sock.Read(buf)
		if err != nil && !os.IsTimeout(err) {
			t.Fatal(err)
		}
		if n > 0 {
			got[string(buf[:n])]++
		}
	}
	log, err := os.ReadFile(c.Nodes[1].Log)
	if err != nil {
		t.Fatal(err)
	}
	var watched []string
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "loop watched by the watchdog") {
			watched = append(watched, line)
		}
	}
	for _, loop := range []string{"agent pods", "agent lb sync", "agent cache"} {
		if !strings.Contains(strings.Join(watched, "\n"), loop) {
			t.Errorf("the agent's %q loop is not watched by the watchdog; registered:\n%s", loop, strings.Join(watched, "\n"))
		}
	}
	if strings.Contains(string(log), "watchdog: not alive") {
		t.Errorf("the agent's watchdog found a loop stuck")
	}
}
