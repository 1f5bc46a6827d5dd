package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Probe defaults (configs.Probe documents them).
const (
	defaultProbePeriod  = 10 * time.Second
	defaultProbeTimeout = time.Second
	defaultFailures     = 3
	defaultSuccesses    = 1
)

// Probe kinds.
const (
	probeReadiness = "readiness"
	probeLiveness  = "liveness"
	probeStartup   = "startup"
)

// probeRuntime is what probes need of a container: its current run, an
// exec for exec probes, and a SIGKILL when a liveness or startup probe
// gives up. Satisfied by *containers.Runtime.
type probeRuntime interface {
	ContainerStatus(pod, name string) (containers.ContainerStatus, error)
	Exec(ctx context.Context, pod, name string, opts containers.ExecOptions) (int, error)
	Signal(pod, name string, sig os.Signal) error
}

var _ probeRuntime = (*containers.Runtime)(nil)

// prober runs the probes of one container. Its verdicts hold for the
// container run (pid) they were made on; a new run starts over.
type prober struct {
	w      *podWorker
	ctr    string
	ip     string // the pod's IP, for http and tcp probes
	cancel context.CancelFunc

	// mu protects the fields below.
	mu sync.Mutex
	// readyPid and ready: the readiness verdict and the run it is about.
	readyPid int
	ready    bool
	// startedPid: the run whose startup probe passed.
	startedPid int
}

// isReady says whether the container's run pid is ready: its startup
// probe (if any) passed and its readiness probe (if any) passes.
func (pr *prober) isReady(pid int, spec *configs.ContainerSpec) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if spec.Startup != nil && pr.startedPid != pid {
		return false
	}
	if spec.Readiness != nil {
		return pr.readyPid == pid && pr.ready
	}
	return true
}

// ensureProbers starts the probers of containers that have probes.
func (w *podWorker) ensureProbers(ctx context.Context, p *api.Pod) {
	for name, spec := range p.Spec.Containers {
		if w.probers[name] != nil || (spec.Readiness == nil && spec.Liveness == nil && spec.Startup == nil) {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		pr := &prober{w: w, ctr: name, ip: w.ip, cancel: cancel}
		// Keep the ready state last reported for the run that is still
		// there, so that an agent restart causes no endpoint flap: the
		// probes decide from here on.
		if w.reported != nil {
			for _, cs := range w.reported.Containers {
				if cs.Name == name && cs.State == "running" && cs.PID != 0 {
					pr.readyPid, pr.ready = cs.PID, cs.Ready
					if cs.Ready {
						pr.startedPid = cs.PID
					}
				}
			}
		}
		w.probers[name] = pr
		for kind, probe := range map[string]*configs.Probe{probeReadiness: spec.Readiness, probeLiveness: spec.Liveness, probeStartup: spec.Startup} {
			if probe != nil {
				go pr.loop(pctx, kind, probe, spec)
			}
		}
	}
}

func (w *podWorker) stopProbers() {
	for name, pr := range w.probers {
		pr.cancel()
		delete(w.probers, name)
	}
}

// loop runs one probe of the container every period.
func (pr *prober) loop(ctx context.Context, kind string, probe *configs.Probe, spec *configs.ContainerSpec) {
	period := orDefault(probe.Period.D(), defaultProbePeriod)
	timeout := orDefault(probe.Timeout.D(), defaultProbeTimeout)
	failures := max(probe.FailureThreshold, 0)
	if failures == 0 {
		failures = defaultFailures
	}
	successes := max(probe.SuccessThreshold, 0)
	if successes == 0 {
		successes = defaultSuccesses
	}
	rt := pr.w.p.probes
	var pid, okRow, failRow int
	var fast time.Duration // the quick re-probe interval of a new run
	var proven bool        // the run passed this probe once
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for {
		st, err := rt.ContainerStatus(pr.w.name, pr.ctr)
		if err != nil || st.State != containers.StateRunning {
			if !wait(min(period, 200*time.Millisecond)) {
				return
			}
			continue
		}
		if st.Pid != pid {
			pid, okRow, failRow, fast, proven = st.Pid, 0, 0, 0, false
			if d := time.Until(st.StartedAt.Add(probe.InitialDelay.D())); d > 0 && !wait(d) {
				return
			}
		}
		if kind != probeStartup && spec.Startup != nil {
			pr.mu.Lock()
			started := pr.startedPid == pid
			pr.mu.Unlock()
			if !started {
				if !wait(min(period, 100*time.Millisecond)) {
					return
				}
				continue
			}
		}
		if kind == probeStartup {
			pr.mu.Lock()
			started := pr.startedPid == pid
			pr.mu.Unlock()
			if started {
				if !wait(period) {
					return
				}
				continue
			}
		}
		err = pr.probeOnce(ctx, probe, spec, timeout)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			okRow, failRow = okRow+1, 0
		} else {
			okRow, failRow = 0, failRow+1
		}
		pr.verdict(kind, pid, okRow >= successes, failRow >= failures, failRow, err)
		// A new run that has never passed its readiness or startup probe
		// is probed again soon (25 ms, doubling up to the period): it is
		// not ready either way, and a server that listens a few ms after
		// its start is then ready at once, not a whole period later.
		next := period
		proven = proven || pr.passed(kind, pid)
		if (kind == probeReadiness || kind == probeStartup) && !proven {
			fast = min(max(fast*2, 25*time.Millisecond), period)
			next = fast
		} else {
			fast = 0
		}
		if !wait(next) {
			return
		}
	}
}

