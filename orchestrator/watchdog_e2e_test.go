package orchestrator_test

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestServerWatchdog runs `skiff server` as systemd would with
// WatchdogSec=: it says READY=1 and then feeds the watchdog (its
// controllers turn, its API and store answer).
func TestServerWatchdog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "400000")
	startServer(t, serverOpts{})
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	buf := make([]byte, 4096)
	for !(slices.Contains(got, "READY=1") && slices.Contains(got, "WATCHDOG=1")) {
		if time.Now().After(deadline) {
			t.Fatalf("in 30s the server sent %q; want READY=1 and WATCHDOG=1", got)
		}
		sock.SetReadDeadline(time.Now().Add(time.Second))
		n, err := sock.Read(buf)
		if err != nil && !os.IsTimeout(err) {
			t.Fatal(err)
		}
		if n > 0 {
			got = append(got, string(buf[:n]))
		}
	}
}
