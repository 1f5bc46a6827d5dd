// Command cluster benchmarks skiff's gossip layer (package cluster) on
// loopback, with real serf members in one process:
//
//   - failure detection: seconds from killing a member (Shutdown without
//     Leave) to the failed event on the survivors, -kills times for each
//     profile (lan = serf/memberlist defaults, edge = skiff's tuning), in one
//     run;
//   - false positives: members of the edge profile while every core is busy
//     with spinning goroutines: how many suspicions and failures arise;
//   - the RSS of an idle process with one member, beside the same binary with
//     no member, each in a child process of its own.
//
// Run: go run ./bench/cluster [-members 4] [-kills 5] [-load 20s]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skiff-edge/skiff/cluster"
)

func main() {
	members := flag.Int("members", 4, "members in the cluster, the victim included")
	profiles := flag.String("profiles", "lan,edge", "profiles to kill members in, in order")
	kills := flag.Int("kills", 5, "kills per profile")
	load := flag.Duration("load", 20*time.Second, "how long the CPU is loaded in the false-positive check (0: skip)")
	rssRuns := flag.Int("rss-runs", 3, "child processes per RSS figure (0: skip)")
	idle := flag.Duration("idle", 5*time.Second, "idle time before an RSS reading")
	burn := flag.String("burn", "both", "CPU load of the false-positive check: goroutines (in the members' own process), processes (other processes, as pods would be) or both")
	flag.DurationVar(&probeInterval, "probe-interval", 0, "edge profile override (0: the profile's)")
	flag.IntVar(&suspicionMult, "suspicion-mult", 0, "edge profile override (0: the profile's)")
	child := flag.String("child", "", "internal: none|member measure this process's RSS; burn spins")
	flag.Parse()

	if *child == "burn" {
		for x := 0; ; x++ {
		}
	}
	if *child != "" {
		rssChild(*child, *idle)
		return
	}
	fmt.Printf("cluster bench: %d members on loopback, %d kills per profile, GOMAXPROCS %d, %s\n",
		*members, *kills, runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	for _, name := range strings.Split(*profiles, ",") {
		p := cluster.Profile(name)
		if *kills == 0 {
			break
		}
		if err := detection(p, *members, *kills); err != nil {
			fmt.Fprintln(os.Stderr, "detection:", err)
			os.Exit(1)
		}
	}
	if *load > 0 {
		modes := []string{*burn}
		if *burn == "both" {
			modes = []string{"processes", "goroutines"}
		}
		for _, mode := range modes {
			if err := falsePositives(*members, *load, mode); err != nil {
				fmt.Fprintln(os.Stderr, "false positives:", err)
				os.Exit(1)
			}
		}
	}
	if *rssRuns > 0 {
		if err := rss(*rssRuns, *idle); err != nil {
			fmt.Fprintln(os.Stderr, "rss:", err)
			os.Exit(1)
		}
	}
}

// counter is a slog handler that counts memberlist's suspicions and serf's
// failures (for the false-positive check) and drops everything else.
type counter struct {
	suspects, failures *atomic.Int64
}

func (c counter) Enabled(context.Context, slog.Level) bool { return true }
func (c counter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c counter) WithGroup(string) slog.Handler            { return c }
func (c counter) Handle(_ context.Context, r slog.Record) error {
	switch {
	case strings.HasPrefix(r.Message, "memberlist: Suspect "):
		c.suspects.Add(1)
	case strings.HasPrefix(r.Message, "serf: EventMemberFailed"):
		c.failures.Add(1)
	}
	return nil
}

var (
	suspects, failures atomic.Int64
	// probeInterval and suspicionMult override the edge profile (flags).
	probeInterval time.Duration
	suspicionMult int
)

// sink keeps the spinning loops from being optimised away.
var sink atomic.Int64

func start(name string, p cluster.Profile, key []byte) (*cluster.Member, error) {
	cfg := cluster.DefaultConfig()
	cfg.NodeName = fmt.Sprintf("%s-%d", name, rand.IntN(1e6))
	cfg.BindAddr = net.JoinHostPort(fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(250), rand.IntN(250), 1+rand.IntN(250)), "0")
	cfg.Profile = p
	if p == cluster.ProfileEdge {
		cfg.ProbeInterval, cfg.SuspicionMult = probeInterval, suspicionMult
	}
	cfg.EncryptKey = key
	cfg.Logger = slog.New(counter{&suspects, &failures})
	return cluster.Start(cfg)
}

