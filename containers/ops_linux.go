package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
)

// ExecOptions is a command to run in a running container.
type ExecOptions struct {
	// Args is the command and its arguments; the command is looked up in
	// the container's PATH.
	Args []string
	// Env is added to the container's environment.
	Env []string
	// Stdin may be nil (no input).
	Stdin io.Reader
	// Stdout receives the command's standard output; nil discards it.
	Stdout io.Writer
	// Stderr receives the command's standard error; nil discards it.
	Stderr io.Writer
}

// Exec runs a command in a running container, as the container's user and
// in its working directory, and returns its exit code (128+signal if a
// signal ended it). Cancelling ctx kills the command.
func (r *Runtime) Exec(ctx context.Context, pod, name string, opts ExecOptions) (int, error) {
	if err := checkNames("exec", pod, name); err != nil {
		return -1, err
	}
	if len(opts.Args) == 0 {
		return -1, fmt.Errorf("exec: no command: %w", ErrInvalid)
	}
	id := containerID(pod, name)
	r.mu.Lock()
	k, ok := r.ctrs[id]
	var rec record
	var hostname string
	running := ok && k.state == StateRunning
	if ok {
		rec = k.rec
		hostname = rec.Pod
		if p, ok := r.pods[rec.Pod]; ok && p.Config.Hostname != "" {
			hostname = p.Config.Hostname
		}
	}
	r.mu.Unlock()
	if !ok {
		return -1, fmt.Errorf("exec in %s/%s: %w", pod, name, ErrNotFound)
	}
	if !running {
		return -1, fmt.Errorf("exec in %s/%s: %w", pod, name, ErrNotRunning)
	}
	c, err := libcontainer.Load(r.libcontainerRoot(), id)
	if err != nil {
		return -1, fmt.Errorf("exec in %s/%s: %w: %w", pod, name, ErrNotRunning, err)
	}
	// The same env, user and workdir as the container's first process.
	rootfs := filepath.Join(r.podDataDir(pod), "containers", name, "rootfs")
	ps, err := buildProcess(rec.ImageConfig, rec.Config, rootfs, hostname)
	if err != nil {
		return -1, err
	}
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	p := &libcontainer.Process{
		Args: opts.Args, Env: append(ps.Env, opts.Env...), Cwd: ps.Cwd,
		UID: ps.UID, GID: ps.GID, AdditionalGroups: ps.Groups,
		Stdin: opts.Stdin, Stdout: stdout, Stderr: stderr,
	}
	if err := c.Run(p); err != nil {
		return -1, fmt.Errorf("exec in %s/%s: %w", pod, name, err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Signal(syscall.SIGKILL)
		case <-done:
		}
	}()
	state, err := p.Wait()
	close(done)
	if state == nil {
		return -1, fmt.Errorf("exec in %s/%s: wait: %w", pod, name, err)
	}
	ws := state.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// Signal sends sig to the current run of a container (its init process,
// and with SIGKILL its whole PID namespace). The runtime treats the exit
// that follows like any other: the restart policy decides what comes next,
// as for a container killed by a failed liveness probe. It returns
// ErrNotFound for an unknown container and ErrNotRunning when no run is in
// progress.
func (r *Runtime) Signal(pod, name string, sig os.Signal) error {
	if err := checkNames("signal", pod, name); err != nil {
		return err
	}
	id := containerID(pod, name)
	r.mu.Lock()
	k, ok := r.ctrs[id]
	running := ok && k.state == StateRunning
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("signal %s/%s: %w", pod, name, ErrNotFound)
	}
	if !running {
		return fmt.Errorf("signal %s/%s: %w", pod, name, ErrNotRunning)
	}
	c, err := libcontainer.Load(r.libcontainerRoot(), id)
	if err != nil {
		return fmt.Errorf("signal %s/%s: %w: %w", pod, name, ErrNotRunning, err)
	}
	if err := c.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("signal %s/%s: %w", pod, name, ErrNotRunning)
		}
		return fmt.Errorf("signal %s/%s: %w", pod, name, err)
	}
	return nil
}

// Stats is the resource use of a container, read from its cgroups.
type Stats struct {
	// CPUNanos is the CPU time used since the start, in nanoseconds.
	CPUNanos uint64 `json:"cpu_nanos"`
	// MemoryBytes is the memory in use now (page cache included, as the
	// cgroup counts it).
	MemoryBytes uint64 `json:"memory_bytes"`
	// MemoryLimit is the container's limit; 0 if it has none.
	MemoryLimit uint64 `json:"memory_limit,omitempty"`
	// Pids is the number of processes.
	Pids uint64 `json:"pids"`
}

// Stats reads a running container's CPU and memory use.
func (r *Runtime) Stats(pod, name string) (Stats, error) {
	if err := checkNames("stats", pod, name); err != nil {
		return Stats{}, err
	}
	id := containerID(pod, name)
	r.mu.Lock()
	k, ok := r.ctrs[id]
	running := ok && k.state == StateRunning
	limit := uint64(0)
	if ok && k.rec.Config.Memory > 0 {
		limit = uint64(k.rec.Config.Memory)
	}
	r.mu.Unlock()
	if !ok {
		return Stats{}, fmt.Errorf("stats of %s/%s: %w", pod, name, ErrNotFound)
	}
	if !running {
		return Stats{}, fmt.Errorf("stats of %s/%s: %w", pod, name, ErrNotRunning)
	}
	c, err := libcontainer.Load(r.libcontainerRoot(), id)
	if err != nil {
		return Stats{}, fmt.Errorf("stats of %s/%s: %w: %w", pod, name, ErrNotRunning, err)
	}
	st, err := c.Stats()
	if err != nil {
		return Stats{}, fmt.Errorf("stats of %s/%s: %w", pod, name, err)
	}
	cg := st.CgroupStats
	if cg == nil {
		return Stats{}, fmt.Errorf("stats of %s/%s: no cgroup stats", pod, name)
	}
	return Stats{
		CPUNanos:    cg.CpuStats.CpuUsage.TotalUsage,
		MemoryBytes: cg.MemoryStats.Usage.Usage,
		MemoryLimit: limit,
		Pids:        cg.PidsStats.Current,
	}, nil
}

// Logs returns a container's log as CRI-format lines
// ("TIMESTAMP STREAM F|P LINE"), across restarts and rotations. The log
// stays readable after the container exited, until its pod is removed.
func (r *Runtime) Logs(ctx context.Context, pod, name string, opts LogOptions) (io.ReadCloser, error) {
	if err := checkNames("logs", pod, name); err != nil {
		return nil, err
	}
	rc, err := readLogs(ctx, r.logPath(pod, name), r.cfg.LogMaxFiles, opts)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("logs of %s/%s: %w", pod, name, ErrNotFound)
		}
		return nil, fmt.Errorf("logs of %s/%s: %w", pod, name, err)
	}
	return rc, nil
}
