package containers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
)

// podWithBusybox opens a runtime with busybox pulled and a started pod.
func podWithBusybox(t *testing.T, mod func(*Config)) (*Runtime, Config, string, string) {
	t.Helper()
	reg := startRegistry(t)
	cfg := testConfig(t)
	if mod != nil {
		mod(&cfg)
	}
	r := openRuntime(t, cfg)
	ref := reg.Addr + "/busybox:1"
	if _, err := r.Images().Pull(context.Background(), ref, nil); err != nil {
		t.Fatal(err)
	}
	pod := "p-" + randSuffix()
	if err := r.StartPod(context.Background(), PodConfig{Name: pod}); err != nil {
		t.Fatal(err)
	}
	return r, cfg, pod, ref
}

func TestOOMKillIsReported(t *testing.T) {
	requireRoot(t)
	r, _, pod, ref := podWithBusybox(t, nil)
	_, err := r.StartContainer(context.Background(), pod, ContainerConfig{Name: "hog", Image: ref, Memory: 48 << 20, Restart: RestartNever,
		Command: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"}})
	if err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, r, pod, "hog", 20*time.Second)
	if ev.Status.Reason != ReasonOOMKilled || ev.Status.ExitCode != 137 || ev.Status.Signal != 9 {
		t.Fatalf("status %+v, want OOMKilled with 137", ev.Status)
	}
}

func TestRestartBackoff(t *testing.T) {
	requireRoot(t)
	clock := newFakeClock()
	r, _, pod, ref := podWithBusybox(t, func(c *Config) { c.Clock = clock })
	ctx := context.Background()
	if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "crash", Image: ref, Restart: RestartOnFailure,
		Command: []string{"sh", "-c", "echo run; exit 3"}}); err != nil {
		t.Fatal(err)
	}
	// Each exit schedules the next start 1s, 2s, 4s, 8s later; the restart
	// happens only when the clock passes the backoff.
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		ev := waitEvent(t, r, pod, "crash", 20*time.Second)
		if !ev.WillRestart || ev.Backoff != want || ev.Status.RestartCount != i || ev.Status.ExitCode != 3 {
			t.Fatalf("exit %d: %+v, want a restart after %s", i, ev, want)
		}
		eventually(t, 5*time.Second, "restart timer armed", func() error {
			if clock.Pending() == 0 {
				return errors.New("no timer")
			}
			return nil
		})
		clock.Advance(want - time.Millisecond)
		if st, _ := r.ContainerStatus(pod, "crash"); st.State != StateExited {
			t.Fatalf("restarted before its backoff: %+v", st)
		}
		clock.Advance(time.Millisecond)
	}
	// A run of ten minutes resets the backoff: make the next run "long".
	ev := waitEvent(t, r, pod, "crash", 20*time.Second)
	if ev.Backoff != 16*time.Second {
		t.Fatalf("fifth backoff %s", ev.Backoff)
	}
	// Logs hold every run.
	out := readLog(t, r, pod, "crash", LogOptions{Tail: -1})
	if n := strings.Count(out, " stdout F run\n"); n != 5 {
		t.Errorf("log has %d runs, want 5: %q", n, out)
	}
	// Stopping cancels the pending restart.
	if err := r.StopContainer(ctx, pod, "crash", time.Second); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if st, _ := r.ContainerStatus(pod, "crash"); st.State != StateExited || st.RestartCount != 4 {
		t.Fatalf("stopped container restarted: %+v", st)
	}
}

func TestBackoffResetsAfterLongRun(t *testing.T) {
	requireRoot(t)
	clock := newFakeClock()
	r, _, pod, ref := podWithBusybox(t, func(c *Config) { c.Clock = clock })
	ctx := context.Background()
	// The container exits when /tmp/go exists in its volume-less rootfs;
	// exec creates it, so that the test decides how long a run lasts.
	script := "echo up; while [ ! -e /tmp/go ]; do sleep 0.05; done; rm /tmp/go; exit 1"
	if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Restart: RestartAlways, Command: []string{"sh", "-c", script}}); err != nil {
		t.Fatal(err)
	}
	exitNow := func() {
		t.Helper()
		if _, err := r.Exec(ctx, pod, "c", ExecOptions{Args: []string{"touch", "/tmp/go"}}); err != nil {
			t.Fatal(err)
		}
	}
	restart := func(d time.Duration) {
		t.Helper()
		advanceWhenArmed(t, clock, d)
		eventually(t, 10*time.Second, "running again", func() error {
			if st, _ := r.ContainerStatus(pod, "c"); st.State != StateRunning {
				return fmt.Errorf("state %s", st.State)
			}
			return nil
		})
	}
	exitNow()
	if ev := waitEvent(t, r, pod, "c", 10*time.Second); ev.Backoff != time.Second {
		t.Fatalf("first backoff %s", ev.Backoff)
	}
	restart(time.Second)
	exitNow()
	if ev := waitEvent(t, r, pod, "c", 10*time.Second); ev.Backoff != 2*time.Second {
		t.Fatalf("second backoff %s", ev.Backoff)
	}
	restart(2 * time.Second)
	clock.Advance(10 * time.Minute) // this run lasts ten minutes
	exitNow()
	if ev := waitEvent(t, r, pod, "c", 10*time.Second); ev.Backoff != time.Second || ev.Status.RestartCount != 2 {
		t.Fatalf("backoff after a long run %s (restarts %d), want 1s", ev.Backoff, ev.Status.RestartCount)
	}
}

