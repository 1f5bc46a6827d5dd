package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-edge/skiff/containers/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// launch starts the current run of a container through a new shim. r.mu
// is not held: starts run in parallel, and Status answers meanwhile. The
// caller has set k.starting, so that nothing else changes k until launch
// returns and the caller closes it.
func (r *Runtime) launch(k *ctr) error {
	r.mu.Lock()
	p, ok := r.pods[k.rec.Pod]
	rec := k.rec
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("pod %s: %w", rec.Pod, ErrNotFound)
	}
	c := rec.Config
	sb, err := r.sandboxOf(p) // before the root filesystem: a refused volume mounts nothing
	if err != nil {
		return err
	}
	dir := filepath.Join(r.podDataDir(k.rec.Pod), "containers", c.Name)
	rootfs := filepath.Join(dir, "rootfs")
	layers := make([]string, len(rec.Layers))
	for i, l := range rec.Layers {
		layers[i] = r.images.LayerDir(l)
	}
	if err := mountOverlay(layers, filepath.Join(dir, "upper"), filepath.Join(dir, "work"), rootfs, filepath.Join(r.cfg.Root, "layers", "empty")); err != nil {
		return fmt.Errorf("container %s: rootfs: %w", k.id, err)
	}
	hostname := p.Config.Hostname
	if hostname == "" {
		hostname = p.Config.Name
	}
	proc, err := buildProcess(rec.ImageConfig, c, rootfs, hostname)
	if err != nil {
		return err
	}
	lcfg, err := buildConfig(r.cfg, k.id, rootfs, c, sb)
	if err != nil {
		return err
	}
	sdir := r.ctrStateDir(k.id)
	spec := shimSpec{
		StateRoot: r.libcontainerRoot(), ID: k.id, Config: lcfg, Process: proc,
		LogPath: r.logPath(rec.Pod, c.Name), LogMaxSize: r.cfg.LogMaxSize, LogMaxFiles: r.cfg.LogMaxFiles,
		ExitPath: filepath.Join(sdir, "exit.json"), LockPath: r.lockPath(k.id),
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	specPath := filepath.Join(sdir, "shim.json")
	if err := atomicfile.Write(specPath, b); err != nil {
		return err
	}
	_ = os.Remove(spec.ExitPath)
	rep, cmd, err := r.startShim(k.id, specPath, filepath.Join(sdir, "shim.log"))
	if err != nil {
		return fmt.Errorf("container %s: %w", k.id, err)
	}
	start, _ := procStartTime(cmd.Process.Pid)
	r.mu.Lock()
	defer r.mu.Unlock()
	k.gen++
	k.state = StateRunning
	k.exited = make(chan struct{})
	k.rec.ShimPID, k.rec.ShimStart, k.rec.Pid = cmd.Process.Pid, start, rep.Pid
	k.rec.StartedAt = r.cfg.Clock.Now()
	r.saveLocked(k)
	gen := k.gen
	go func() {
		_ = cmd.Wait()
		r.onExit(k, gen)
	}()
	r.log.Debug("container started", "container", k.id, "pid", rep.Pid)
	return nil
}

// startShim runs the shim of container id in its own session and waits
// for its report, for cfg.shimReportWait at most: a shim that hangs is
// killed, with its session and any container it made, and the start fails
// (the caller retries), instead of holding the pod's sync for ever.
func (r *Runtime) startShim(id, specPath, logPath string) (shimReport, *exec.Cmd, error) {
	var rep shimReport
	rd, wr, err := os.Pipe()
	if err != nil {
		return rep, nil, err
	}
	defer rd.Close()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		wr.Close()
		return rep, nil, err
	}
	defer logf.Close()
	arg := ShimArg
	if r.cfg.goShim {
		arg = goShimArg
	}
	cmd := exec.Command(r.cfg.ShimPath, arg, specPath)
	cmd.Args[0] = "skiff-shim"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{wr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		wr.Close()
		return rep, nil, fmt.Errorf("start shim: %w", err)
	}
	wr.Close()
	type decoded struct {
		rep shimReport
		err error
	}
	got := make(chan decoded, 1)
	go func() {
		var d decoded
		d.err = json.NewDecoder(rd).Decode(&d.rep)
		got <- d
	}()
	t := time.NewTimer(r.cfg.shimReportWait)
	defer t.Stop()
	var d decoded
	select {
	case d = <-got:
	case <-t.C:
		select {
		case d = <-got: // it reported as the time ran out
		default:
			r.killHungShim(id, cmd)
			rd.Close() // ends the decode, whoever else holds the pipe
			return rep, nil, fmt.Errorf("shim gave no report: none in %s; killed it", r.cfg.shimReportWait)
		}
	}
	rep, err = d.rep, d.err
	if err != nil {
		_ = cmd.Wait()
		msg, _ := os.ReadFile(logPath)
		return rep, nil, fmt.Errorf("shim gave no report: %w: %s", err, lastLine(msg))
	}
	if rep.Error != "" {
		_ = cmd.Wait()
		return rep, nil, errors.New(rep.Error)
	}
	return rep, cmd, nil
}

