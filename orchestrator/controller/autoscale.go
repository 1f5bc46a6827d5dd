package controller

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// The autoscaler sets the replicas of apps with [app.NAME.autoscale] from
// the load the nodes report (orchestrator/loadstats): new connections per
// second at the load balancers against target_rps per replica, and the
// pods' CPU against target_cpu of the requested CPU; the larger count
// wins, within min..max.
//
//   - Up at once: a recommendation above the current count is applied on
//     the pass that sees it (load reports come every 2 s, passes every
//     AutoscaleInterval).
//   - Down after a window: the count falls only to the largest
//     recommendation of the last scale_down_window (default 60 s), and only
//     once recommendations cover the whole window (so a server restart
//     first waits a full window again).
//   - Tolerance: a metric within ±tolerance (default 10%) of its target
//     for the current count recommends the current count.
//   - Direction changes: a scale down after a scale up, or an up after a
//     down, is a reversal; once MaxReversals are within ReversalWindow,
//     scale downs wait. Scale ups are never held (a held scale up drops
//     requests), so a window sees at most MaxReversals+1 changes.
//   - No data, no decision: without a fresh report, or with a report whose
//     counters were reset within its interval (partial), nothing changes.
//
// The decision lives in the store: App.Status.Autoscale.Desired is the
// count the app controller runs (desiredReplicas), written with an event
// that names the inputs. The spec's replicas is only where an autoscaled
// app starts, so an apply of the manifest never fights the autoscaler.

// LoadSource is the load the autoscaler reads: the app's services' rates
// and its pods' CPU, summed over the nodes. Satisfied by
// *loadstats.Registry.
type LoadSource interface {
	App(app string, services []string) api.AppLoad
}

// Autoscaler defaults.
const (
	defaultAutoscaleInterval = time.Second
	defaultMaxReversals      = 3
	defaultReversalWindow    = 10 * time.Minute
	// maxDecisions is how many decisions an app's status keeps.
	maxDecisions = 10
)

// desiredReplicas is the count the app controller keeps: the autoscaler's
// for an autoscaled app, the spec's otherwise.
func desiredReplicas(app *api.App) int {
	if as := app.Spec.Autoscale; as != nil {
		if st := app.Status.Autoscale; st != nil {
			return clampReplicas(st.Desired, as)
		}
		return startReplicas(&app.Spec)
	}
	return replicasOf(&app.Spec)
}

// startReplicas is where an autoscaled app starts: its replicas clamped to
// min..max.
func startReplicas(s *configs.AppSpec) int {
	return clampReplicas(replicasOf(s), s.Autoscale)
}

func clampReplicas(n int, as *configs.AutoscaleSpec) int {
	return min(max(n, as.Min), max(as.Max, as.Min))
}

func tolerance(as *configs.AutoscaleSpec) float64 {
	if as.Tolerance > 0 {
		return as.Tolerance
	}
	return configs.DefaultTolerance
}

func idleWindow(as *configs.AutoscaleSpec) time.Duration {
	if as.IdleWindow > 0 {
		return as.IdleWindow.D()
	}
	return configs.DefaultIdleWindow.D()
}

func downWindow(as *configs.AutoscaleSpec) time.Duration {
	if as.ScaleDownWindow > 0 {
		return as.ScaleDownWindow.D()
	}
	return configs.DefaultScaleDownWindow.D()
}

// requestedCPU is the CPU a pod of the app requests: the sum over its
// containers, in cores.
func requestedCPU(s *configs.AppSpec) float64 {
	var sum float64
	for _, c := range s.Containers {
		if c != nil {
			sum += c.CPU
		}
	}
	return sum
}

