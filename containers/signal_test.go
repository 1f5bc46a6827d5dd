package containers

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSignal sends signals to real containers: the run gets the signal,
// its exit is reported like any other (the restart policy decides), and a
// container that does not exist or does not run is an error the caller
// can tell apart.
func TestSignal(t *testing.T) {
	requireRoot(t)
	clock := newFakeClock() // restarts wait on it: the killed run stays exited
	r, _, pod, ref := podWithBusybox(t, func(c *Config) { c.Clock = clock })
	ctx := context.Background()
	start := func(name, script string, restart RestartPolicy) int {
		t.Helper()
		st, err := r.StartContainer(ctx, pod, ContainerConfig{Name: name, Image: ref, Restart: restart, Command: []string{"sh", "-c", script}})
		if err != nil {
			t.Fatal(err)
		}
		return st.Pid
	}
	start("polite", "echo up; trap 'echo got-term; exit 0' TERM; while true; do sleep 0.05; done", RestartNever)
	stubbornPid := start("stubborn", "echo up; trap '' TERM; while true; do sleep 0.05; done", RestartAlways)
	// The shells must have set their traps before a signal comes.
	for _, name := range []string{"polite", "stubborn"} {
		eventually(t, 10*time.Second, name+" up", func() error {
			if !strings.Contains(readLog(t, r, pod, name, LogOptions{Tail: -1}), "stdout F up") {
				return errors.New("no output yet")
			}
			return nil
		})
	}

	tests := []struct {
		name    string
		ctr     string
		sig     os.Signal
		wantErr error
		// check runs after a signal that was delivered.
		check func(t *testing.T)
	}{
		{name: "unknown container", ctr: "nope", sig: syscall.SIGTERM, wantErr: ErrNotFound},
		{name: "SIGTERM reaches the trap", ctr: "polite", sig: syscall.SIGTERM, check: func(t *testing.T) {
			ev := waitEvent(t, r, pod, "polite", 10*time.Second)
			if ev.Status.ExitCode != 0 || ev.WillRestart {
				t.Errorf("exit %+v, want code 0 and no restart", ev)
			}
			if !strings.Contains(readLog(t, r, pod, "polite", LogOptions{Tail: -1}), "stdout F got-term") {
				t.Error("the container's TERM trap did not run")
			}
		}},
		{name: "exited container", ctr: "polite", sig: syscall.SIGTERM, wantErr: ErrNotRunning},
		{name: "ignored SIGTERM", ctr: "stubborn", sig: syscall.SIGTERM, check: func(t *testing.T) {
			// An ignored signal is discarded when sent: the same run is
			// there and answers an exec.
			if _, err := r.Exec(ctx, pod, "stubborn", ExecOptions{Args: []string{"true"}}); err != nil {
				t.Fatalf("exec after an ignored SIGTERM: %v", err)
			}
			if st, _ := r.ContainerStatus(pod, "stubborn"); st.State != StateRunning || st.Pid != stubbornPid {
				t.Fatalf("stubborn container after an ignored SIGTERM: %+v", st)
			}
		}},
		{name: "SIGKILL ends the run and the policy restarts it", ctr: "stubborn", sig: os.Kill, check: func(t *testing.T) {
			ev := waitEvent(t, r, pod, "stubborn", 10*time.Second)
			if ev.Status.Signal != 9 || ev.Status.ExitCode != 137 || !ev.WillRestart || ev.Backoff != time.Second {
				t.Errorf("exit %+v, want SIGKILL (137) and a restart after 1s", ev)
			}
		}},
		{name: "killed container waiting for its restart", ctr: "stubborn", sig: os.Kill, wantErr: ErrNotRunning},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Signal(pod, tc.ctr, tc.sig)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Signal: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Signal: %v", err)
			}
			tc.check(t)
		})
	}
}
