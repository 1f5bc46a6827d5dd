package containers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a stand-in for a skiff process: it opens
// a runtime, starts a container, prints its pid and waits to be killed.
const helperEnv = "SKIFF_CONTAINERS_HELPER"

type helperArgs struct {
	Root, StateDir, CgroupParent, Image, Pod string
	// Command, Restart and LogMaxSize, when set, replace the ticker's.
	Command    []string
	Restart    RestartPolicy
	LogMaxSize int64
}

func runHelper() {
	var a helperArgs
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &a); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	cfg := DefaultConfig()
	cfg.Root, cfg.StateDir, cfg.CgroupParent = a.Root, a.StateDir, a.CgroupParent
	if a.LogMaxSize > 0 {
		cfg.LogMaxSize = a.LogMaxSize
	}
	c := ContainerConfig{Name: "ticker", Image: a.Image, Restart: RestartAlways,
		Command: []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done"}}
	if a.Command != nil {
		c.Command, c.Restart = a.Command, a.Restart
	}
	ctx := context.Background()
	r, err := Open(ctx, cfg)
	if err == nil {
		err = r.StartPod(ctx, PodConfig{Name: a.Pod})
	}
	var st ContainerStatus
	if err == nil {
		st, err = r.StartContainer(ctx, a.Pod, c)
	}
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("started", st.Pid)
	select {} // until killed
}