// waitAlive waits until every member sees want alive members.
func waitAlive(ms []*cluster.Member, names []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, m := range ms {
		for {
			alive := map[string]bool{}
			for _, mi := range m.Members() {
				if mi.Status == cluster.StatusAlive {
					alive[mi.Name] = true
				}
			}
			ok := true
			for _, n := range names {
				ok = ok && alive[n]
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not see %v alive", m.Name(), names)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// drain empties a member's event channel.
func drain(m *cluster.Member) {
	for {
		select {
		case <-m.Events():
		default:
			return
		}
	}
}

// detection kills a fresh victim `kills` times in a cluster of `members` and
// prints the time to the first and to the last survivor's failed event.
func detection(p cluster.Profile, members, kills int) error {
	key := cluster.NewKey()
	var survivors []*cluster.Member
	defer func() {
		for _, m := range survivors {
			_ = m.Shutdown()
		}
	}()
	for i := range members - 1 {
		m, err := start("survivor", p, key)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := m.Join([]string{survivors[0].Addr()}); err != nil {
				return err
			}
		}
		survivors = append(survivors, m)
	}
	var first, last []float64
	for k := range kills {
		victim, err := start("victim", p, key)
		if err != nil {
			return err
		}
		if _, err := victim.Join([]string{survivors[0].Addr()}); err != nil {
			return err
		}
		names := []string{victim.Name()}
		for _, s := range survivors {
			names = append(names, s.Name())
		}
		if err := waitAlive(append(survivors, victim), names, 30*time.Second); err != nil {
			return err
		}
		// Let the cluster settle (push/pull, gossip of the join) before the kill.
		time.Sleep(2 * time.Second)
		for _, s := range survivors {
			drain(s)
		}
		var wg sync.WaitGroup
		got := make([]time.Duration, len(survivors))
		t0 := time.Now()
		for i, s := range survivors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				timeout := time.After(60 * time.Second)
				for {
					select {
					case ev := <-s.Events():
						if ev.Type == cluster.EventFailed && ev.Member.Name == victim.Name() {
							got[i] = time.Since(t0)
							return
						}
					case <-timeout:
						got[i] = -1
						return
					}
				}
			}()
		}
		_ = victim.Shutdown()
		wg.Wait()
		if slices.Contains(got, -1) {
			return fmt.Errorf("%s kill %d: a survivor saw no failure within 60s: %v", p, k+1, got)
		}
		slices.Sort(got)
		first = append(first, got[0].Seconds())
		last = append(last, got[len(got)-1].Seconds())
		fmt.Printf("  %-4s kill %d: first survivor %.2fs, last %.2fs\n", p, k+1, got[0].Seconds(), got[len(got)-1].Seconds())
	}
	fmt.Printf("%-4s kill→failed, first survivor: %s\n", p, stats(first))
	fmt.Printf("%-4s kill→failed, last survivor:  %s\n", p, stats(last))
	return nil
}

func stats(xs []float64) string {
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("median %.2fs (min %.2fs, max %.2fs, n=%d)", med, s[0], s[len(s)-1], len(s))
}

// falsePositives runs an edge cluster while every core is kept busy, by
// goroutines in the members' own process (the worst case: the members wait
// for Go's scheduler) or by other processes (as pods would load a node).
func falsePositives(members int, d time.Duration, mode string) error {
	key := cluster.NewKey()
	var ms []*cluster.Member
	defer func() {
		for _, m := range ms {
			_ = m.Shutdown()
		}
	}()
	var names []string
	for i := range members {
		m, err := start("loaded", cluster.ProfileEdge, key)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := m.Join([]string{ms[0].Addr()}); err != nil {
				return err
			}
		}
		ms = append(ms, m)
		names = append(names, m.Name())
	}
	if err := waitAlive(ms, names, 30*time.Second); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	suspects.Store(0)
	failures.Store(0)
	burners := 4 * runtime.NumCPU()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	switch mode {
	case "goroutines":
		for range burners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x := 0
				for {
					select {
					case <-stop:
						sink.Add(int64(x))
						return
					default:
					}
					for i := range 100000 {
						x += i & 1
					}
				}
			}()
		}
	case "processes":
		self, err := os.Executable()
		if err != nil {
			return err
		}
		for range burners {
			cmd := exec.Command(self, "-child", "burn")
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-stop
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}()
		}
	default:
		return fmt.Errorf("unknown load %q", mode)
	}
	// Also count what Members() shows, sampled, as a second witness.
	notAlive := 0
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, m := range ms {
			for _, mi := range m.Members() {
				if mi.Status != cluster.StatusAlive {
					notAlive++
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	fmt.Printf("edge under CPU load: %d members, %d spinning %s on %d cores for %s: %d suspicions, %d failed events, %d non-alive samples of Members() (every 100ms)\n",
		members, burners, mode, runtime.NumCPU(), d, suspects.Load(), failures.Load(), notAlive)
	return nil
}

// rss starts child processes of this binary and prints their RSS.
func rss(runs int, idle time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, mode := range []string{"none", "member"} {
		var kb []float64
		for range runs {
			out, err := exec.Command(self, "-child", mode, "-idle", idle.String()).Output()
			if err != nil {
				return fmt.Errorf("child %s: %w", mode, err)
			}
			v, err := strconv.ParseFloat(string(bytes.TrimSpace(out)), 64)
			if err != nil {
				return fmt.Errorf("child %s printed %q", mode, out)
			}
			kb = append(kb, v/1024)
		}
		slices.Sort(kb)
		fmt.Printf("idle RSS, %-6s: median %.1f MB (min %.1f, max %.1f, n=%d) after %s idle\n",
			mode, kb[len(kb)/2], kb[0], kb[len(kb)-1], len(kb), idle)
	}
	return nil
}

// rssChild prints VmRSS in kB after idling, with or without one member.
func rssChild(mode string, idle time.Duration) {
	if mode == "member" {
		m, err := start("idle", cluster.ProfileEdge, cluster.NewKey())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer func() { _ = m.Shutdown() }()
	}
	time.Sleep(idle)
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fmt.Println(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return
		}
	}
	os.Exit(1)
}