// recommend returns the replicas the load asks for, clamped to min..max,
// and the inputs in words; ok is false without data to decide on.
func recommend(as *configs.AutoscaleSpec, cur int, l api.AppLoad, reqCPU float64) (n int, why string, ok bool) {
	if l.Nodes == 0 || l.Partial {
		return 0, "", false
	}
	tol := tolerance(as)
	cur = max(cur, 1)
	// ceil without float noise: 300.0000001/100 is 3, not 4.
	ceil := func(x float64) int { return int(math.Ceil(x - 1e-9)) }
	if as.TargetRPS > 0 {
		want := ceil(l.RPS / as.TargetRPS)
		if math.Abs(l.RPS/(float64(cur)*as.TargetRPS)-1) <= tol {
			want = cur
		}
		n, ok = want, true
		why = fmt.Sprintf("%.0f req/s over %d %s, target %g/replica", l.RPS, l.Nodes, plural(l.Nodes, "node"), as.TargetRPS)
	}
	if per := as.TargetCPU * reqCPU; per > 0 && l.Pods > 0 {
		want := ceil(l.CPU / per)
		if math.Abs(l.CPU/(float64(l.Pods)*per)-1) <= tol {
			want = cur
		}
		cpuWhy := fmt.Sprintf("%.2f cores over %d %s, target %g×%g cores/replica", l.CPU, l.Pods, plural(l.Pods, "pod"), as.TargetCPU, reqCPU)
		switch {
		case !ok || want > n:
			n, why = want, cpuWhy
		case why != "":
			why += "; " + cpuWhy
		}
		ok = true
	}
	if !ok {
		return 0, "", false
	}
	if as.Min == 0 {
		// Scale to zero: only an app with no connection at all may go to
		// zero (after the idle window, see decide); any traffic keeps one.
		if l.RPS > 0 || l.Active > 0 {
			n = max(n, 1)
		} else {
			n = 0
		}
	}
	return clampReplicas(n, as), why, true
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// recommendation is one pass's recommendation for an app.
type recommendation struct {
	at time.Time
	n  int
}

// appScaler is the autoscaler's memory of one app: the recommendations of
// the last window, and since when they run without a gap. It is only
// ever a reason to wait: losing it (a restart) delays a scale down by one
// window, never causes one.
type appScaler struct {
	recs  []recommendation
	since time.Time
	// busy is the last time a recommendation was above zero.
	busy time.Time
}

// observe records n at now, or a gap when ok is false, and drops what is
// older than window.
func (s *appScaler) observe(n int, ok bool, now time.Time, window time.Duration) {
	if !ok {
		s.recs, s.since = nil, time.Time{}
		return
	}
	if s.since.IsZero() {
		s.since = now
	}
	if n > 0 {
		s.busy = now
	}
	cut := now.Add(-window)
	keep := s.recs[:0]
	for _, r := range s.recs {
		if !r.at.Before(cut) {
			keep = append(keep, r)
		}
	}
	s.recs = append(keep, recommendation{at: now, n: n})
}

// decide returns the count to scale to from cur, or cur with a reason to
// hold. st is the app's autoscale status (reversals, last direction).
func (s *appScaler) decide(cur int, now time.Time, window, idle time.Duration, st *api.AutoscaleStatus, maxRev int, revWindow time.Duration) (to int, held string) {
	if len(s.recs) == 0 {
		return cur, "no data"
	}
	last := s.recs[len(s.recs)-1].n
	switch {
	case last > cur:
		return last, ""
	case last == cur:
		return cur, ""
	}
	if now.Sub(s.since) < window {
		return cur, fmt.Sprintf("scale down waits for %v of load data (has %v)", window, now.Sub(s.since).Truncate(time.Second))
	}
	to = 0
	for _, r := range s.recs {
		to = max(to, r.n)
	}
	if to == 0 {
		// To zero only after the idle window without a connection, counted
		// from the last busy recommendation, the start of the data and the
		// last change (a wake-up).
		quiet := min(now.Sub(s.busy), now.Sub(s.since), now.Sub(st.LastScale))
		if quiet < idle {
			to = 1
		}
	}
	if to >= cur {
		return cur, ""
	}
	if st.LastDirection > 0 && reversalsSince(st, now.Add(-revWindow)) >= maxRev {
		return cur, fmt.Sprintf("%d direction changes within %v", maxRev, revWindow)
	}
	return to, ""
}

func reversalsSince(st *api.AutoscaleStatus, cut time.Time) int {
	n := 0
	for _, t := range st.Reversals {
		if !t.Before(cut) {
			n++
		}
	}
	return n
}

// runAutoscaler runs a pass every AutoscaleInterval until ctx ends. A
// pass that found nothing to do (no autoscaled app, no autoscale state
// left to clear) does not run again until the store changes: without an
// autoscaled app the load is never read, so the store alone decides, and
// an idle cluster pays one revision read a tick instead of decoding every
// app and service (a tenth of an idle node's CPU).
func (c *controller) runAutoscaler(ctx context.Context) {
	t := time.NewTicker(c.cfg.AutoscaleInterval)
	defer t.Stop()
	scalers := map[string]*appScaler{}
	idleRev := int64(-1) // the revision at which the last pass had nothing to do
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rev := c.st.Rev()
		if rev == idleRev {
			continue
		}
		idleRev = -1
		active, err := c.autoscalePass(scalers)
		if err != nil {
			c.log.Warn("autoscale pass failed", "err", err)
			continue
		}
		if !active {
			idleRev = rev
		}
	}
}