func TestReadoptionAfterRuntimeRestart(t *testing.T) {
	requireRoot(t)
	r1, cfg, pod, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	for _, n := range []string{"keeps", "dies"} {
		if _, err := r1.StartContainer(ctx, pod, ContainerConfig{Name: n, Image: ref, Restart: RestartNever, Command: []string{"sleep", "600"}}); err != nil {
			t.Fatal(err)
		}
	}
	keeps, _ := r1.ContainerStatus(pod, "keeps")
	dies, _ := r1.ContainerStatus(pod, "dies")
	r1.Close()
	if err := unix.Kill(dies.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Wait until its shim recorded the exit and is gone.
	var rec record
	b, _ := os.ReadFile(r1.ctrStateDir(containerID(pod, "dies")) + "/record.json")
	json.Unmarshal(b, &rec)
	eventually(t, 10*time.Second, "shim of the killed container ends", func() error {
		if err := unix.Kill(rec.ShimPID, 0); err == nil {
			return errors.New("shim alive")
		}
		return nil
	})

	r2, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	st, err := r2.ContainerStatus(pod, "keeps")
	if err != nil || st.State != StateRunning || st.Pid != keeps.Pid || !st.StartedAt.Equal(keeps.StartedAt) {
		t.Errorf("adopted running container: %+v (%v), want running with pid %d", st, err, keeps.Pid)
	}
	st, err = r2.ContainerStatus(pod, "dies")
	if err != nil || st.State != StateExited || st.ExitCode != 137 || st.Signal != 9 {
		t.Errorf("container that died meanwhile: %+v (%v), want exited 137", st, err)
	}
	if ev := waitEvent(t, r2, pod, "dies", 5*time.Second); ev.Status.State != StateExited {
		t.Errorf("event %+v", ev)
	}
	// Idempotent start on the new runtime: nothing restarts.
	if st, err := r2.StartContainer(ctx, pod, ContainerConfig{Name: "keeps", Image: ref}); err != nil || st.Pid != keeps.Pid {
		t.Errorf("start of an adopted container: %+v, %v", st, err)
	}
	// The new runtime sees the adopted container exit (pidfd, not wait).
	if err := unix.Kill(keeps.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, r2, pod, "keeps", 10*time.Second); ev.Status.ExitCode != 137 {
		t.Errorf("adopted exit %+v", ev.Status)
	}
	// Exec and stats work on adopted containers too.
	if _, err := r2.StartContainer(ctx, pod, ContainerConfig{Name: "late", Image: ref, Command: []string{"sleep", "600"}}); err != nil {
		t.Fatal(err)
	}
	if err := r2.RemovePod(ctx, pod, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestContainersSurviveKilledProcess(t *testing.T) {
	requireRoot(t)
	r0, cfg, pod, ref := podWithBusybox(t, nil)
	r0.Close()
	// The pod was started by r0; the helper re-opens it and adds a container.
	args, _ := json.Marshal(helperArgs{Root: cfg.Root, StateDir: cfg.StateDir, CgroupParent: cfg.CgroupParent, Image: ref, Pod: pod})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+string(args))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "started ") {
		t.Fatalf("helper: %q, %v", line, err)
	}
	var pid int
	fmt.Sscanf(line, "started %d", &pid)
	// kill -9 the "skiff" process: the container and its log go on.
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	logPath := cfg.Root + "/pods/" + pod + "/logs/ticker.log"
	size := func() int64 {
		fi, err := os.Stat(logPath)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	s0 := size()
	eventually(t, 5*time.Second, "log grows after the process died", func() error {
		if size() <= s0 {
			return errors.New("log did not grow")
		}
		return nil
	})
	if err := unix.Kill(pid, 0); err != nil {
		t.Fatalf("container died with its starter: %v", err)
	}
	r, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := r.ContainerStatus(pod, "ticker")
	if err != nil || st.State != StateRunning || st.Pid != pid {
		t.Fatalf("adopted: %+v (%v), want running pid %d", st, err, pid)
	}
	if !strings.Contains(readLog(t, r, pod, "ticker", LogOptions{Tail: 5}), "stdout F tick") {
		t.Error("no ticks in the log")
	}
	// The new runtime's supervisor restarts it (policy always).
	unix.Kill(pid, unix.SIGKILL)
	ev := waitEvent(t, r, pod, "ticker", 10*time.Second)
	if !ev.WillRestart || ev.Backoff != time.Second {
		t.Fatalf("exit of adopted container: %+v", ev)
	}
	eventually(t, 10*time.Second, "restarted by the new runtime", func() error {
		st, _ := r.ContainerStatus(pod, "ticker")
		if st.State != StateRunning || st.RestartCount != 1 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	if err := r.RemovePod(context.Background(), pod, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	requireRoot(t)
	r, cfg, pod, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	if err := r.StartPod(ctx, PodConfig{Name: "vols", Volumes: map[string]Volume{"m": {Type: VolumeMemory}}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{pod, "vols"} {
		if _, err := r.StartContainer(ctx, p, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}}); err != nil {
			t.Fatal(err)
		}
	}
	var pids []int
	for _, st := range r.Status() {
		pids = append(pids, st.Pid)
	}
	r.Close()
	if err := Cleanup(cfg); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, cfg)
	// Killed containers whose shim was killed first are reaped by pid 1,
	// in its own time: a zombie is dead enough.
	for _, pid := range pids {
		eventually(t, 5*time.Second, "container process gone", func() error {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil || strings.Contains(string(b), ") Z ") {
				return nil
			}
			return fmt.Errorf("pid %d alive: %s", pid, b)
		})
	}
	// Images stay.
	if _, err := os.Stat(cfg.Root + "/layers"); err != nil {
		t.Errorf("layers removed: %v", err)
	}
}

// TestStartAfterCutShortCreate: a libcontainer state directory without its
// state (what a create killed by kill -9 of skiff between libcontainer
// making the directory and saving the state leaves) does not block the
// container's start; before, every start failed with "container with given
// ID already exists" and the pod never came up.
func TestStartAfterCutShortCreate(t *testing.T) {
	requireRoot(t)
	r, _, pod, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	dir := filepath.Join(r.libcontainerRoot(), containerID(pod, "late"))
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	st, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "late", Image: ref, Restart: RestartNever, Command: []string{"sleep", "600"}})
	if err != nil || st.State != StateRunning {
		t.Fatalf("start over a cut-short create: %+v, %v", st, err)
	}
	if err := r.RemovePod(ctx, pod, time.Second); err != nil {
		t.Fatal(err)
	}
}
