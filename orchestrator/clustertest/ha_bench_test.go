package clustertest

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkHA measures, in one run, on real servers in network namespaces
// driven through their unix sockets (the API, its validation, the store,
// raft and the network between the namespaces; no TLS on the clients'
// side):
//
//   - writes: write latency p50/p99 and writes/s of PUT /v1/configs, one
//     client in sequence and 8 clients at once, and the disk bytes written
//     per acknowledged write (the sum of /proc/PID/io write_bytes of every
//     server), for local (`skiff server` without --listen-tcp: the plain
//     store, today's default), single (`--listen-tcp`, one server) and
//     three (3 servers, writes sent to the leader);
//   - failover (three): kill -9 of the leader → the first write a survivor
//     acknowledges, over $SKIFF_HA_ROUNDS rounds (default 5);
//   - rss: VmRSS of each server with 1,000 pods in the store (an app of
//     1,000 replicas and no node: the pods stay unbound), median of 5
//     samples.
//
// $SKIFF_HA_WRITES is the writes per client (default 300 sequential, a
// sixth of that per concurrent client). Run by bench/ha.sh.
func BenchmarkHA(b *testing.B) {
	writes := 300
	if v, err := strconv.Atoi(os.Getenv("SKIFF_HA_WRITES")); err == nil && v > 0 {
		writes = v
	}
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("SKIFF_HA_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for _, mode := range []string{"local", "single", "three"} {
		b.Run(mode, func(b *testing.B) {
			var h *HA
			switch mode {
			case "local":
				h = NewHA(b, HAOptions{Servers: 1, NoStart: true, LogLevel: "warn"})
				h.StartProcess(0, "server", "--config", h.Nodes[0].Config, "--log-level", "warn")
				h.WaitFor("the local server", 30*time.Second, func() (bool, error) {
					p := h.ProbeServer(0)
					return p.Status == http.StatusNotFound, p.Err
				})
			case "single":
				h = NewHA(b, HAOptions{Servers: 1, LogLevel: "warn"})
			default:
				h = NewHA(b, HAOptions{Servers: 3, LogLevel: "warn"})
			}
			l := h.WaitLeader(60 * time.Second)
			haWriteBench(b, h, l, mode, writes)
			if mode == "three" {
				haFailoverBench(b, h, rounds)
			}
			haRSSBench(b, h, mode)
		})
	}
}

func writeBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no write_bytes in /proc/%d/io", pid)
}

