package containers

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	_ "github.com/opencontainers/cgroups/devices" // device cgroup rules
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runs before Go in "init"
	"github.com/skiff-edge/skiff/containers/internal/atomicfile"
)

// ShimArg is the first argument with which the binary is re-executed as a
// container's shim.
const ShimArg = "containers-shim"

// Init must be called first thing in main (and in TestMain) of any binary
// that uses this package. When the binary was re-executed as libcontainer's
// init or as a container shim, Init runs that and never returns; otherwise
// it returns at once.
func Init() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case "init":
		libcontainer.Init() // never returns
	case ShimArg:
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: containers-shim SPEC")
			os.Exit(2)
		}
		if err := runShim(os.Args[2]); err != nil {
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

// runShim creates and runs the container, reports its pid to the runtime,
// logs its output, waits for it, records its exit and destroys it.
//
// The shim, not the runtime, is the container's parent, in its own session:
// the container's stdout and stderr are pipes into the shim, so the
// container never writes into a dead process, its logs go on when the
// runtime's process dies, and its exit status is waited for and recorded
// where a later runtime finds it.
func runShim(specPath string) error {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	report := os.NewFile(3, "report")
	b, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var spec shimSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("parse spec: %w", err)
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
	// A container left over from a shim that died is in our way.
	if old, err := libcontainer.Load(spec.StateRoot, spec.ID); err == nil {
		_ = old.Signal(syscall.SIGKILL)
		_ = old.Destroy()
	}
	ctr, err := libcontainer.Create(spec.StateRoot, spec.ID, spec.Config)
	if err != nil {
		return fail(fmt.Errorf("create container: %w", err))
	}
	proc := &libcontainer.Process{
		Args:             spec.Process.Args,
		Env:              spec.Process.Env,
		Cwd:              spec.Process.Cwd,
		UID:              spec.Process.UID,
		GID:              spec.Process.GID,
		AdditionalGroups: spec.Process.Groups,
		Stdout:           outW,
		Stderr:           errW,
		Init:             true,
	}
	if err := ctr.Run(proc); err != nil {
		_ = ctr.Destroy()
		return fail(fmt.Errorf("start container: %w", err))
	}
	outW.Close()
	errW.Close()
	started := time.Now().UTC()
	pid, _ := proc.Pid()
	var memCgroup string
	if st, err := ctr.State(); err == nil {
		memCgroup = st.CgroupPaths["memory"]
	}
	_ = json.NewEncoder(report).Encode(shimReport{Pid: pid, StartedAt: started})
	report.Close()

	var wg sync.WaitGroup
	for _, s := range []struct {
		name string
		r    *os.File
	}{{"stdout", outR}, {"stderr", errR}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = logw.copyLines(s.name, s.r)
		}()
	}
	ps, werr := proc.Wait()
	ex := exitRecord{Pid: pid, StartedAt: started, FinishedAt: time.Now().UTC(), ExitCode: -1}
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
	if memCgroup != "" {
		if n, err := fs.OOMKillCount(memCgroup); err == nil && n > 0 {
			ex.OOMKilled = true
		}
	}
	wg.Wait() // the pid namespace is gone, so are all writers of the pipes
	eb, _ := json.Marshal(ex)
	if err := atomicfile.Write(spec.ExitPath, eb); err != nil {
		fmt.Fprintln(os.Stderr, "shim: write exit:", err)
	}
	if err := ctr.Destroy(); err != nil {
		fmt.Fprintln(os.Stderr, "shim: destroy:", err)
	}
	return nil
}
