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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// TestLogsAndExitSurviveKilledOwner kill -9s the process that started a
// container (a stand-in for skiff) while the container writes its log,
// lets the container go on writing until the log rotates, end with a line
// longer than a log line and exit with code 7, and then opens a new
// runtime on the same state: it must find the container exited with code
// 7, every line written while nobody but the shim was there, in order and
// in the CRI format, rotated within the size budget, and the container's
// libcontainer state and shim gone.
func TestLogsAndExitSurviveKilledOwner(t *testing.T) {
	requireRoot(t)
	r0, cfg, pod, ref := podWithBusybox(t, nil)
	r0.Close()
	const logMax = 8 << 10
	// The container ticks until /stop appears in its root filesystem, then
	// writes 400 numbered lines (about 25 KB: the log rotates), one line of
	// 20000 bytes without a newline on stderr, and exits 7.
	script := `i=0; while [ ! -e /stop ]; do echo tick $i; i=$((i+1)); sleep 0.02; done
j=0; while [ $j -lt 400 ]; do echo after-owner-died $j; j=$((j+1)); done
head -c 20000 /dev/zero | tr '\0' x >&2
exit 7`
	args, _ := json.Marshal(helperArgs{Root: cfg.Root, StateDir: cfg.StateDir, CgroupParent: cfg.CgroupParent,
		Image: ref, Pod: pod, Command: []string{"sh", "-c", script}, Restart: RestartNever, LogMaxSize: logMax})
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
	id := containerID(pod, "ticker")
	var rec record
	b, err := os.ReadFile(filepath.Join(cfg.StateDir, "containers", id, "record.json"))
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil || rec.ShimPID == 0 {
		t.Fatalf("record of the started container: %+v, %v", rec, err)
	}
	// The shim is the C shim now (one thread, Go is gone), and its only
	// child the container: nothing libcontainer started is left a zombie.
	eventually(t, 5*time.Second, "the container is the shim's only child", func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", rec.ShimPID, rec.ShimPID))
		if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
			return fmt.Errorf("children of the shim: %q (%v), want %d", b, err, pid)
		}
		return nil
	})
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", rec.ShimPID)); !strings.Contains(string(comm), "Threads:\t1\n") {
		t.Errorf("the shim is not the single-threaded C shim: %s", comm)
	}
	logPath := filepath.Join(cfg.Root, "pods", pod, "logs", "ticker.log")
	eventually(t, 5*time.Second, "first tick logged", func() error {
		if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "stdout F tick 0\n") {
			return errors.New("no tick yet")
		}
		return nil
	})

	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// Nobody but the shim is left to hear the container now.
	stop := filepath.Join(cfg.Root, "pods", pod, "containers", "ticker", "rootfs", "stop")
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the container exits and its shim ends", func() error {
		if err := unix.Kill(rec.ShimPID, 0); err == nil {
			return fmt.Errorf("shim %d alive", rec.ShimPID)
		}
		return nil
	})
	if _, err := libcontainer.Load(filepath.Join(cfg.StateDir, "libcontainer"), id); err == nil {
		t.Error("the shim left the container's libcontainer state behind")
	}

	r, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := r.ContainerStatus(pod, "ticker")
	if err != nil || st.State != StateExited || st.ExitCode != 7 || st.Signal != 0 || st.Reason != ReasonError || st.FinishedAt.Before(st.StartedAt) {
		t.Fatalf("re-adopted: %+v (%v), want exited with code 7", st, err)
	}
	if ev := waitEvent(t, r, pod, "ticker", 5*time.Second); ev.Status.ExitCode != 7 || ev.WillRestart {
		t.Errorf("exit event %+v", ev)
	}
	// The log: rotated within its budget, nothing lost that is still in
	// the files kept, every line in the CRI format, in order.
	for _, p := range []string{logPath, logPath + ".1", logPath + ".2"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("log file %s: %v (the log should have rotated twice)", p, err)
		}
		if fi.Size() > logMax+maxLogLine+64 {
			t.Errorf("%s: %d bytes, over the budget of %d", p, fi.Size(), logMax)
		}
	}
	lines := strings.Split(strings.TrimSuffix(readLog(t, r, pod, "ticker", LogOptions{Tail: -1}), "\n"), "\n")
	next := -1
	for _, l := range lines {
		f := strings.SplitN(l, " ", 4)
		if len(f) != 4 {
			t.Fatalf("log line not in the CRI format: %q", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
			t.Fatalf("log line %q: timestamp: %v", l, err)
		}
		var n int
		if _, err := fmt.Sscanf(f[3], "after-owner-died %d", &n); err == nil {
			if next >= 0 && n != next {
				t.Fatalf("line %d follows line %d", n, next-1)
			}
			next = n + 1
		}
	}
	if next != 400 {
		t.Errorf("the last numbered line is %d, want 399", next-1)
	}
	tail := lines[len(lines)-2:]
	if !strings.Contains(tail[0], " stderr P "+strings.Repeat("x", maxLogLine)) ||
		!strings.HasSuffix(tail[1], " stderr F "+strings.Repeat("x", 20000-maxLogLine)) {
		t.Errorf("the long last line is not split as P then F: %.80q ... %.80q", tail[0], tail[1])
	}
	if err := r.RemovePod(context.Background(), pod, time.Second); err != nil {
		t.Fatal(err)
	}
}