// passed says whether the run pid passed the readiness (ready now) or
// startup probe.
func (pr *prober) passed(kind string, pid int) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if kind == probeStartup {
		return pr.startedPid == pid
	}
	return pr.readyPid == pid && pr.ready
}

// verdict applies a probe's result to the prober and the container.
func (pr *prober) verdict(kind string, pid int, pass, fail bool, failRow int, err error) {
	w := pr.w
	switch kind {
	case probeReadiness:
		pr.mu.Lock()
		was, known := pr.ready, pr.readyPid == pid
		if pass {
			pr.ready, pr.readyPid = true, pid
		} else if fail || !known {
			pr.ready, pr.readyPid = false, pid
		}
		changed := !known || was != pr.ready
		now := pr.ready
		pr.mu.Unlock()
		if changed {
			if !now && fail {
				w.event(api.EventWarning, "Unhealthy", fmt.Sprintf("readiness probe of %s failed: %v", pr.ctr, err))
			}
			w.kick()
		}
	case probeStartup:
		if pass {
			pr.mu.Lock()
			pr.startedPid = pid
			pr.mu.Unlock()
			w.kick()
		} else if fail {
			w.event(api.EventWarning, "Unhealthy", fmt.Sprintf("startup probe of %s failed %d times: %v; killing it", pr.ctr, failRow, err))
			pr.kill(pid)
		}
	case probeLiveness:
		if fail {
			w.event(api.EventWarning, "Unhealthy", fmt.Sprintf("liveness probe of %s failed %d times: %v; killing it", pr.ctr, failRow, err))
			pr.kill(pid)
		}
	}
}

// kill ends the container's run pid (SIGKILL); the runtime restarts it
// per its policy. A run that has already ended or been replaced is left
// alone.
func (pr *prober) kill(pid int) {
	rt := pr.w.p.probes
	st, err := rt.ContainerStatus(pr.w.name, pr.ctr)
	if err != nil || st.State != containers.StateRunning || st.Pid != pid {
		return
	}
	if err := rt.Signal(pr.w.name, pr.ctr, os.Kill); err != nil && !errors.Is(err, containers.ErrNotRunning) {
		pr.w.log.Warn("kill container", "container", pr.ctr, "pid", pid, "err", err)
	}
}

// probeOnce runs the probe once; nil is a pass.
func (pr *prober) probeOnce(ctx context.Context, probe *configs.Probe, spec *configs.ContainerSpec, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case len(probe.Exec) > 0:
		code, err := pr.w.p.probes.Exec(ctx, pr.w.name, pr.ctr, containers.ExecOptions{Args: probe.Exec})
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("exit code %d", code)
		}
		return nil
	case probe.HTTPGet != "" || probe.TCP:
		port := probePort(probe.Port, spec)
		if port == 0 || pr.ip == "" {
			return errors.New("no port or pod IP")
		}
		addr := net.JoinHostPort(pr.ip, strconv.Itoa(port))
		if probe.TCP {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			return c.Close()
		}
		path := probe.HTTPGet
		if path == "" || path[0] != '/' {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("http %d", resp.StatusCode)
		}
		return nil
	}
	return errors.New("probe has no action")
}

// probeClient does not keep connections: a probe must see a fresh accept,
// and idle connections to many pods would pile up.
var probeClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// probePort resolves a probe's port (a number or a container port name).
func probePort(ref configs.PortRef, spec *configs.ContainerSpec) int {
	if ref.Number != 0 {
		return ref.Number
	}
	if ref.Name != "" {
		return spec.Ports[ref.Name]
	}
	if len(spec.Ports) == 1 {
		for _, p := range spec.Ports {
			return p
		}
	}
	return 0
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
