package agent_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// autoscaleManifest: one replica's target is 25 new connections/s, and the
// window down is short so that the test stays short.
const autoscaleManifest = `
[app.web]
replicas = 1
termination_grace = "2s"

[app.web.autoscale]
min = 1
max = 5
target_rps = 25
scale_down_window = "8s"

[app.web.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
ports = { http = 8080 }
cpu = 0.1
memory = "32Mi"

[app.web.container.http.readiness]
http_get = "/healthz"
port = "http"
period = "1s"

[service.web]
app = "web"
port = 80
target_port = "http"

# The baseline: the same pods, scaled by hand.
[app.base]
replicas = 1
termination_grace = "2s"

[app.base.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
ports = { http = 8080 }
cpu = 0.1
memory = "32Mi"

[app.base.container.http.readiness]
http_get = "/healthz"
port = "http"
period = "1s"
`

// loadGen sends GETs, each on a new connection, at a rate it can change,
// and counts the answers per pod and the failures.
type loadGen struct {
	url    string
	perSec atomic.Int64
	ok     atomic.Int64
	failed atomic.Int64
	// dropped counts the sends a steady generator skipped after a stall.
	dropped atomic.Int64
	mu      sync.Mutex
	byPod   map[string]int
	errs    []string
	stop    chan struct{}
	stopped sync.Once
	done    sync.WaitGroup
}

func startLoad(url string, perSec int) *loadGen {
	return startLoadGen(url, perSec, false)
}

// startSteadyLoad is startLoad that never bursts: when the generator falls
// behind (a stall of the loaded machine), it drops the missed sends
// instead of catching up, so that no measuring interval sees more than
// the set rate.
func startSteadyLoad(url string, perSec int) *loadGen {
	return startLoadGen(url, perSec, true)
}

func startLoadGen(url string, perSec int, steady bool) *loadGen {
	g := &loadGen{url: url, byPod: map[string]int{}, stop: make(chan struct{})}
	g.perSec.Store(int64(perSec))
	g.done.Add(1)
	go func() {
		defer g.done.Done()
		next := time.Now()
		for {
			r := g.perSec.Load()
			if r <= 0 {
				r = 1
			}
			next = next.Add(time.Second / time.Duration(r))
			if now := time.Now(); steady && now.Sub(next) > time.Second/time.Duration(r) {
				g.dropped.Add(int64(now.Sub(next) * time.Duration(r) / time.Second))
				next = now
			}
			select {
			case <-g.stop:
				return
			case <-time.After(time.Until(next)):
			}
			if g.perSec.Load() == 0 {
				continue
			}
			g.done.Add(1)
			go func() {
				defer g.done.Done()
				body, err := get(g.url)
				g.mu.Lock()
				defer g.mu.Unlock()
				if err != nil {
					g.failed.Add(1)
					if len(g.errs) < 5 {
						g.errs = append(g.errs, err.Error())
					}
					return
				}
				g.ok.Add(1)
				g.byPod[strings.TrimSpace(strings.TrimPrefix(body, "hello from "))]++
			}()
		}
	}()
	return g
}

// close stops the generator and waits for its requests; it may be called
// again (a test's own stop and its t.Cleanup).
func (g *loadGen) close() {
	g.stopped.Do(func() { close(g.stop) })
	g.done.Wait()
}

// since returns the answers per pod since the last call.
func (g *loadGen) take() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.byPod
	g.byPod = map[string]int{}
	return out
}

func autoscaleStatus(t *testing.T, n *node) *api.AutoscaleStatus {
	a, err := n.c.GetApp(context.Background(), "web")
	if err != nil || a.Status.Autoscale == nil {
		return &api.AutoscaleStatus{}
	}
	return a.Status.Autoscale
}