// serverWriteBytes sums write_bytes over the running servers.
func (h *HA) serverWriteBytes(b testing.TB) int64 {
	var sum int64
	for _, i := range h.ServerNodes() {
		if pid := h.Nodes[i].PID(); pid > 0 {
			n, err := writeBytes(pid)
			if err != nil {
				b.Fatal(err)
			}
			sum += n
		}
	}
	return sum
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func haWriteBench(b *testing.B, h *HA, l int, mode string, writes int) {
	servers := 0
	for _, i := range h.ServerNodes() {
		if h.Nodes[i].Running() {
			servers++
		}
	}
	put := func(name string, v int) error {
		r := h.Raw(l, http.MethodPut, "/v1/configs/"+name, configBody(name, strconv.Itoa(v), 0), 10*time.Second)
		if r.Err != nil || r.Status/100 != 2 {
			return fmt.Errorf("write %s: %s %s", name, refusal(r), r.Msg)
		}
		return nil
	}
	// Warm up (connections, first pages of the files).
	for i := range 20 {
		if err := put("bench-0", i); err != nil {
			b.Fatal(err)
		}
	}
	wb0 := h.serverWriteBytes(b)
	lat := make([]time.Duration, 0, writes)
	t0 := time.Now()
	for i := range writes {
		s := time.Now()
		if err := put(fmt.Sprintf("bench-%d", i%50), i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(s))
	}
	seq := time.Since(t0)
	// Let the kernel's write-back of what these writes dirtied be counted
	// as the page cache writes it: write_bytes counts a page when it is
	// first dirtied, so no wait is needed.
	perWrite := float64(h.serverWriteBytes(b)-wb0) / float64(writes)
	// 8 clients at once.
	const clients = 8
	per := max(writes/6, 10)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	t1 := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := put(fmt.Sprintf("bench-c%d", c), i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	conc := time.Since(t1)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
	b.ReportMetric(float64(p50.Microseconds()), "us-p50")
	b.ReportMetric(float64(p99.Microseconds()), "us-p99")
	b.ReportMetric(float64(writes)/seq.Seconds(), "writes/s-seq")
	b.ReportMetric(float64(clients*per)/conc.Seconds(), "writes/s-8clients")
	b.ReportMetric(perWrite, "diskB/write")
	b.Logf("HA %s (%d servers): %d sequential writes: p50 %s p99 %s, %.0f writes/s; 8 clients: %.0f writes/s; disk %.0f B per acknowledged write (all servers)",
		mode, servers, writes, p50, p99, float64(writes)/seq.Seconds(), float64(clients*per)/conc.Seconds(), perWrite)
}

func haFailoverBench(b *testing.B, h *HA, rounds int) {
	var secs []float64
	for r := range rounds {
		old := h.WaitLeader(60 * time.Second)
		survivors := others(h, old)[:2]
		start := time.Now()
		h.KillServer(old)
		srv := survivors[0]
		var took time.Duration
		for k := 0; ; k++ {
			name := fmt.Sprintf("fo-%d", r)
			res := h.Raw(srv, http.MethodPut, "/v1/configs/"+name, configBody(name, strconv.Itoa(k), 0), time.Second)
			if res.Err == nil && res.Status/100 == 2 {
				took = time.Since(start)
				break
			}
			if l := h.NodeOfAPIAddr(res.Header.Get("Skiff-Leader")); res.Code == "not_leader" && l >= 0 && l != old {
				srv = l
			} else {
				srv = survivors[k%2]
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("round %d: no write accepted within a minute of the kill (last: %s %s)", r+1, refusal(res), res.Msg)
			}
			time.Sleep(10 * time.Millisecond) // the probe interval, the figure's resolution
		}
		secs = append(secs, took.Seconds())
		b.Logf("failover round %d: kill -9 of leader %d → write accepted after %.3fs", r+1, old, took.Seconds())
		h.RestartServer(old)
		for _, s := range h.ServerNodes() {
			h.WaitKnowsLeader(s, 60*time.Second)
		}
	}
	b.ReportMetric(median(secs), "s-failover-median")
	b.ReportMetric(slices.Min(secs), "s-failover-min")
	b.ReportMetric(slices.Max(secs), "s-failover-max")
	b.Logf("HA failover (%d rounds): kill -9 → write accepted median %.3fs [%.3f–%.3f]", rounds, median(secs), slices.Min(secs), slices.Max(secs))
}

func haRSSBench(b *testing.B, h *HA, mode string) {
	l := h.WaitLeader(60 * time.Second)
	h.ApplyOn(l, `[app.rss]
replicas = 1000
[app.rss.container.c]
image = "localhost/none:1"
cpu = 0.001
memory = "4Mi"
`)
	for _, i := range h.ServerNodes() {
		if !h.Nodes[i].Running() {
			continue
		}
		h.WaitFor(fmt.Sprintf("1,000 pods in server %d's store", i), 3*time.Minute, func() (bool, error) {
			r := h.Raw(i, http.MethodGet, "/v1/pods?app=rss", nil, 10*time.Second)
			if r.Err != nil {
				return false, r.Err
			}
			return strings.Count(string(r.Body), `"app":"rss"`) >= 1000, fmt.Errorf("%d pods", strings.Count(string(r.Body), `"app":"rss"`))
		})
	}
	for _, i := range h.ServerNodes() {
		pid := h.Nodes[i].PID()
		if pid == 0 {
			continue
		}
		var kb []float64
		for range 5 {
			v, err := rssKB(pid)
			if err != nil {
				b.Fatal(err)
			}
			kb = append(kb, float64(v))
			time.Sleep(time.Second) // samples 1 s apart
		}
		role := "follower"
		if i == l {
			role = "leader"
		}
		b.Logf("HA %s: RSS of server %d (%s) with 1,000 pods stored: median %.1f MB [%.1f–%.1f]", mode, i, role, median(kb)/1024, slices.Min(kb)/1024, slices.Max(kb)/1024)
		b.ReportMetric(median(kb)/1024, fmt.Sprintf("MB-rss-%s", role))
	}
}
