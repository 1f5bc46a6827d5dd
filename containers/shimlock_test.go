package containers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// TestConcurrentShimsOneContainer starts several shims for one container
// at once, over a container that runs already, as a skiff restarted after
// kill -9 does when the killed one's shim is still starting the same
// container. Each round must end, within a bound, with one container
// running, under a shim that reported it and is alive; every other shim
// must end, and nothing may hang.
func TestConcurrentShimsOneContainer(t *testing.T) {
	requireRoot(t)
	r, cfg, pod, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Restart: RestartNever, Command: []string{"sleep", "600"}}); err != nil {
		t.Fatal(err)
	}
	id := containerID(pod, "c")
	sdir := r.ctrStateDir(id)
	specPath := filepath.Join(sdir, "shim.json")
	type result struct {
		i   int
		rep shimReport
		cmd *exec.Cmd
		err error
	}
	// Whatever happens, every shim started here and every process of the
	// container goes, before the pod's removal checks that nothing is left.
	var mu sync.Mutex
	var shims []*exec.Cmd
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, cmd := range shims { // first, so that none starts another container
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		}
		// The containers run in sessions of their own: kill what is left in
		// the container's cgroups (v1 or v2) until they are empty.
		eventually(t, 20*time.Second, "the container's processes are gone", func() error {
			v1, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cfg.CgroupParent, id, "cgroup.procs"))
			v2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", cfg.CgroupParent, id, "cgroup.procs"))
			var left []string
			for _, p := range append(v1, v2...) {
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						_ = unix.Kill(pid, unix.SIGKILL)
						left = append(left, f)
					}
				}
			}
			if len(left) > 0 {
				return fmt.Errorf("processes %v", left)
			}
			return nil
		})
		for _, cmd := range shims {
			if cmd.ProcessState == nil {
				_ = cmd.Wait() // killed above
			}
		}
	})
	for round := range 8 {
		const n = 3
		res := make(chan result, n)
		for i := range n {
			go func() {
				rep, cmd, err := r.startShim(id, specPath, filepath.Join(sdir, fmt.Sprintf("shim-%d-%d.log", round, i)))
				if cmd != nil {
					mu.Lock()
					shims = append(shims, cmd)
					mu.Unlock()
				}
				res <- result{i, rep, cmd, err}
			}()
		}
		var ok []result
		for range n {
			select {
			case x := <-res:
				if x.err != nil {
					t.Logf("round %d: shim %d: %v", round, x.i, x.err)
					continue
				}
				ok = append(ok, x)
			case <-time.After(90 * time.Second):
				t.Fatalf("round %d: a shim gave no report in 90s", round)
			}
		}
		if len(ok) == 0 {
			t.Fatalf("round %d: no shim started the container", round)
		}
		// One container runs, started by one of the shims that reported.
		var alive []result
		deadline := time.Now().Add(30 * time.Second)
		for {
			alive = alive[:0]
			for _, x := range ok {
				if !exitedChild(x.cmd) {
					alive = append(alive, x)
				}
			}
			if len(alive) <= 1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(alive) != 1 {
			t.Fatalf("round %d: %d shims alive after 30s, want 1", round, len(alive))
		}
		c, err := libcontainer.Load(r.libcontainerRoot(), id)
		if err != nil {
			t.Fatalf("round %d: the container: %v", round, err)
		}
		st, err := c.Status()
		if err != nil || st != libcontainer.Running {
			t.Fatalf("round %d: the container is %v (%v), want running", round, st, err)
		}
		s, _ := c.State()
		if s.InitProcessPid != alive[0].rep.Pid {
			t.Fatalf("round %d: the container's init is %d, the live shim reported %d", round, s.InitProcessPid, alive[0].rep.Pid)
		}
		mu.Lock()
		for _, x := range ok {
			if x.cmd != alive[0].cmd {
				_ = x.cmd.Wait()
			}
		}
		mu.Unlock()
	}
}

// exitedChild reports whether the child cmd has exited (a zombie not yet
// waited for), without reaping it.
func exitedChild(cmd *exec.Cmd) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// TestShimWithoutReportIsKilled: a shim that never reports is killed,
// with everything in its session, once the wait for its report runs out,
// and the start fails with an error that says so (the agent retries it);
// before, the start waited for ever and held up its pod's sync.
func TestShimWithoutReportIsKilled(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	shim := filepath.Join(dir, "hung-shim")
	script := "#!/bin/sh\nsleep 600 &\necho $$ $! > " + filepath.Join(dir, "pids") + "\nwait\n"
	if err := os.WriteFile(shim, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r, _, pod, ref := podWithBusybox(t, func(c *Config) { c.ShimPath, c.shimReportWait = shim, time.Second })
	_, err := r.StartContainer(context.Background(), pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "shim gave no report: none in 1s; killed it") {
		t.Fatalf("start under a shim that never reports: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		eventually(t, 5*time.Second, "the hung shim's session is gone", func() error {
			if unix.Kill(pid, 0) == nil {
				return fmt.Errorf("process %d of the shim's session is alive", pid)
			}
			return nil
		})
	}
	if st, err := r.ContainerStatus(pod, "c"); err == nil {
		t.Errorf("a start that failed left the container behind: %+v", st)
	}
}

// TestRemovePodLeavesAHeldLock: removing a pod removes its containers'
// lock files, but not one that a shim still holds (a shim a killed skiff
// left behind): a later container of that name would lock a new file
// beside it, and the two shims would run at once.
func TestRemovePodLeavesAHeldLock(t *testing.T) {
	requireRoot(t)
	r, _, pod, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	for _, name := range []string{"free", "held"} {
		if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: name, Image: ref, Restart: RestartNever, Command: []string{"sleep", "600"}}); err != nil {
			t.Fatal(err)
		}
	}
	free, held := r.lockPath(containerID(pod, "free")), r.lockPath(containerID(pod, "held"))
	if _, err := os.Stat(free); err != nil {
		t.Fatalf("a running container's lock: %v", err)
	}
	if err := r.StopContainer(ctx, pod, "held", time.Second); err != nil {
		t.Fatal(err)
	}
	// The stand-in for a shim nobody knows of.
	fd, err := unix.Open(held, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("lock of a stopped container still held: %v", err)
	}
	if err := r.RemovePod(ctx, pod, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(free); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lock of a removed container: %v, want it gone", err)
	}
	if _, err := os.Stat(held); err != nil {
		t.Errorf("a lock held by a shim was removed: %v", err)
	}
}