// killHungShim kills a shim that gave no report, with its session (Setsid
// made it the leader), and the container it may have started, which runc
// put in a session of its own and which nothing would supervise now.
func (r *Runtime) killHungShim(id string, cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	destroyContainer(r.libcontainerRoot(), id)
	waited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second): // in uninterruptible sleep: reaped when it wakes
		r.log.Warn("a killed shim has not exited", "container", id, "pid", cmd.Process.Pid)
	}
}

// removeLock removes container id's lock file, unless a shim holds it: one
// that a killed skiff left behind, or one whose stop failed. Removing the
// file then would let the next shim of a container of that name lock a
// new file beside the old one, and the two would run at once; instead the
// holder's container is killed, so that the holder ends.
func (r *Runtime) removeLock(id string) error {
	path := r.lockPath(id)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container lock: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("container lock: %w", err)
		}
		signalContainer(r.libcontainerRoot(), id, unix.SIGKILL)
		return nil
	}
	// Removed while locked: a shim that opened it meanwhile finds, once it
	// has the lock, that the path names another file, and opens that.
	return os.Remove(path)
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// procStartTime reads a process's start time (clock ticks since boot), which
// together with its pid names it uniquely.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// onExit handles the end of a run: the shim exited.
func (r *Runtime) onExit(k *ctr, gen int) {
	select {
	case <-r.closed:
		return // a later runtime adopts it
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k.gen != gen || k.state != StateRunning {
		return
	}
	r.exitedLocked(k)
}

// exitedLocked records the exit of the current run and applies the restart
// policy; r.mu is held.
func (r *Runtime) exitedLocked(k *ctr) {
	var ex exitRecord
	b, err := os.ReadFile(filepath.Join(r.ctrStateDir(k.id), "exit.json"))
	if err == nil {
		err = json.Unmarshal(b, &ex)
	}
	switch {
	case err != nil:
		ex = exitRecord{Pid: k.rec.Pid, ExitCode: -1, FinishedAt: time.Now().UTC()}
		k.rec.LastReason, k.rec.LastMessage = ReasonUnknown, "the shim ended without recording an exit"
		// The container may outlive its shim: do not leave it unwatched.
		destroyContainer(r.libcontainerRoot(), k.id)
	case ex.OOMKilled:
		k.rec.LastReason, k.rec.LastMessage = ReasonOOMKilled, ""
	case ex.ExitCode == 0:
		k.rec.LastReason, k.rec.LastMessage = ReasonCompleted, ""
	default:
		k.rec.LastReason, k.rec.LastMessage = ReasonError, ""
	}
	k.rec.Last = &ex
	k.rec.ShimPID, k.rec.ShimStart = 0, 0
	k.state = StateExited
	if k.exited != nil {
		close(k.exited)
		k.exited = nil
	}
	r.log.Info("container exited", "container", k.id, "exit_code", ex.ExitCode, "reason", k.rec.LastReason)
	r.afterStopLocked(k, ex.ExitCode)
}

// afterStopLocked saves the record, emits the event and schedules a
// restart if the policy wants one.
func (r *Runtime) afterStopLocked(k *ctr, exitCode int) {
	ev := Event{Status: r.statusLocked(k)}
	if !k.rec.Stopped && !k.removed && shouldRestart(k.rec.Config.Restart, exitCode) {
		ran := r.cfg.Clock.Now().Sub(k.rec.StartedAt)
		var delay time.Duration
		delay, k.rec.InRow = nextBackoff(k.rec.InRow, ran)
		ev.WillRestart, ev.Backoff = true, delay
		k.cancel = make(chan struct{})
		go r.restartAfter(k, k.gen, delay, k.cancel)
	}
	r.saveLocked(k)
	r.emit(ev)
}

func (r *Runtime) emit(ev Event) {
	select {
	case r.events <- ev:
	default:
		r.log.Warn("events channel full: dropping event", "pod", ev.Status.Pod, "container", ev.Status.Name)
	}
}

func (r *Runtime) restartAfter(k *ctr, gen int, delay time.Duration, cancel chan struct{}) {
	select {
	case <-r.cfg.Clock.After(delay):
	case <-cancel:
		return
	case <-r.closed:
		return
	}
	r.mu.Lock()
	if k.gen != gen || k.removed || k.rec.Stopped || k.state != StateExited || k.starting != nil {
		r.mu.Unlock()
		return
	}
	k.rec.RestartCount++
	k.state = StateCreated
	starting := make(chan struct{})
	k.starting = starting
	r.mu.Unlock()
	err := r.launch(k)
	r.mu.Lock()
	defer r.mu.Unlock()
	k.starting = nil
	close(starting)
	if err != nil {
		k.gen++
		k.state = StateExited
		k.rec.LastReason, k.rec.LastMessage = ReasonStartFail, err.Error()
		k.rec.StartedAt = r.cfg.Clock.Now()
		r.log.Warn("container restart failed", "container", k.id, "err", err)
		r.afterStopLocked(k, -1)
	}
}

// StopContainer stops a container: SIGTERM, then SIGKILL after grace. The
// container is not restarted afterwards. Stopping a stopped container is
// not an error.
func (r *Runtime) StopContainer(ctx context.Context, pod, name string, grace time.Duration) error {
	if err := checkNames("stop", pod, name); err != nil {
		return err
	}
	id := containerID(pod, name)
	r.mu.Lock()
	k, ok := r.ctrs[id]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("container %s/%s: %w", pod, name, ErrNotFound)
	}
	k.rec.Stopped = true
	if k.cancel != nil {
		close(k.cancel)
		k.cancel = nil
	}
	if starting := k.starting; starting != nil {
		// Let the start finish, then stop what it started.
		r.mu.Unlock()
		<-starting
		r.mu.Lock()
	}
	if _, ok := r.ctrs[id]; ok {
		r.saveLocked(k)
	}
	exited := k.exited
	running := k.state == StateRunning
	r.mu.Unlock()
	if !running || exited == nil {
		return nil
	}
	signal := func(sig os.Signal) { signalContainer(r.libcontainerRoot(), id, sig) }
	signal(unix.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	signal(unix.SIGKILL)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("container %s/%s: still running 30s after SIGKILL", pod, name)
	}
}

