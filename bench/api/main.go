// Command api measures skiff's API on the unix socket against a real
// `skiff server` process: applies per second of a one-app file (unchanged,
// which validates and reads, and changed, which writes and fsyncs), gets
// per second of one app, and /healthz per second as the transport baseline;
// then the server's RSS when idle and with 1,000 pods in the store.
//
//	go build -tags seccomp -o /tmp/skiff ./cmd/skiff && go run ./bench/api -skiff /tmp/skiff
//
// Each figure is the median of -rounds runs of -duration, with min and max.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	skiff := flag.String("skiff", "", "path of the skiff binary (required)")
	rounds := flag.Int("rounds", 5, "runs per figure")
	dur := flag.Duration("duration", 2*time.Second, "length of one run")
	conc := flag.String("concurrency", "1,8", "client concurrencies to measure")
	flag.Parse()
	if *skiff == "" {
		fmt.Fprintln(os.Stderr, "usage: api -skiff PATH [-rounds N] [-duration D]")
		os.Exit(2)
	}
	if err := run(*skiff, *rounds, *dur, *conc); err != nil {
		fmt.Fprintln(os.Stderr, "api bench:", err)
		os.Exit(1)
	}
}

const appFile = `{"apps":{"bench":{"replicas":%d,"containers":{"c":{"image":"registry.local:5000/echo:1","ports":{"http":8080},"memory":"64Mi","cpu":0.1}}}}}`

func run(skiff string, rounds int, dur time.Duration, concList string) error {
	dir, err := os.MkdirTemp("", "skiff-bench-api-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("node_name = \"bench\"\nadvertise_addr = \"127.0.0.1\"\n"), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(skiff, "server", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--run-dir", filepath.Join(dir, "run"), "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sock := filepath.Join(dir, "run", "skiff.sock")
	c := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	if err := waitUp(c); err != nil {
		return err
	}
	idle, err := rssSamples(cmd.Process.Pid, c)
	if err != nil {
		return err
	}

	if code, body := call(c, "POST", "/v1/apply", fmt.Sprintf(appFile, 0)); code != 200 {
		return fmt.Errorf("apply: %d %s", code, body)
	}
	var flip atomic.Int64
	ops := []struct {
		name string
		fn   func() (int, string)
	}{
		{"GET /healthz (baseline)", func() (int, string) { return call(c, "GET", "/healthz", "") }},
		{"GET /v1/apps/bench", func() (int, string) { return call(c, "GET", "/v1/apps/bench", "") }},
		{"apply 1-app file, unchanged", func() (int, string) { return call(c, "POST", "/v1/apply", fmt.Sprintf(appFile, 0)) }},
		// A node selector that flips between two values changes the spec
		// (a real write) while replicas 0 keeps the controller from making
		// pods.
		{"apply 1-app file, changed (write+fsync)", func() (int, string) {
			n := flip.Add(1)
			body := strings.Replace(fmt.Sprintf(appFile, 0), `"replicas":0`, fmt.Sprintf(`"replicas":0,"node_selector":{"v":"%d"}`, n%2), 1)
			return call(c, "POST", "/v1/apply", body)
		}},
	}
	fmt.Printf("skiff API on the unix socket: %d runs of %v each; median [min-max] requests/s\n", rounds, dur)
	for _, cs := range strings.Split(concList, ",") {
		conc, err := strconv.Atoi(cs)
		if err != nil {
			return err
		}
		for _, op := range ops {
			var rates []float64
			for r := 0; r < rounds; r++ {
				rate, err := measure(op.fn, conc, dur)
				if err != nil {
					return fmt.Errorf("%s: %w", op.name, err)
				}
				rates = append(rates, rate)
			}
			slices.Sort(rates)
			fmt.Printf("  c=%-2d %-42s %8.0f [%.0f-%.0f]\n", conc, op.name, rates[len(rates)/2], rates[0], rates[len(rates)-1])
		}
	}

	// 1,000 pods: the app controller makes them (no node: they stay
	// unbound).
	if code, body := call(c, "POST", "/v1/apply", fmt.Sprintf(appFile, 1000)); code != 200 {
		return fmt.Errorf("apply 1000: %d %s", code, body)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, body := call(c, "GET", "/v1/pods?app=bench", "")
		var l struct{ Items []json.RawMessage }
		if code == 200 && json.Unmarshal([]byte(body), &l) == nil && len(l.Items) == 1000 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("1000 pods not made within 2m")
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
	full, err := rssSamples(cmd.Process.Pid, c)
	if err != nil {
		return err
	}
	fmt.Printf("RSS of skiff server, median [min-max] of 5 samples 1s apart:\n  idle %s\n  with 1,000 pods stored %s\n", idle, full)
	return nil
}

func waitUp(c *http.Client) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := call(c, "GET", "/healthz", ""); code == 200 {
			return nil
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	return fmt.Errorf("server did not come up")
}

func call(c *http.Client, method, path, body string) (int, string) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://skiff"+path, r)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// measure runs fn from conc goroutines for d and returns calls per second.
func measure(fn func() (int, string), conc int, d time.Duration) (float64, error) {
	var n atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if code, body := fn(); code != 200 {
					firstErr.CompareAndSwap(nil, fmt.Errorf("status %d: %s", code, body))
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// procStatus reads the memory sizes (in bytes) of /proc/PID/status.
func procStatus(pid int) (map[string]int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				out[strings.TrimSuffix(f[0], ":")] = kb * 1024
			}
		}
	}
	if out["VmRSS"] == 0 {
		return nil, fmt.Errorf("no VmRSS for pid %d", pid)
	}
	return out, nil
}

// rssSamples samples a process's RSS five times, a second apart (the
// garbage collector's timing moves it), and formats the median [min-max] in
// MB, then the anonymous and file-backed parts (bbolt's mmap of the store is
// file-backed) and the Go heap in use at the last sample.
func rssSamples(pid int, c *http.Client) (string, error) {
	var mb []float64
	var last map[string]int64
	for i := 0; i < 5; i++ {
		time.Sleep(time.Second) // sampling interval
		st, err := procStatus(pid)
		if err != nil {
			return "", err
		}
		mb = append(mb, float64(st["VmRSS"])/1e6)
		last = st
	}
	slices.Sort(mb)
	heap := "?"
	if code, body := call(c, "GET", "/metrics", ""); code == 200 {
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
				if n, err := strconv.ParseFloat(v, 64); err == nil {
					heap = fmt.Sprintf("%.1f MB", n/1e6)
				}
			}
		}
	}
	return fmt.Sprintf("%.1f MB [%.1f-%.1f] (anon %.1f MB, file %.1f MB; Go heap in use %s)",
		mb[2], mb[0], mb[4], float64(last["RssAnon"])/1e6, float64(last["RssFile"])/1e6, heap), nil
}