func TestLogsAcrossRestartRotationAndFollow(t *testing.T) {
	requireRoot(t)
	clock := newFakeClock()
	r, cfg, pod, ref := podWithBusybox(t, func(c *Config) { c.Clock = clock; c.LogMaxSize = 10000; c.LogMaxFiles = 3 })
	ctx := context.Background()
	// Each run prints 200 numbered lines (about 12 KB of log): every run
	// rotates the file.
	script := `i=0; while [ $i -lt 200 ]; do echo "run line $i"; i=$((i+1)); done; echo done-run >&2`
	if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "chatty", Image: ref, Restart: RestartAlways, Command: []string{"sh", "-c", script}}); err != nil {
		t.Fatal(err)
	}
	// The whole log, then what comes: the first run may be over already.
	follow, err := r.Logs(ctx, pod, "chatty", LogOptions{Tail: -1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer follow.Close()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(follow)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitEvent(t, r, pod, "chatty", 10*time.Second)
	advanceWhenArmed(t, clock, time.Second)
	ev := waitEvent(t, r, pod, "chatty", 10*time.Second)
	if ev.Status.RestartCount != 1 {
		t.Fatalf("second exit %+v", ev.Status)
	}
	// Follow saw both runs, across rotations.
	done, seen := 0, 0
	deadline := time.After(10 * time.Second)
	for done < 2 || seen < 402 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("follow ended")
			}
			seen++
			if strings.HasSuffix(l, " stderr F done-run") {
				done++
			}
		case <-deadline:
			out, _ := exec.Command("sh", "-c", "ls -lai "+filepath.Join(cfg.Root, "pods", pod, "logs")).CombinedOutput()
			t.Fatalf("follow saw %d run ends in %d lines, want 2 in 402; %s", done, seen, out)
		}
	}
	logDir := filepath.Join(cfg.Root, "pods", pod, "logs")
	for _, f := range []string{"chatty.log", "chatty.log.1"} {
		fi, err := os.Stat(filepath.Join(logDir, f))
		if err != nil || fi.Size() > cfg.LogMaxSize {
			t.Errorf("%s: %v, size over the limit?", f, err)
		}
	}
	tail := readLog(t, r, pod, "chatty", LogOptions{Tail: 3})
	tl := strings.Split(strings.TrimSpace(tail), "\n")
	all := readLog(t, r, pod, "chatty", LogOptions{Tail: -1})
	al := strings.Split(strings.TrimSpace(all), "\n")
	if len(tl) != 3 || strings.Join(tl, "\n") != strings.Join(al[len(al)-3:], "\n") {
		t.Errorf("tail 3 = %q, want the last 3 of %d lines", tl, len(al))
	}
	// Both runs are in the log, across the rotated files.
	if n := strings.Count(all, " stderr F done-run\n"); n != 2 || len(al) != 402 {
		t.Errorf("log has %d lines and %d run ends, want 402 and 2", len(al), n)
	}
	if _, err := time.Parse(time.RFC3339Nano, strings.Fields(tl[0])[0]); err != nil {
		t.Errorf("line without a timestamp: %q", tl[0])
	}
}