// adopt loads the pods and containers recorded in StateDir.
func (r *Runtime) adopt() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	pods, _ := filepath.Glob(filepath.Join(r.cfg.StateDir, "pods", "*", "pod.json"))
	for _, p := range pods {
		var rec podRecord
		if b, err := os.ReadFile(p); err != nil || json.Unmarshal(b, &rec) != nil {
			r.log.Warn("unreadable pod record", "path", p)
			continue
		}
		r.pods[rec.Config.Name] = &rec
	}
	recs, _ := filepath.Glob(filepath.Join(r.cfg.StateDir, "containers", "*", "record.json"))
	for _, p := range recs {
		var rec record
		if b, err := os.ReadFile(p); err != nil || json.Unmarshal(b, &rec) != nil {
			r.log.Warn("unreadable container record", "path", p)
			continue
		}
		k := &ctr{id: containerID(rec.Pod, rec.Config.Name), rec: rec, state: StateExited, gen: 1}
		r.ctrs[k.id] = k
		if rec.ShimPID == 0 {
			continue // exited before; its restart, if any, was pending
		}
		fd, err := unix.PidfdOpen(rec.ShimPID, 0)
		if err == nil {
			if st, serr := procStartTime(rec.ShimPID); serr != nil || st != rec.ShimStart {
				unix.Close(fd)
				err = errors.New("pid reused")
			}
		}
		if err != nil {
			k.state = StateRunning
			r.exitedLocked(k) // the shim is gone: read its exit record
			continue
		}
		k.state = StateRunning
		k.exited = make(chan struct{})
		go r.watchPidfd(fd, k, k.gen)
		r.log.Info("adopted container", "container", k.id, "pid", rec.Pid)
	}
	// Containers that were waiting for a restart when the old runtime went
	// away get it from this one.
	for _, k := range r.ctrs {
		if k.state == StateExited && k.cancel == nil && !k.rec.Stopped && k.rec.Last != nil &&
			shouldRestart(k.rec.Config.Restart, k.rec.Last.ExitCode) {
			k.cancel = make(chan struct{})
			d, _ := nextBackoff(max(k.rec.InRow-1, 0), 0)
			go r.restartAfter(k, k.gen, d, k.cancel)
		}
	}
	return nil
}

// watchPidfd waits for an adopted shim, which is not our child, to exit.
func (r *Runtime) watchPidfd(fd int, k *ctr, gen int) {
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 500)
		if n > 0 {
			r.onExit(k, gen)
			return
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			r.log.Error("watch adopted shim", "container", k.id, "err", err)
			return
		}
		select {
		case <-r.closed:
			return
		default:
		}
	}
}
