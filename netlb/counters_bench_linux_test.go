package netlb

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLoadSample is what one load sample of the agent costs with n
// services of 3 endpoints each: one iptables-save -c of the nat table
// (Counts) and one conntrack dump (ActiveConns). It reports the CPU of the
// process and its children per sample and, at the agent's 2 s interval,
// the share of one core. services=0 is the baseline: the fork and dump
// alone.
func BenchmarkLoadSample(b *testing.B) {
	for _, tc := range []struct {
		n            int
		counts, conn bool
	}{{0, true, true}, {30, true, true}, {30, true, false}, {30, false, true}} {
		n := tc.n
		b.Run(fmt.Sprintf("services=%d/counters=%t/conntrack=%t", n, tc.counts, tc.conn), func(b *testing.B) {
			nd := newNode(b, "10.88.9.0/24")
			nd.setup()
			var svcs []Service
			eps := map[string][]Endpoint{}
			for i := range n {
				name := fmt.Sprintf("svc-%d", i)
				svcs = append(svcs, Service{Name: name, ClusterIP: net.IPv4(10, 96, 9, byte(i+1)), Port: 80})
				for j := range 3 {
					eps[name] = append(eps[name], Endpoint{IP: net.IPv4(10, 88, 9, byte(2+i*3+j)), Port: 8080})
				}
			}
			if err := nd.sync(svcs, eps); err != nil {
				b.Fatal(err)
			}
			cpu := func() time.Duration {
				var self, kids syscall.Rusage
				syscall.Getrusage(syscall.RUSAGE_SELF, &self)
				syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
				d := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
				return d(self.Utime) + d(self.Stime) + d(kids.Utime) + d(kids.Stime)
			}
			b.ResetTimer()
			start := cpu()
			for range b.N {
				nd.must(func() error {
					if tc.counts {
						got, err := nd.net.Counts()
						if err != nil {
							return err
						}
						if len(got) != n {
							return fmt.Errorf("%d services counted, want %d", len(got), n)
						}
					}
					if tc.conn {
						if _, err := ActiveConns(); err != nil {
							return err
						}
					}
					return nil
				})
			}
			per := (cpu() - start) / time.Duration(b.N)
			b.ReportMetric(float64(per.Microseconds()), "cpu-µs/sample")
			b.ReportMetric(100*per.Seconds()/2, "%core@2s")
		})
	}
}
