package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/controller"
)

// steadyFlapManifest: two apps on one node, observed at the same time.
//
//   - steady starts at 2 replicas with target 20 new connections/s each and
//     gets 41/s, 1.025 of 2×20: ceil(41/20) is 3, so it is the ±10% band
//     around 40 that keeps it at 2 (a band that failed would scale it up),
//     and a measurement up to 44/s (+7%) still asks for 2; the rates are
//     counter deltas over 2 s, and the generator never bursts. Its window
//     down is the default 60 s.
//   - flap gets 55/s and nothing in turns of 20 s: 55/s asks for 3
//     (ceil(55/20), and 55 is within 10% of 3×20), nothing asks for min 1,
//     and its window down is 4 s, so without the bound on direction
//     changes it would go 1 → 3 → 1 every 40 s cycle.
const steadyFlapManifest = `
[app.steady]
replicas = 2
termination_grace = "2s"

[app.steady.autoscale]
min = 1
max = 4
target_rps = 20

[app.steady.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
ports = { http = 8080 }
cpu = 0.1
memory = "32Mi"

[app.steady.container.http.readiness]
http_get = "/healthz"
port = "http"
period = "1s"

[service.steady]
app = "steady"
port = 80
target_port = "http"

[app.flap]
replicas = 1
termination_grace = "2s"

[app.flap.autoscale]
min = 1
max = 3
target_rps = 20
scale_down_window = "4s"

[app.flap.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
ports = { http = 8080 }
cpu = 0.1
memory = "32Mi"

[app.flap.container.http.readiness]
http_get = "/healthz"
port = "http"
period = "1s"

[service.flap]
app = "flap"
port = 80
target_port = "http"
`