// TestAutoscaleE2E: real pods, real traffic through the node's load
// balancer. A step to 90 new connections/s (3.6x one replica's target)
// brings the app to 4 ready replicas and the load spreads over them; when
// the load falls to a trickle, the app returns to 1 after the window and
// not before, without a failed request; a restart of the server and agent
// (kill -9) keeps the count and makes no decision from the counters'
// history.
func TestAutoscaleE2E(t *testing.T) {
	n := newNode(t)
	n.start()
	manifest := filepath.Join(n.dir, "autoscale.toml")
	if err := os.WriteFile(manifest, []byte(autoscaleManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := n.skiff("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	n.waitReady("web", "web", 1, 60*time.Second)
	n.waitReady("base", "", 1, 60*time.Second)
	// Baseline: 1 → 4 by hand, the pods' start alone.
	manual := time.Now()
	if out, err := n.skiff("scale", "app", "base", "--replicas", "4"); err != nil {
		t.Fatalf("scale base: %v\n%s", err, out)
	}
	n.waitReady("base", "", 4, 30*time.Second)
	t.Logf("baseline: skiff scale 1 → 4, ready in %v", time.Since(manual).Round(10*time.Millisecond))
	if out, err := n.skiff("scale", "app", "web", "--replicas", "4"); err == nil || !strings.Contains(out, "[app.web.autoscale]") {
		t.Errorf("skiff scale of an autoscaled app: %v\n%s", err, out)
	}
	url := "http://" + n.vip("web") + "/"
	n.waitFor("the VIP to answer", 10*time.Second, func() (bool, error) {
		_, err := get(url)
		return err == nil, nil
	})

	// Step load.
	step := time.Now()
	g := startSteadyLoad(url, 90) // no catch-up bursts after a stall: they would ask for 5
	defer g.close()
	n.waitReady("web", "web", 4, 30*time.Second)
	toReady := time.Since(step)
	st := autoscaleStatus(t, n)
	if len(st.Decisions) == 0 {
		t.Fatalf("4 pods ready and no scaling decision in the status: %+v", st)
	}
	t.Logf("step: autoscaled 1 → 4 replicas ready in %v (%s)", toReady.Round(10*time.Millisecond), st.Decisions[len(st.Decisions)-1].Message)
	if st.Desired != 4 {
		t.Errorf("desired %d under 90 req/s with target 25, want 4", st.Desired)
	}
	// Spread: every pod answers once the endpoints include it.
	g.take()
	n.waitFor("all 4 pods to answer", 10*time.Second, func() (bool, error) {
		return len(g.take()) == 4, nil
	})
	// The per-endpoint rates show the spread too, once a report covers it.
	n.waitFor("per-endpoint rates of 4 endpoints", 10*time.Second, func() (bool, error) {
		s, err := n.c.ServiceStats(context.Background(), "web")
		if err != nil || len(s.Endpoints) != 4 {
			return false, err
		}
		for _, e := range s.Endpoints {
			if e.NewPerSec == 0 {
				return false, nil
			}
		}
		t.Logf("service stats under load: %.1f new conn/s over %+v", s.NewPerSec, s.Endpoints)
		return true, nil
	})

	// Load falls to a trickle: 1 after the window, not before.
	failedBefore := g.failed.Load()
	g.perSec.Store(5)
	drop := time.Now()
	n.waitFor("scale down to 1", 40*time.Second, func() (bool, error) {
		return autoscaleStatus(t, n).Desired == 1, nil
	})
	st = autoscaleStatus(t, n)
	last := st.Decisions[len(st.Decisions)-1]
	t.Logf("scale down decided %v after the load fell (window 8s): %s", last.Time.Sub(drop).Round(10*time.Millisecond), last.Message)
	if last.Time.Sub(drop) < 8*time.Second {
		t.Errorf("scaled down %v after the load fell, before the 8s window", last.Time.Sub(drop))
	}
	n.waitReady("web", "web", 1, 30*time.Second)
	if f := g.failed.Load(); f != 0 {
		g.mu.Lock()
		t.Errorf("%d failed requests (%d before the scale down): %v", f, failedBefore, g.errs)
		g.mu.Unlock()
	}
	decisions := len(st.Decisions)

	// kill -9 and restart under the trickle: the count holds and the
	// counters' history makes no rate, so no decision.
	n.kill()
	n.start()
	if got := autoscaleStatus(t, n).Desired; got != 1 {
		t.Errorf("after a restart desired %d, want 1 (from the store)", got)
	}
	n.waitFor("load reports after the restart", 15*time.Second, func() (bool, error) {
		s, err := n.c.ServiceStats(context.Background(), "web")
		return err == nil && s.Nodes > 0, nil
	})
	// Two reporting intervals and a few autoscaler passes.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		s, err := n.c.ServiceStats(context.Background(), "web")
		if err == nil && s.NewPerSec > 25*1.1 {
			t.Errorf("after a restart the service reports %.1f new conn/s under a 5/s trickle", s.NewPerSec)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if st := autoscaleStatus(t, n); len(st.Decisions) != decisions || st.Desired != 1 {
		t.Errorf("after a restart: desired %d, decisions %d → %d: %v", st.Desired, decisions, len(st.Decisions), st.Decisions[decisions:])
	}
	out, err := n.skiff("get", "apps")
	if err != nil || !strings.Contains(out, "[1-5]") {
		t.Errorf("skiff get apps: %v\n%s", err, out)
	}
	t.Logf("skiff get apps:\n%s", out)
	out, err = n.skiff("describe", "app", "web")
	if err != nil || !strings.Contains(out, "scaled 1 → ") {
		t.Errorf("skiff describe app web: %v\n%s", err, out)
	}
}

const cpuManifest = `
[app.burn]
replicas = 1
termination_grace = "2s"

[app.burn.autoscale]
min = 1
max = 3
target_cpu = 0.5
scale_down_window = "5s"

[app.burn.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
ports = { http = 8080 }
cpu = 0.1
memory = "32Mi"

[app.burn.container.http.readiness]
http_get = "/healthz"
port = "http"
period = "1s"

[service.burn]
app = "burn"
port = 80
target_port = "http"
`

// TestAutoscaleCPUE2E: an app with a CPU target only scales on its pods'
// CPU, read from their cgroups: requests that spin the CPU past half of
// the requested 0.1 core bring more replicas, and the decision names the
// cores.
func TestAutoscaleCPUE2E(t *testing.T) {
	n := newNode(t)
	n.start()
	manifest := filepath.Join(n.dir, "cpu.toml")
	if err := os.WriteFile(manifest, []byte(cpuManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := n.skiff("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	n.waitReady("burn", "burn", 1, 60*time.Second)
	url := "http://" + n.vip("burn") + "/burn?ms=100"
	n.waitFor("the VIP to answer", 10*time.Second, func() (bool, error) {
		_, err := get(url)
		return err == nil, nil
	})
	g := startLoad(url, 20)
	defer g.close()
	var st *api.AutoscaleStatus
	n.waitFor("a scale up on cpu", 40*time.Second, func() (bool, error) {
		a, err := n.c.GetApp(context.Background(), "burn")
		if err != nil || a.Status.Autoscale == nil {
			return false, err
		}
		st = a.Status.Autoscale
		return st.Desired >= 2, nil
	})
	d := st.Decisions[len(st.Decisions)-1]
	t.Logf("cpu: %s", d.Message)
	if !strings.Contains(d.Message, "cores over") || strings.Contains(d.Message, "req/s") {
		t.Errorf("decision %q: want one on cores alone", d.Message)
	}
}

const zeroManifest = `
[app.zero]
replicas = 1
termination_grace = "2s"

[app.zero.autoscale]
min = 0
max = 2
target_rps = 25
scale_down_window = "2s"
idle_window = "3s"

[app.zero.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
ports = { http = 8080 }
cpu = 0.1
memory = "32Mi"

[app.zero.container.http.readiness]
http_get = "/healthz"
port = "http"
period = "1s"

[service.zero]
app = "zero"
port = 80
target_port = "http"
`

// TestScaleToZeroE2E: an idle app goes to zero pods after its idle window;
// then 50 concurrent requests to its cluster IP are held by the node's
// activator, which wakes the app, and all of them succeed once its pod is
// ready. It reports the first and last response's latency.
func TestScaleToZeroE2E(t *testing.T) {
	n := newNode(t)
	n.start()
	manifest := filepath.Join(n.dir, "zero.toml")
	if err := os.WriteFile(manifest, []byte(zeroManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := n.skiff("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	n.waitReady("zero", "zero", 1, 60*time.Second)
	vip := n.vip("zero")
	n.waitFor("zero pods after the idle window", 60*time.Second, func() (bool, error) {
		all, err := n.c.ListPods(context.Background(), "zero", "")
		return err == nil && len(all.Items) == 0, err
	})
	n.waitFor("the activator's redirect for the service", 10*time.Second, func() (bool, error) {
		out, err := exec.Command("iptables-save", "-t", "nat").Output()
		ip := strings.Split(vip, ":")[0]
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, ip+"/32") && strings.Contains(l, "REDIRECT") {
				return true, nil
			}
		}
		return false, err
	})

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	const conc = 50
	start := time.Now()
	lat := make([]time.Duration, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get("http://" + vip + "/")
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("http %d", resp.StatusCode)
				}
			}
			lat[i], errs[i] = time.Since(start), err
		}()
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			t.Logf("request failed: %v", err)
		}
	}
	slices.Sort(lat)
	t.Logf("cold start from zero: %d concurrent requests, first answer after %v, last after %v, %d failed",
		conc, lat[0].Round(time.Millisecond), lat[conc-1].Round(time.Millisecond), failed)
	if failed > 0 {
		t.Errorf("%d of %d requests failed", failed, conc)
	}
	a, err := n.c.GetApp(context.Background(), "zero")
	if err != nil {
		t.Fatal(err)
	}
	if st := a.Status.Autoscale; st == nil || st.Desired < 1 {
		t.Errorf("after the wake: %+v", a.Status.Autoscale)
	} else {
		t.Logf("decisions: %v", st.Decisions)
	}
}
