package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// notifySocket listens where sd_notify sends (NOTIFY_SOCKET) for the test.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// pending returns the datagrams already queued on c, without waiting
// (a read deadline in the past would not even look: MSG_DONTWAIT does).
func pending(t *testing.T, c *net.UnixConn) []string {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 4096)
	for {
		var n int
		var rerr error
		if err := raw.Control(func(fd uintptr) {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
		}); err != nil {
			t.Fatal(err)
		}
		if errors.Is(rerr, syscall.EAGAIN) {
			return got
		}
		if rerr != nil {
			t.Fatal(rerr)
		}
		got = append(got, string(buf[:n]))
	}
}

// TestWatchdogFeedsOnlyWhileAlive runs the watchdog against a fake
// NOTIFY_SOCKET: WATCHDOG=1 while the loop ticks and the check answers;
// nothing in a round where the loop is silent or the check hangs; again
// once both are back. Each round's datagram is sent before its verdict
// reaches the test, so "nothing was sent" is read, not waited for.
func TestWatchdogFeedsOnlyWhileAlive(t *testing.T) {
	sock := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "100000") // rounds every 50ms
	t.Setenv("WATCHDOG_PID", "")

	l := newLiveness()
	beat := l.Beat("loop", 250*time.Millisecond)
	var ticking atomic.Bool
	ticking.Store(true)
	hang := make(chan struct{})
	var hanging atomic.Bool
	l.Check("part", within(func() error {
		if hanging.Load() {
			<-hang
		}
		return nil
	}))
	wd, err := watchdogFromEnv(l, slog.New(slog.DiscardHandler))
	if err != nil || wd == nil {
		t.Fatalf("watchdogFromEnv: %v, %v", wd, err)
	}
	rounds := make(chan []string)
	wd.rounds = rounds
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { wd.run(ctx); close(done) }()
	go func() {
		for ctx.Err() == nil {
			if ticking.Load() {
				beat.Tick()
			}
			time.Sleep(10 * time.Millisecond) // the loop's own pace, not an assertion
		}
	}()
	t.Cleanup(func() {
		cancel()
		if hanging.Load() {
			close(hang)
		}
		<-done
	})

	// until waits for a round whose verdict passes want and checks what
	// every round sent on the way: WATCHDOG=1 exactly when alive.
	until := func(what string, want func([]string) bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case why := <-rounds:
				sent := pending(t, sock)
				alive := len(why) == 0
				if alive && !slices.Equal(sent, []string{"WATCHDOG=1"}) {
					t.Fatalf("alive round sent %q, want WATCHDOG=1", sent)
				}
				if !alive && len(sent) > 0 {
					t.Fatalf("round not alive (%q) sent %q", why, sent)
				}
				if want(why) {
					return
				}
			case <-deadline:
				t.Fatalf("no round %s within 30s", what)
			}
		}
	}
	has := func(s string) func([]string) bool {
		return func(why []string) bool { return strings.Contains(strings.Join(why, ";"), s) }
	}
	alive := func(why []string) bool { return len(why) == 0 }

	until("alive", alive)
	ticking.Store(false)
	until("with the loop silent", has("loop silent"))
	ticking.Store(true)
	until("alive again", alive)
	hanging.Store(true)
	until("with the check hanging", has("part: no answer"))
	hanging.Store(false)
	close(hang)
	until("alive after the check answered", alive)
}
