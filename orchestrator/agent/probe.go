package agent

import (
	"bufio"
	"bytes"
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

// loop runs one probe of the container every period, on the container's
// current run: a new run starts over after its initial delay.
func (pr *prober) loop(ctx context.Context, kind string, probe *configs.Probe, spec *configs.ContainerSpec) {
	set := settingsOf(probe)
	rt := pr.w.p.probes
	var run probeRun
	var hc httpConn // kept between the probes of this loop
	defer hc.close()
	var tm timer
	defer tm.stop()
	sleep := tm.sleep
	for {
		st, err := rt.ContainerStatus(pr.w.name, pr.ctr)
		if err != nil || st.State != containers.StateRunning {
			if !sleep(ctx, min(set.period, 200*time.Millisecond)) {
				return
			}
			continue
		}
		if st.Pid != run.pid {
			run = probeRun{pid: st.Pid}
			hc.close() // a new run: a new connection
			if d := time.Until(st.StartedAt.Add(probe.InitialDelay.D())); d > 0 && !sleep(ctx, d) {
				return
			}
		}
		if d, held := pr.held(kind, run.pid, spec, set.period); held {
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		err = pr.probeOnce(ctx, &hc, probe, spec, set.timeout)
		if ctx.Err() != nil {
			return
		}
		pr.w.p.metrics.ProbeResult(kind, err == nil)
		pass, fail := run.tally(err, set)
		pr.verdict(kind, run.pid, pass, fail, run.failRow, err)
		run.proven = run.proven || pr.passed(kind, run.pid)
		if !sleep(ctx, onBeat(time.Now(), run.next(kind, set.period), set.period)) {
			return
		}
	}
}

// probeSettings are a probe's timing and thresholds.
type probeSettings struct {
	period, timeout     time.Duration
	failures, successes int
}

// settingsOf returns probe's settings with their defaults.
func settingsOf(probe *configs.Probe) probeSettings {
	s := probeSettings{
		period:    orDefault(probe.Period.D(), defaultProbePeriod),
		timeout:   orDefault(probe.Timeout.D(), defaultProbeTimeout),
		failures:  max(probe.FailureThreshold, 0),
		successes: max(probe.SuccessThreshold, 0),
	}
	if s.failures == 0 {
		s.failures = defaultFailures
	}
	if s.successes == 0 {
		s.successes = defaultSuccesses
	}
	return s
}

// probeRun is what one probe knows of the container's run pid.
type probeRun struct {
	pid int
	// okRow and failRow count the passes and the failures in a row.
	okRow, failRow int
	// fast is the quick re-probe interval of a new run.
	fast time.Duration
	// proven: the run passed this probe once.
	proven bool
}

// tally counts one result (err nil is a pass) and says whether the probe
// now passes or fails, per its thresholds.
func (r *probeRun) tally(err error, set probeSettings) (pass, fail bool) {
	if err == nil {
		r.okRow, r.failRow = r.okRow+1, 0
	} else {
		r.okRow, r.failRow = 0, r.failRow+1
	}
	return r.okRow >= set.successes, r.failRow >= set.failures
}

// next says when to probe the run again. A new run that has never passed
// its readiness or startup probe is probed again soon (25 ms, doubling up
// to the period): it is not ready either way, and a server that listens a
// few ms after its start is then ready at once, not a whole period later.
func (r *probeRun) next(kind string, period time.Duration) time.Duration {
	if (kind == probeReadiness || kind == probeStartup) && !r.proven {
		r.fast = min(max(r.fast*2, 25*time.Millisecond), period)
		return r.fast
	}
	r.fast = 0
	return period
}

// held says whether probe kind of run pid is not to run now, and how soon
// to look again: the other probes wait for the startup probe to pass, and
// a startup probe that passed has nothing left to do.
func (pr *prober) held(kind string, pid int, spec *configs.ContainerSpec, period time.Duration) (time.Duration, bool) {
	if kind != probeStartup && spec.Startup == nil {
		return 0, false
	}
	pr.mu.Lock()
	started := pr.startedPid == pid
	pr.mu.Unlock()
	switch {
	case kind != probeStartup && !started:
		return min(period, 100*time.Millisecond), true
	case kind == probeStartup && started:
		return period, true
	}
	return 0, false
}

// onBeat returns how long to wait for a steady probe (d is its period):
// until the next multiple of period on the clock (at least half a period
// away), so that the probes of a node with the same period run together,
// one wake-up of the process for all of them rather than one each (the
// scheduler's wake-ups were a fifth of an idle node's CPU). A quicker d
// (a new run's re-probes) is kept as it is.
func onBeat(now time.Time, d, period time.Duration) time.Duration {
	if d != period || period <= 0 {
		return d
	}
	next := period - time.Duration(now.UnixNano()%int64(period))
	if next < period/2 {
		next += period
	}
	return next
}

// timer is a loop's one timer, reset for every wait.
type timer struct{ t *time.Timer }

// sleep waits d, or less if ctx ends first; it reports whether it waited
// the whole d.
func (tm *timer) sleep(ctx context.Context, d time.Duration) bool {
	if tm.t == nil {
		tm.t = time.NewTimer(d)
	} else {
		tm.t.Reset(d) // Go 1.23 timers: no stale tick after Reset
	}
	select {
	case <-ctx.Done():
		return false
	case <-tm.t.C:
		return true
	}
}

func (tm *timer) stop() {
	if tm.t != nil {
		tm.t.Stop()
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

// probeOnce runs the probe once; nil is a pass. HTTP and TCP probes take
// no context of their own: their deadline is set on the connection (a
// context with a timeout per probe was a tenth of an idle node's probe
// CPU), and the loop's ctx still cuts a dial short.
func (pr *prober) probeOnce(ctx context.Context, hc *httpConn, probe *configs.Probe, spec *configs.ContainerSpec, timeout time.Duration) error {
	switch {
	case len(probe.Exec) > 0:
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
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
		deadline := time.Now().Add(timeout)
		if probe.TCP {
			d := net.Dialer{Deadline: deadline}
			c, err := d.DialContext(ctx, "tcp", hc.address(pr.ip, port))
			if err != nil {
				return err
			}
			return c.Close()
		}
		return hc.get(ctx, deadline, hc.address(pr.ip, port), probe.HTTPGet)
	}
	return errors.New("probe has no action")
}

// httpConn is one probe loop's connection to its container, kept from
// one probe to the next (HTTP keep-alive), spoken on in the loop's own
// goroutine. A new TCP connection for every probe was most of an idle
// node's CPU (connect through the bridge and netfilter, 30 times a second
// for 30 pods), and net/http's Transport added three goroutines per
// connection. A kept connection is dropped after maxAge, so that a server
// that stopped accepting new connections fails its probes within that
// time; a connection the server closed while idle is dialled again at
// once. The request is built once and written as bytes (net/http's
// Request.Write formatted it and made a buffered writer every probe);
// the answer is read with http.ReadResponse. The zero value is ready;
// close it when the loop ends.
type httpConn struct {
	maxAge time.Duration // default freshConnEvery
	addr   string
	c      net.Conn
	br     *bufio.Reader
	dialed time.Time

	// The probe's target and request, made once (address, reqKey) and
	// reused while they stay the same.
	ip, hostport string
	port         int
	reqKey       string // addr + path the request was built for
	req          *http.Request
	wire         []byte
}

// freshConnEvery is how long a probe keeps a connection before it dials a
// new one.
const freshConnEvery = 30 * time.Second

// address returns ip:port, formatted once for the loop.
func (h *httpConn) address(ip string, port int) string {
	if h.hostport == "" || h.ip != ip || h.port != port {
		h.ip, h.port, h.hostport = ip, port, net.JoinHostPort(ip, strconv.Itoa(port))
	}
	return h.hostport
}

func (h *httpConn) close() {
	if h.c != nil {
		h.c.Close()
		h.c, h.br = nil, nil
	}
}

// request returns the GET of path from addr, and its bytes on the wire.
func (h *httpConn) request(addr, path string) (*http.Request, []byte, error) {
	if key := addr + " " + path; h.req == nil || h.reqKey != key {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("User-Agent", "skiff-probe")
		var b bytes.Buffer
		if err := req.Write(&b); err != nil {
			return nil, nil, err
		}
		h.req, h.wire, h.reqKey = req, b.Bytes(), key
	}
	return h.req, h.wire, nil
}

// get GETs path from addr and passes on a 2xx or 3xx status (redirects
// are not followed); the exchange must end by deadline.
func (h *httpConn) get(ctx context.Context, deadline time.Time, addr, path string) error {
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	maxAge := h.maxAge
	if maxAge <= 0 {
		maxAge = freshConnEvery
	}
	if h.c != nil && (h.addr != addr || time.Since(h.dialed) >= maxAge) {
		h.close()
	}
	reused := h.c != nil
	status, err := h.try(ctx, deadline, addr, path)
	var ne net.Error
	if err != nil && reused && ctx.Err() == nil && time.Now().Before(deadline) && !(errors.As(err, &ne) && ne.Timeout()) {
		// The server may have closed the idle connection: once more on
		// a new one.
		status, err = h.try(ctx, deadline, addr, path)
	}
	if err != nil {
		return err
	}
	if status < 200 || status >= 400 {
		return fmt.Errorf("http %d", status)
	}
	return nil
}

// try sends one GET on the kept connection (dialled first if there is
// none) and returns the answer's status; when the exchange fails the
// connection is dropped.
func (h *httpConn) try(ctx context.Context, deadline time.Time, addr, path string) (status int, err error) {
	req, wire, err := h.request(addr, path)
	if err != nil {
		return 0, err
	}
	if h.c == nil {
		d := net.Dialer{Deadline: deadline}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return 0, err
		}
		h.c, h.br, h.addr, h.dialed = c, bufio.NewReaderSize(c, 4096), addr, time.Now()
	}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	_ = h.c.SetDeadline(deadline)
	if _, err := h.c.Write(wire); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(h.br, req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	var more [1]byte
	if n, _ := resp.Body.Read(more[:]); n > 0 || resp.Close {
		h.close() // a longer body than we read, or the server closes
	}
	resp.Body.Close()
	return resp.StatusCode, nil
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