func TestExecAndStats(t *testing.T) {
	requireRoot(t)
	r, _, pod, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Memory: 32 << 20,
		Env: map[string]string{"GREETING": "hi"}, Workdir: "/tmp",
		Command: []string{"sh", "-c", "yes > /dev/null & sleep 600"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		args        []string
		code        int
		out, errOut string
	}{
		{"output and exit code", []string{"sh", "-c", "echo out $GREETING $(pwd); echo err >&2; exit 3"}, 3, "out hi /tmp\n", "err\n"},
		{"success", []string{"true"}, 0, "", ""},
		{"own netns with loopback up", []string{"sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags"}, 0, "lo\n0x9\n", ""},
		{"not found", []string{"/no/such/binary"}, -1, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code, err := r.Exec(ctx, pod, "c", ExecOptions{Args: tt.args, Stdout: &out, Stderr: &errOut})
			if tt.code == -1 {
				if err == nil {
					t.Fatalf("want an error, got code %d", code)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil || code != tt.code || out.String() != tt.out || errOut.String() != tt.errOut {
				t.Errorf("code %d err %v out %q err %q", code, err, out.String(), errOut.String())
			}
		})
	}
	var s1 Stats
	eventually(t, 10*time.Second, "cpu use shows", func() error {
		var err error
		s1, err = r.Stats(pod, "c")
		if err != nil {
			return err
		}
		if s1.CPUNanos < uint64(50*time.Millisecond) || s1.MemoryBytes == 0 || s1.Pids < 2 {
			return fmt.Errorf("stats %+v", s1)
		}
		return nil
	})
	if s1.MemoryLimit != 32<<20 {
		t.Errorf("memory limit %d", s1.MemoryLimit)
	}
	if _, err := r.Stats(pod, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stats of a missing container: %v", err)
	}
	// CPUNanos (one file) agrees with Stats (libcontainer) and grows: the
	// container runs `yes`.
	n1, err := r.CPUNanos(pod, "c")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := r.Stats(pod, "c")
	if err != nil {
		t.Fatal(err)
	}
	if n1 < s1.CPUNanos || n1 > s2.CPUNanos {
		t.Errorf("CPUNanos %d, want between the Stats before (%d) and after (%d)", n1, s1.CPUNanos, s2.CPUNanos)
	}
	eventually(t, 10*time.Second, "cpu usage grows", func() error {
		n2, err := r.CPUNanos(pod, "c")
		if err != nil || n2 <= s2.CPUNanos {
			return fmt.Errorf("CPUNanos %d (err %v), not above %d", n2, err, s2.CPUNanos)
		}
		return nil
	})
	if _, err := r.CPUNanos(pod, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cpu usage of a missing container: %v", err)
	}
}

func TestStopGraceAndSecurityDefaults(t *testing.T) {
	requireRoot(t)
	r, _, pod, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	start := func(name, script string) {
		if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: name, Image: ref, Command: []string{"sh", "-c", script}}); err != nil {
			t.Fatal(err)
		}
	}
	start("polite", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.05; done")
	start("stubborn", "trap '' TERM; while true; do sleep 0.05; done")
	// Idempotent start: same pid.
	a, _ := r.ContainerStatus(pod, "polite")
	b, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "polite", Image: ref})
	if err != nil || b.Pid != a.Pid {
		t.Fatalf("second start: %v, pid %d vs %d", err, b.Pid, a.Pid)
	}
	var out strings.Builder
	if _, err := r.Exec(ctx, pod, "polite", ExecOptions{Args: []string{"sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; cat /proc/kcore | wc -c; echo x > /proc/sys/kernel/hostname || echo ro-proc"}, Stdout: &out, Stderr: &out}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CapEff:\t0000000020000420", "NoNewPrivs:\t1", "\n0\n", "ro-proc"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("security defaults: %q lacks %q", out.String(), want)
		}
	}
	t0 := time.Now()
	if err := r.StopContainer(ctx, pod, "polite", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.ContainerStatus(pod, "polite"); st.State != StateExited || st.ExitCode != 0 || time.Since(t0) > 3*time.Second {
		t.Errorf("polite stop: %+v after %s", st, time.Since(t0))
	}
	t0 = time.Now()
	if err := r.StopContainer(ctx, pod, "stubborn", 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.ContainerStatus(pod, "stubborn"); st.State != StateExited || st.ExitCode != 137 || time.Since(t0) < 500*time.Millisecond {
		t.Errorf("stubborn stop: %+v after %s", st, time.Since(t0))
	}
	if !strings.Contains(readLog(t, r, pod, "polite", LogOptions{Tail: -1}), "stdout F bye") {
		t.Error("polite container did not get SIGTERM")
	}
}

// advanceWhenArmed waits until a restart timer waits on the fake clock and
// then moves the clock.
func advanceWhenArmed(t *testing.T, clock *fakeClock, d time.Duration) {
	t.Helper()
	eventually(t, 5*time.Second, "restart timer armed", func() error {
		if clock.Pending() == 0 {
			return errors.New("no timer")
		}
		return nil
	})
	clock.Advance(d)
}

// TestFailedStartLeavesNoRootfs starts a container whose binary does not
// exist: the start fails, its root filesystem is unmounted again, and a
// start of the same name with another command then works.
func TestFailedStartLeavesNoRootfs(t *testing.T) {
	requireRoot(t)
	r, cfg, pod, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"/no/such/binary"}}); err == nil {
		t.Fatal("start of a missing binary succeeded")
	}
	rootfs := filepath.Join(cfg.Root, "pods", pod, "containers", "c", "rootfs")
	if ok, err := mountinfo.Mounted(rootfs); err != nil || ok {
		t.Errorf("rootfs of the failed start still mounted (%v, err %v)", ok, err)
	}
	if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}}); err != nil {
		t.Fatalf("start after a failed start: %v", err)
	}
}