// autoscalePass looks at every app once: it reads the store, and writes
// only an app whose desired count changes (or whose autoscale state must
// start or end). active reports whether there was anything to look at:
// an autoscaled app, or autoscale state to clear.
func (c *controller) autoscalePass(scalers map[string]*appScaler) (active bool, err error) {
	var apps []api.App
	if _, err := c.st.List(api.KindApp, &apps); err != nil {
		return true, err
	}
	for i := range apps {
		if apps[i].Spec.Autoscale != nil || apps[i].Status.Autoscale != nil {
			active = true
		}
	}
	if !active {
		clear(scalers)
		return false, nil
	}
	var svcs []api.Service
	if _, err := c.st.List(api.KindService, &svcs); err != nil {
		return true, err
	}
	byApp := map[string][]string{}
	for _, s := range svcs {
		byApp[s.Spec.App] = append(byApp[s.Spec.App], s.Name)
	}
	now := c.cfg.Now()
	seen := map[string]bool{}
	var errs []error
	for i := range apps {
		app := &apps[i]
		seen[app.Name] = true
		as := app.Spec.Autoscale
		if as == nil || app.Spec.Mode == configs.ModePerNode {
			delete(scalers, app.Name)
			if app.Status.Autoscale != nil {
				errs = append(errs, c.writeAutoscale(app.Name, app.Status.Autoscale, nil, nil))
			}
			continue
		}
		sc := scalers[app.Name]
		if sc == nil {
			sc = &appScaler{}
			scalers[app.Name] = sc
		}
		st := app.Status.Autoscale
		if st == nil {
			// The first pass of an autoscaled app: start from the spec.
			errs = append(errs, c.writeAutoscale(app.Name, nil, &api.AutoscaleStatus{Desired: startReplicas(&app.Spec)}, nil))
			continue
		}
		cur := desiredReplicas(app)
		window := downWindow(as)
		n, why, ok := recommend(as, cur, c.cfg.Load.App(app.Name, byApp[app.Name]), requestedCPU(&app.Spec))
		sc.observe(n, ok, now, window)
		to, held := sc.decide(cur, now, window, idleWindow(as), st, c.cfg.MaxReversals, c.cfg.ReversalWindow)
		if to == cur {
			if held != "" && ok && n != cur {
				c.log.Debug("autoscale held", "app", app.Name, "want", n, "replicas", cur, "why", held)
			}
			if cur != st.Desired { // min or max changed under it
				next := *st
				next.Desired = cur
				errs = append(errs, c.writeAutoscale(app.Name, st, &next, nil))
			}
			continue
		}
		next := *st
		next.Reversals = append([]time.Time(nil), st.Reversals...)
		dir := 1
		if to < cur {
			dir = -1
		}
		if st.LastDirection != 0 && dir != st.LastDirection {
			next.Reversals = append(next.Reversals, now)
		}
		// Keep only the reversals the bound still counts.
		cut := now.Add(-c.cfg.ReversalWindow)
		kept := next.Reversals[:0]
		for _, t := range next.Reversals {
			if !t.Before(cut) {
				kept = append(kept, t)
			}
		}
		next.Reversals = kept
		next.Desired, next.LastScale, next.LastDirection = to, now, dir
		d := api.ScaleDecision{Time: now, From: cur, To: to, Message: fmt.Sprintf("scaled %d → %d: %s", cur, to, why)}
		l := c.cfg.Load.App(app.Name, byApp[app.Name])
		d.RPS, d.CPU, d.Nodes = l.RPS, l.CPU, l.Nodes
		next.Decisions = append(append([]api.ScaleDecision(nil), st.Decisions...), d)
		if len(next.Decisions) > maxDecisions {
			next.Decisions = next.Decisions[len(next.Decisions)-maxDecisions:]
		}
		if err := c.writeAutoscale(app.Name, st, &next, &d); err != nil {
			errs = append(errs, err)
			continue
		}
		c.log.Info("autoscaled", "app", app.Name, "from", cur, "to", to, "why", why)
	}
	for name := range scalers {
		if !seen[name] {
			delete(scalers, name)
		}
	}
	return true, errors.Join(errs...)
}

// errAutoscaleMoved says the app's autoscale state changed since the
// pass read it; the next pass decides again.
var errAutoscaleMoved = errors.New("autoscale state changed under the pass")

// writeAutoscale replaces the app's autoscale status, if it is still was,
// and records d as an event. A change under it is left to the next pass.
func (c *controller) writeAutoscale(name string, was, next *api.AutoscaleStatus, d *api.ScaleDecision) error {
	err := c.update(func(tx *store.Tx) error {
		var app api.App
		if err := tx.Get(api.KindApp, name, &app); err != nil {
			return err
		}
		if !sameAutoscale(app.Status.Autoscale, was) {
			return errAutoscaleMoved
		}
		app.Status.Autoscale = next
		if err := tx.Put(api.KindApp, &app); err != nil {
			return err
		}
		if d == nil {
			return nil
		}
		return tx.RecordEvent("apps/"+name, api.EventNormal, "Autoscaled", d.Message, sourceApps)
	})
	if errors.Is(err, errAutoscaleMoved) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func sameAutoscale(a, b *api.AutoscaleStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Desired == b.Desired && a.LastScale.Equal(b.LastScale) && a.LastDirection == b.LastDirection
}

// scalesToZero reports whether svc's app may scale to zero (autoscale with
// min 0): the nodes' load balancers then hold its new connections in the
// activator while it has no endpoints. TCP only: the activator forwards
// streams.
func scalesToZero(tx txn, svc *api.Service) (bool, error) {
	if svc.Spec.Protocol == configs.ProtocolUDP {
		return false, nil
	}
	var app api.App
	switch err := tx.Get(api.KindApp, svc.Spec.App, &app); {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	as := app.Spec.Autoscale
	return as != nil && as.Min == 0 && app.Spec.Mode != configs.ModePerNode, nil
}