// TestAutoscaleSteadyAndFlapE2E: real pods, real traffic through the
// node's load balancer, two apps observed over the same 3 minutes.
//
//   - steady: a constant 41 new connections/s inside the tolerance band of
//     its 2 replicas (over 2×20): no scaling decision, no Autoscaled event, its count
//     stays 2, and no request fails.
//   - flap: 55/s on and off every 20 s with a 4 s window down: it scales
//     up and down at least once each, and the server's bound on direction
//     changes (controller.DefaultConfig: 3 within 10 minutes, after which
//     scale downs wait; scale ups never wait, so one more change, an up,
//     may follow) stops the flapping: at most MaxReversals+1 direction
//     changes where the load alone would make about 9, and the server logs
//     the held scale down.
func TestAutoscaleSteadyAndFlapE2E(t *testing.T) {
	const (
		observe     = 3 * time.Minute
		half        = 20 * time.Second // on, then off
		steadyRate  = 41
		flapRate    = 55
		steadyCount = 2
	)
	def := controller.DefaultConfig()
	if def.ReversalWindow < observe+time.Minute {
		t.Fatalf("the reversal window %v does not cover the %v observed", def.ReversalWindow, observe)
	}
	bound := def.MaxReversals + 1

	n := newNode(t)
	n.start()
	manifest := filepath.Join(n.dir, "steadyflap.toml")
	if err := os.WriteFile(manifest, []byte(steadyFlapManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := n.skiff("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	n.waitReady("steady", "steady", steadyCount, 90*time.Second)
	n.waitReady("flap", "flap", 1, 90*time.Second)
	steadyURL := "http://" + n.vip("steady") + "/"
	flapURL := "http://" + n.vip("flap") + "/"
	for _, u := range []string{steadyURL, flapURL} {
		n.waitFor("the VIP "+u+" to answer", 10*time.Second, func() (bool, error) {
			_, err := get(u)
			return err == nil, nil
		})
	}
	// The autoscaler's first pass of an app writes its starting count
	// (no decision); wait for it so that status is there to compare.
	n.waitFor("the autoscale status of both apps", 10*time.Second, func() (bool, error) {
		for _, name := range []string{"steady", "flap"} {
			a, err := n.c.GetApp(context.Background(), name)
			if err != nil || a.Status.Autoscale == nil {
				return false, err
			}
		}
		return true, nil
	})
	if a, err := n.c.GetApp(context.Background(), "steady"); err != nil || len(a.Status.Autoscale.Decisions) != 0 || a.Status.Autoscale.Desired != steadyCount {
		t.Fatalf("steady before the load: %v %+v", err, a.Status.Autoscale)
	}

	gs := startSteadyLoad(steadyURL, steadyRate)
	t.Cleanup(gs.close)
	gf := startSteadyLoad(flapURL, flapRate)
	t.Cleanup(gf.close)
	// The on/off schedule of flap's load (the load pattern, not a wait).
	stopToggle := make(chan struct{})
	toggleDone := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-stopToggle:
		default:
			close(stopToggle)
		}
		<-toggleDone
	})
	go func() {
		defer close(toggleDone)
		tick := time.NewTicker(half)
		defer tick.Stop()
		on := true
		for {
			select {
			case <-stopToggle:
				return
			case <-tick.C:
			}
			on = !on
			if on {
				gf.perSec.Store(flapRate)
			} else {
				gf.perSec.Store(0)
			}
		}
	}()

	// Observe: every decision of both apps (from their status, polled
	// faster than the autoscaler decides), steady's count, and steady's
	// measured rate.
	start := time.Now()
	seen := map[string]map[time.Time]api.ScaleDecision{"steady": {}, "flap": {}}
	var steadyRates []float64
	steadyCounts := map[int]int{}
	polls := 0
	for time.Since(start) < observe {
		for name, ds := range seen {
			a, err := n.c.GetApp(context.Background(), name)
			if err != nil || a.Status.Autoscale == nil {
				continue
			}
			for _, d := range a.Status.Autoscale.Decisions {
				ds[d.Time] = d
			}
			if name == "steady" {
				steadyCounts[a.Status.Autoscale.Desired]++
			}
		}
		if s, err := n.c.ServiceStats(context.Background(), "steady"); err == nil && s.Nodes > 0 {
			steadyRates = append(steadyRates, s.NewPerSec)
		}
		polls++
		select {
		case <-n.exited:
			t.Fatalf("skiff exited during the observation:\n%s", tail(n.log.String(), 80))
		case <-time.After(250 * time.Millisecond):
		}
	}
	close(stopToggle)
	gs.close()
	gf.close()
	elapsed := time.Since(start)

	sorted := func(ds map[time.Time]api.ScaleDecision) []api.ScaleDecision {
		out := make([]api.ScaleDecision, 0, len(ds))
		for _, d := range ds {
			out = append(out, d)
		}
		slices.SortFunc(out, func(a, b api.ScaleDecision) int { return a.Time.Compare(b.Time) })
		return out
	}
	autoscaledEvents := func(app string) (int, []string) {
		l, err := n.c.ListEvents(context.Background(), "apps/"+app)
		if err != nil {
			t.Fatalf("events of %s: %v", app, err)
		}
		sum, msgs := 0, []string(nil)
		for _, e := range l.Items {
			if e.Reason == "Autoscaled" {
				sum += max(e.Count, 1)
				msgs = append(msgs, fmt.Sprintf("%s (x%d)", e.Message, e.Count))
			}
		}
		return sum, msgs
	}

	// steady: nothing.
	sd := sorted(seen["steady"])
	evs, msgs := autoscaledEvents("steady")
	slices.Sort(steadyRates)
	if len(steadyRates) > 0 {
		t.Logf("steady: %d polls over %v, measured %.1f/%.1f/%.1f new conn/s (min/median/max) against %d sent, counts seen %v, %d ok, %d failed, %d sends dropped by stalls",
			polls, elapsed.Round(time.Second), steadyRates[0], steadyRates[len(steadyRates)/2], steadyRates[len(steadyRates)-1], steadyRate,
			steadyCounts, gs.ok.Load(), gs.failed.Load(), gs.dropped.Load())
	} else {
		t.Errorf("steady: no load reported in %v", elapsed)
	}
	if len(sd) != 0 || evs != 0 {
		t.Errorf("steady load inside the band: %d decisions %v, %d Autoscaled events %v; want none", len(sd), sd, evs, msgs)
	}
	for c := range steadyCounts {
		if c != steadyCount {
			t.Errorf("steady's count was %d during the observation (%v), want always %d", c, steadyCounts, steadyCount)
		}
	}
	if f := gs.failed.Load(); f != 0 || gs.ok.Load() == 0 {
		gs.mu.Lock()
		t.Errorf("steady: %d ok, %d failed requests: %v", gs.ok.Load(), f, gs.errs)
		gs.mu.Unlock()
	}

	// flap: up and down, then held by the bound.
	fd := sorted(seen["flap"])
	ups, downs, changes, last := 0, 0, 0, 0
	for _, d := range fd {
		dir := 1
		if d.To < d.From {
			dir = -1
			downs++
		} else {
			ups++
		}
		if last != 0 && dir != last {
			changes++
		}
		last = dir
		t.Logf("flap at +%v: %s", d.Time.Sub(start).Round(100*time.Millisecond), d.Message)
	}
	t.Logf("flap: %d decisions (%d up, %d down), %d direction changes, bound %d (%d reversals in %v, then one up); load %d ok, %d failed",
		len(fd), ups, downs, changes, bound, def.MaxReversals, def.ReversalWindow, gf.ok.Load(), gf.failed.Load())
	if ups == 0 || downs == 0 {
		t.Errorf("flap: %d up, %d down under load on/off every %v; want at least one of each", ups, downs, half)
	}
	if changes > bound {
		t.Errorf("flap: %d direction changes in %v, want at most %d", changes, elapsed.Round(time.Second), bound)
	}
	if evs, msgs := autoscaledEvents("flap"); evs != len(fd) {
		t.Errorf("flap: %d Autoscaled events %v, but %d decisions seen in its status", evs, msgs, len(fd))
	}
	// The bound, not the timing, is what ended the flapping: the server
	// held a scale down for it.
	held := ""
	for _, l := range strings.Split(n.log.String(), "\n") {
		if strings.Contains(l, "autoscale held") && strings.Contains(l, "app=flap") && strings.Contains(l, "direction changes") {
			held = l
			break
		}
	}
	if held == "" {
		t.Errorf("flap: no scale down held for the bound on direction changes in the server's log")
	} else {
		t.Logf("flap held: %s", held)
	}
}
