package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
)

// Idle budgets of issue 14, for one `skiff server --agent` (the skiff
// process and its shims together) with 30 pods probed every second.
const (
	budgetWriteBytesPerSec = 1024
)

// TestIdleBudget is a BUDGET TEST: it fails when an idle node writes more
// to disk than the budget above. A real `skiff server
// --agent` (own data and run dirs, bridge, cgroup parent) runs 30 pods of
// the demo image, each with a readiness probe every second; once they are
// ready and the node settled, the write_bytes (/proc/PID/io: bytes sent to
// the block layer) and utime+stime of the skiff process and every shim
// are read at the start and the end of a 60 s window. CPU time, not a
// wall-clock ratio, so that other work on the machine does not count; it
// still inflates it a little (caches), so the figures are logged.
// Set SKIFF_IDLE_WINDOW (a Go duration) to measure longer. Takes about
// 2 minutes; needs root.
func TestIdleBudget(t *testing.T) {
	n := newNode(t)
	n.start()
	window := time.Minute
	if v := os.Getenv("SKIFF_IDLE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SKIFF_IDLE_WINDOW=%q: %v", v, err)
		}
		window = d
	}
	f := n.idle(30, time.Second, window)
	t.Logf("idle, 30 pods probed every 1s, %s window: %s", window, f)
	if f.writesPerSec() > budgetWriteBytesPerSec {
		t.Errorf("idle disk writes %.0f B/s, budget %d B/s (%s)", f.writesPerSec(), budgetWriteBytesPerSec, f)
	}
}

// idleFigures are what a node's skiff processes used over a window.
type idleFigures struct {
	pods       int
	window     time.Duration
	writeBytes int64
	cpuTicks   int64 // utime+stime, in clock ticks (USER_HZ, 100/s)
	pssKB      int64 // PSS of skiff and its shims at the end
	procs      int
}

func (f idleFigures) writesPerSec() float64 { return float64(f.writeBytes) / f.window.Seconds() }
func (f idleFigures) cpu() float64          { return float64(f.cpuTicks) / 100 / f.window.Seconds() }

func (f idleFigures) String() string {
	return fmt.Sprintf("pods %d: CPU %.2f%% of a core, writes %.0f B/s (%d B in %s), PSS %.1f MB over %d processes",
		f.pods, 100*f.cpu(), f.writesPerSec(), f.writeBytes, f.window, float64(f.pssKB)/1024, f.procs)
}

// idle runs an app of count demo pods probed every period, waits until they
// are ready and the node settled, and measures the skiff processes (the
// server and its shims: every process running the test's skiff binary)
// over window.
func (n *node) idle(count int, period, window time.Duration) idleFigures {
	n.t.Helper()
	ctx := context.Background()
	if count > 0 {
		m := demoManifest("idle", count)
		m.Apps["idle"].Containers["http"].Readiness.Period = configs.Duration(period)
		if _, err := n.c.Apply(ctx, m, false); err != nil {
			n.t.Fatal(err)
		}
		n.waitFor(fmt.Sprintf("%d ready pods", count), time.Duration(count)*3*time.Second+60*time.Second, func() (bool, error) {
			return n.waitReadyNow("idle", count), nil
		})
	}
	// Settle: the pods' first statuses, the cache's first write, the
	// load balancer's first sync are start-up, not idle. (A pace, not a
	// condition: nothing signals "idle".)
	time.Sleep(10 * time.Second)
	w0, c0, _, _ := skiffUsage(n.t)
	t0 := time.Now()
	time.Sleep(window)
	w1, c1, pss, procs := skiffUsage(n.t)
	return idleFigures{pods: count, window: time.Since(t0), writeBytes: w1 - w0, cpuTicks: c1 - c0, pssKB: pss, procs: procs}
}

// skiffUsage sums write_bytes, utime+stime and PSS over every process
// running the test's skiff binary: the server and its shims. A process
// that ends within the window takes its counts with it; the test's pods
// run for the whole window.
func skiffUsage(t testing.TB) (writeBytes, ticks, pssKB int64, procs int) {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		exe, err := os.Readlink(filepath.Join(dir, "exe"))
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != skiffBin {
			continue
		}
		procs++
		writeBytes += procField(filepath.Join(dir, "io"), "write_bytes:")
		pssKB += procField(filepath.Join(dir, "smaps_rollup"), "Pss:")
		if b, err := os.ReadFile(filepath.Join(dir, "stat")); err == nil {
			// Fields after the command (which may hold spaces): state is
			// field 3, utime 14, stime 15.
			s := string(b)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				ticks += u + st
			}
		}
	}
	return writeBytes, ticks, pssKB, procs
}

// procField reads the number after key in a /proc file of "key value"
// lines (0 if absent).
func procField(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == key {
			v, _ := strconv.ParseInt(fields[1], 10, 64)
			return v
		}
	}
	return 0
}
