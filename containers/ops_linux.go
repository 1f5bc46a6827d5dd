package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
)

// ExecOptions is a command to run in a running container.
type ExecOptions struct {
	Args []string
	// Env is added to the container's environment.
	Env []string
	// Stdin, Stdout and Stderr may be nil.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Exec runs a command in a running container, as the container's user and
// in its working directory, and returns its exit code (128+signal if a
// signal ended it). Cancelling ctx kills the command.
func (r *Runtime) Exec(ctx context.Context, pod, name string, opts ExecOptions) (int, error) {
	if len(opts.Args) == 0 {
		return -1, fmt.Errorf("exec: no command: %w", ErrInvalid)
	}
	id := containerID(pod, name)
	r.mu.Lock()
	k, ok := r.ctrs[id]
	var env []string
	var cwd string
	if ok {
		// The process spec of the running container holds the merged env,
		// user and workdir; rebuild them the same way.
		env = mergeEnv(k.rec.ImageConfig, k.rec.Config)
		cwd = k.rec.Config.Workdir
		if cwd == "" {
			cwd = k.rec.ImageConfig.WorkingDir
		}
	}
	running := ok && k.state == StateRunning
	r.mu.Unlock()
	if !ok {
		return -1, fmt.Errorf("exec in %s/%s: %w", pod, name, ErrNotFound)
	}
	if !running {
		return -1, fmt.Errorf("exec in %s/%s: %w", pod, name, ErrNotRunning)
	}
	c, err := libcontainer.Load(r.libcontainerRoot(), id)
	if err != nil {
		return -1, fmt.Errorf("exec in %s/%s: %w", pod, name, ErrNotRunning)
	}
	uid, gid, groups, err := r.execUser(k, pod)
	if err != nil {
		return -1, err
	}
	if cwd == "" {
		cwd = "/"
	}
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	p := &libcontainer.Process{
		Args: opts.Args, Env: append(env, opts.Env...), Cwd: cwd,
		UID: uid, GID: gid, AdditionalGroups: groups,
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
	ps, err := p.Wait()
	close(done)
	if ps == nil {
		return -1, fmt.Errorf("exec in %s/%s: wait: %w", pod, name, err)
	}
	ws := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

func (r *Runtime) execUser(k *ctr, pod string) (int, int, []int, error) {
	r.mu.Lock()
	rec := k.rec
	r.mu.Unlock()
	dir := r.podDataDir(pod) + "/containers/" + rec.Config.Name + "/rootfs"
	p, err := buildProcess(rec.ImageConfig, rec.Config, dir, pod)
	if err != nil {
		return 0, 0, nil, err
	}
	return p.UID, p.GID, p.Groups, nil
}

// Stats is the resource use of a container, read from its cgroups.
type Stats struct {
	// CPUNanos is the CPU time used since the start, in nanoseconds.
	CPUNanos uint64 `json:"cpu_nanos"`
	// MemoryBytes is the memory in use now; MemoryLimit the limit (0 if
	// none).
	MemoryBytes uint64 `json:"memory_bytes"`
	MemoryLimit uint64 `json:"memory_limit,omitempty"`
	// Pids is the number of processes.
	Pids uint64 `json:"pids"`
}

// Stats reads a running container's CPU and memory use.
func (r *Runtime) Stats(pod, name string) (Stats, error) {
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
		return Stats{}, fmt.Errorf("stats of %s/%s: %w", pod, name, ErrNotRunning)
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
	rc, err := readLogs(ctx, r.logPath(pod, name), r.cfg.LogMaxFiles, opts)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("logs of %s/%s: %w", pod, name, ErrNotFound)
		}
		return nil, fmt.Errorf("logs of %s/%s: %w", pod, name, err)
	}
	return rc, nil
}
