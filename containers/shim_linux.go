package containers

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	_ "github.com/opencontainers/cgroups/devices" // device cgroup rules
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runs before Go in "init"
	"github.com/skiff-edge/skiff/containers/internal/atomicfile"
	_ "github.com/skiff-edge/skiff/containers/internal/cshim" // the shim, in C, before Go starts
	"golang.org/x/sys/unix"
)

// ShimArg is the first argument with which the binary is re-executed as a
// container's shim. The shim starts in Go (runShimStart): it creates and
// starts the container through libcontainer, then execs the binary again
// as the C shim (cShimArg, package internal/cshim), a constructor that
// takes the process over before the Go runtime starts and supervises the
// container for the rest of its life in a few hundred KB.
const ShimArg = "containers-shim"

const (
	// cShimArg is the C shim's first argument; internal/cshim has the same.
	cShimArg = "containers-shim-c"
	// destroyArg runs the Go part of the C shim's end, for a moment.
	destroyArg = "containers-destroy"
	// goShimArg is the shim as it was before the C shim, all Go, which
	// only the benchmarks run now, as the baseline of the C shim's memory.
	goShimArg = "containers-shim-go"
)

// Init must be called first thing in main (and in TestMain) of any binary
// that uses this package. When the binary was re-executed as libcontainer's
// init or as a container's shim, Init runs that and never returns;
// otherwise it returns at once. (The C shim never reaches Init: its
// constructor runs before Go does.)
func Init() {
	if len(os.Args) < 2 {
		return
	}
	run := map[string]func(string) error{ShimArg: runShimStart, destroyArg: runDestroy, goShimArg: runShim}[os.Args[1]]
	switch {
	case os.Args[1] == "init":
		libcontainer.Init() // never returns
	case os.Args[1] == cShimArg:
		fmt.Fprintln(os.Stderr, "shim: the C shim did not run: binary built without cgo?")
		os.Exit(2)
	case run != nil:
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage:", os.Args[1], "SPEC")
			os.Exit(2)
		}
		if err := run(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "shim:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// shimSpec is what the runtime hands the shim, as a JSON file.
type shimSpec struct {
	StateRoot   string          `json:"state_root"` // libcontainer root
	ID          string          `json:"id"`
	Config      *configs.Config `json:"config"`
	Process     processSpec     `json:"process"`
	LogPath     string          `json:"log_path"`
	LogMaxSize  int64           `json:"log_max_size"`
	LogMaxFiles int             `json:"log_max_files"`
	ExitPath    string          `json:"exit_path"`
	LockPath    string          `json:"lock_path"` // see lockContainer; empty from a skiff before it
}

// shimReport is the shim's first and only message to the runtime, on fd 3.
type shimReport struct {
	Pid       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at"`
	Error     string    `json:"error,omitempty"`
}

// exitRecord is what the shim writes when the container exits.
type exitRecord struct {
	Pid        int       `json:"pid"`
	ExitCode   int       `json:"exit_code"`
	Signal     int       `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// readSpec reads the spec the runtime wrote for a shim.
func readSpec(path string) (shimSpec, error) {
	var spec shimSpec
	b, err := os.ReadFile(path)
	if err != nil {
		return spec, err
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return spec, fmt.Errorf("parse spec: %w", err)
	}
	return spec, nil
}

// started is a container just started by startContainer.
type started struct {
	ctr       *libcontainer.Container
	proc      *libcontainer.Process
	pid       int
	at        time.Time
	memCgroup string
	lock      int // the container's lock (close-on-exec), or -1
}

// signalContainer sends sig to the init of container id under root, if
// libcontainer knows it.
func signalContainer(root, id string, sig os.Signal) {
	if c, err := libcontainer.Load(root, id); err == nil {
		_ = c.Signal(sig)
	}
}

// destroyContainer kills container id under root and removes its cgroups
// and state, if libcontainer knows it; it reports whether it did.
func destroyContainer(root, id string) bool {
	c, err := libcontainer.Load(root, id)
	if err != nil {
		return false
	}
	_ = c.Signal(unix.SIGKILL)
	_ = c.Destroy()
	return true
}

// shimLockWait bounds a shim's wait for another shim of the same
// container to end (see lockContainer).
const shimLockWait = time.Minute

// lockContainer takes the container's lock at path and returns its fd,
// close-on-exec; -1 when path is empty (a spec from a skiff before
// locks). A shim holds it from before it creates the container until the
// container is destroyed (the C shim and the destroy it runs inherit it).
//
// Without it two shims of one container could run at once: a skiff
// killed while its shim starts a container leaves that shim running, and
// the next skiff, which has no record of it, starts the container again.
// The two then removed each other's libcontainer state mid-create and
// failed, or hung, and the survivor's destroy took the other's container
// with it. With it, the later shim kills the earlier one's container
// (which makes that shim destroy it and end) and waits for the lock.
func lockContainer(path, root, id string) (int, error) {
	if path == "" {
		return -1, nil
	}
	deadline := time.Now().Add(shimLockWait)
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return -1, fmt.Errorf("container lock: %w", err)
		}
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			// A lock on a file removed meanwhile (the pod was removed and
			// made again) excludes nobody: take the one at path.
			var held, now unix.Stat_t
			if unix.Fstat(fd, &held) == nil && unix.Stat(path, &now) == nil && held.Dev == now.Dev && held.Ino == now.Ino {
				return fd, nil
			}
			unix.Close(fd)
			continue
		}
		unix.Close(fd)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return -1, fmt.Errorf("container lock: %w", err)
		}
		signalContainer(root, id, unix.SIGKILL) // its shim destroys it and ends
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("another shim of container %s still runs after %s", id, shimLockWait)
		}
		time.Sleep(20 * time.Millisecond) // the other shim ends in its own time: nothing to wait on but the lock
	}
}

// startContainer creates and starts the container of spec with stdout and
// stderr on the given pipes; the caller closes its ends of them. It
// returns with the container's lock held.
func startContainer(spec shimSpec, stdout, stderr *os.File) (s started, err error) {
	lock, err := lockContainer(spec.LockPath, spec.StateRoot, spec.ID)
	if err != nil {
		return started{}, err
	}
	defer func() {
		if err != nil && lock >= 0 {
			unix.Close(lock)
		}
	}()
	// An earlier shim that ended while we waited recorded its container's
	// exit: not this run's.
	if lock >= 0 {
		_ = os.Remove(spec.ExitPath)
	}
	// With the lock held, no other shim is creating this container. One
	// left over from a shim that died is in our way. So is the state
	// directory of one whose create was killed (the whole node killed,
	// say) before libcontainer saved its state (Create makes the
	// directory first): Load cannot read it and Create refuses an
	// existing directory, so every later start would fail with "already
	// exists".
	if dir := filepath.Join(spec.StateRoot, spec.ID); !destroyContainer(spec.StateRoot, spec.ID) && dirExists(dir) {
		if err := os.RemoveAll(dir); err != nil {
			return started{}, fmt.Errorf("remove the state of a container whose create was cut short: %w", err)
		}
	}
	c, err := libcontainer.Create(spec.StateRoot, spec.ID, spec.Config)
	if err != nil {
		return started{}, fmt.Errorf("create container: %w", err)
	}
	proc := &libcontainer.Process{
		Args:             spec.Process.Args,
		Env:              spec.Process.Env,
		Cwd:              spec.Process.Cwd,
		UID:              spec.Process.UID,
		GID:              spec.Process.GID,
		AdditionalGroups: spec.Process.Groups,
		Stdout:           stdout,
		Stderr:           stderr,
		Init:             true,
	}
	if err := c.Run(proc); err != nil {
		_ = c.Destroy()
		return started{}, fmt.Errorf("start container: %w", err)
	}
	s = started{ctr: c, proc: proc, at: time.Now().UTC(), lock: lock}
	s.pid, _ = proc.Pid()
	if st, err := c.State(); err == nil {
		s.memCgroup = st.CgroupPaths["memory"]
	}
	return s, nil
}

// runShimStart is the shim's start, in Go: it creates and starts the
// container with its stdout and stderr on pipes, then execs the binary as
// the C shim, with the pipes' read ends, the report pipe and the
// container's lock left open across the exec and their numbers among the
// arguments (see internal/cshim). The exec keeps the pid, so the container
// stays the shim's child, and the Go runtime's memory is gone. A failure before the exec is reported here, on fd 3.
func runShimStart(specPath string) error {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	// Raw fds, not *os.File, for what crosses the exec: a File's finalizer
	// could close one.
	const reportFd = 3
	unix.CloseOnExec(reportFd) // not inherited by the container's processes
	fail := func(err error) error {
		b, _ := json.Marshal(shimReport{Error: err.Error()})
		_, _ = unix.Write(reportFd, append(b, '\n'))
		return err
	}
	spec, err := readSpec(specPath)
	if err != nil {
		return fail(err)
	}
	// The C shim opens the log again; opening it here first makes a log
	// that cannot be written a failed start, before the container runs.
	logw, err := openLogWriter(spec.LogPath, spec.LogMaxSize, spec.LogMaxFiles)
	if err != nil {
		return fail(err)
	}
	logw.Close()
	var outP, errP [2]int
	if err := unix.Pipe2(outP[:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	if err := unix.Pipe2(errP[:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	outW, errW := os.NewFile(uintptr(outP[1]), "stdout"), os.NewFile(uintptr(errP[1]), "stderr")
	s, err := startContainer(spec, outW, errW)
	outW.Close()
	errW.Close()
	if err != nil {
		return fail(err)
	}
	// Stdout, stderr, the report and the lock cross the exec where they
	// are, their numbers in the arguments: a dup onto a fixed number could
	// replace a descriptor of this process's Go runtime (its poller's, say)
	// in the moment before the exec.
	crossing := []int{outP[0], errP[0], reportFd}
	if s.lock >= 0 {
		crossing = append(crossing, s.lock) // the C shim leaves it open to its end
	}
	for _, fd := range crossing {
		if err == nil {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
		}
	}
	if err == nil {
		args := []string{"skiff-shim", cShimArg, specPath, strconv.Itoa(s.pid), s.at.Format(time.RFC3339Nano),
			s.memCgroup, spec.LogPath, strconv.FormatInt(spec.LogMaxSize, 10), strconv.Itoa(spec.LogMaxFiles), spec.ExitPath,
			strconv.Itoa(outP[0]), strconv.Itoa(errP[0]), strconv.Itoa(reportFd)}
		err = unix.Exec("/proc/self/exe", args, os.Environ()) // returns only on failure
	}
	// The container must not run without its shim.
	_ = s.ctr.Signal(syscall.SIGKILL)
	_, _ = s.proc.Wait()
	_ = s.ctr.Destroy()
	return fail(fmt.Errorf("exec the C shim: %w", err))
}

// runDestroy is the Go part of the C shim's end: it removes the stopped
// container's cgroups and libcontainer state, after the C shim recorded
// its exit.
func runDestroy(specPath string) error {
	spec, err := readSpec(specPath)
	if err != nil {
		return err
	}
	c, err := libcontainer.Load(spec.StateRoot, spec.ID)
	if err != nil {
		return nil // destroyed already
	}
	return c.Destroy()
}

// runShim is the shim as it was before the C shim, all in Go: it creates
// and runs the container, reports its pid to the runtime, logs its output,
// waits for it, records its exit and destroys it. It costs a Go runtime
// per container (about 4.6 MB PSS), which is why the C shim replaced it;
// it stays as the baseline that bench/pss.sh measures the C shim against,
// run when Config.goShim is set (tests and benchmarks only).
func runShim(specPath string) error {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	report := os.NewFile(3, "report")
	spec, err := readSpec(specPath)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		_ = json.NewEncoder(report).Encode(shimReport{Error: err.Error()})
		report.Close()
		return err
	}
	logw, err := openLogWriter(spec.LogPath, spec.LogMaxSize, spec.LogMaxFiles)
	if err != nil {
		return fail(err)
	}
	defer logw.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	s, err := startContainer(spec, outW, errW)
	if err != nil {
		return fail(err)
	}
	outW.Close()
	errW.Close()
	pid := s.pid
	_ = json.NewEncoder(report).Encode(shimReport{Pid: pid, StartedAt: s.at})
	report.Close()

	var wg sync.WaitGroup
	for _, st := range []struct {
		name string
		r    *os.File
	}{{"stdout", outR}, {"stderr", errR}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = logw.copyLines(st.name, st.r)
		}()
	}
	ps, werr := s.proc.Wait()
	ex := exitRecord{Pid: pid, StartedAt: s.at, FinishedAt: time.Now().UTC(), ExitCode: -1}
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Exited():
				ex.ExitCode = ws.ExitStatus()
			case ws.Signaled():
				ex.Signal = int(ws.Signal())
				ex.ExitCode = 128 + ex.Signal
			}
		}
	} else if werr != nil && !errors.As(werr, new(*exec.ExitError)) {
		fmt.Fprintln(os.Stderr, "shim: wait:", werr)
	}
	if s.memCgroup != "" {
		if n, err := fs.OOMKillCount(s.memCgroup); err == nil && n > 0 {
			ex.OOMKilled = true
		}
	}
	wg.Wait() // the pid namespace is gone, so are all writers of the pipes
	eb, _ := json.Marshal(ex)
	if err := atomicfile.Write(spec.ExitPath, eb); err != nil {
		fmt.Fprintln(os.Stderr, "shim: write exit:", err)
	}
	if err := s.ctr.Destroy(); err != nil {
		fmt.Fprintln(os.Stderr, "shim: destroy:", err)
	}
	return nil
}

func dirExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
