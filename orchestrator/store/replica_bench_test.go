package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// BenchmarkReplicaUpdate compares, in one run, a one-object Update of the
// plain store (Open, fsync: today's single server) with the same Update
// through raft: one voter with the store file written without fsync (what
// OpenReplica does), one voter with the store file fsynced too (the
// alternative), and three voters in this process over loopback TCP. It
// reports p50/p90/p99 latency and the bytes this process sent to the disk
// per write (/proc/self/io write_bytes; with three voters, the three
// servers' together, and per server as disk-B/write/server).
//
//	go test -tags seccomp -run NONE -bench ReplicaUpdate -benchtime 400x -count 5 ./orchestrator/store
func BenchmarkReplicaUpdate(b *testing.B) {
	cases := []struct {
		name    string
		servers int // 0: plain store
		syncFSM bool
	}{
		{"plain", 0, false},
		{"raft1", 1, false},
		{"raft1-syncfsm", 1, true},
		{"raft3", 3, false},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var s *Store
			if tc.servers == 0 {
				var err error
				if s, err = Open(filepath.Join(b.TempDir(), "state.db"), Options{}); err != nil {
					b.Fatal(err)
				}
				defer s.Close()
			} else {
				servers := newCluster(b, tc.servers, func(o *Options, rc *ReplicaConfig) {
					o.NoSync = false
					rc.syncFSM = tc.syncFSM
				})
				s = leaderOf(b, servers...).s
				// Let the followers catch up with the configuration.
				if _, err := putNode(s, "warm-up"); err != nil {
					b.Fatal(err)
				}
				waitRev(b, s.Rev(), servers...)
			}
			pod := &api.Pod{Spec: api.PodSpec{App: "web", Node: "n1"}}
			lat := make([]time.Duration, 0, b.N)
			io0 := writeBytes(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pod.Name = fmt.Sprintf("web-%d", i%1000)
				pod.Revision = 0
				start := time.Now()
				if _, err := s.Update(func(tx *Tx) error { return tx.Put(api.KindPod, pod) }); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			written := float64(writeBytes(b)-io0) / float64(b.N)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "p90-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(written, "disk-B/write")
			if tc.servers > 1 {
				b.ReportMetric(written/float64(tc.servers), "disk-B/write/server")
			}
		})
	}
}

// writeBytes is this process's write_bytes from /proc/self/io: bytes it
// caused to be written to the disk (counted when pages are dirtied).
func writeBytes(b *testing.B) int64 {
	f, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(f))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("write_bytes: ")); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no write_bytes in /proc/self/io")
	return 0
}

// BenchmarkReplicaFailover measures, with the default (edge) timings, the
// time from the leader of three in-process servers going away (Close: no
// hand-over, as after a kill) to the first write accepted by the new
// leader. Each iteration builds a new cluster; run it with -benchtime Nx.
//
//	go test -tags seccomp -run NONE -bench ReplicaFailover -benchtime 10x ./orchestrator/store
func BenchmarkReplicaFailover(b *testing.B) {
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		servers := newCluster(b, 3, nil)
		leader := leaderOf(b, servers...)
		if _, err := putNode(leader.s, "before"); err != nil {
			b.Fatal(err)
		}
		waitRev(b, leader.s.Rev(), servers...)
		var rest []*replicaServer
		for _, rs := range servers {
			if rs != leader {
				rest = append(rest, rs)
			}
		}
		b.StartTimer()
		start := time.Now()
		leader.s.Close()
	write:
		for {
			for _, rs := range rest {
				if _, err := putNode(rs.s, "after"); err == nil {
					break write
				}
			}
			time.Sleep(5 * time.Millisecond) // retry interval of a client
		}
		took = append(took, time.Since(start))
		b.StopTimer()
		for _, rs := range rest {
			rs.s.Close()
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
	b.ReportMetric(float64(took[0].Milliseconds()), "min-ms")
}
