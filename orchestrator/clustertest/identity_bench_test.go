package clustertest

import (
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
)

// BenchmarkAgentJoin reports how long a fresh agent (no certificate, no
// cache, no gossip keyring) takes to join: from the start of its process
// to its node Ready in the server's view (polled every 50 ms). That covers
// the CA check, its key and certificate request, the certificate issue,
// the gossip join and the node's first registration. Between rounds the
// agent is stopped, `skiff delete node` frees its name and its data
// directory is removed. The baseline, in the same run: the same agent
// restarted with the certificate it has (no join, no issue) after each
// round. Rounds: $SKIFF_JOIN_ROUNDS (default 7).
//
//	go test -run '^$' -bench AgentJoin -benchtime 1x ./orchestrator/clustertest/
func BenchmarkAgentJoin(b *testing.B) {
	rounds := 7
	if v, err := strconv.Atoi(os.Getenv("SKIFF_JOIN_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	c := New(b, Options{Nodes: 2, NoStart: true})
	c.Start(0)
	var secs, restart []float64
	var serials []string
	for r := range rounds {
		if r > 0 {
			c.Stop(1, 10*time.Second)
			if out, err := c.CLI(0, "delete", "node", c.Nodes[1].Name); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			if err := os.RemoveAll(c.Nodes[1].DataDir); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		c.Start(1)
		s := time.Since(start).Seconds()
		id, err := c.nodeCert(1)
		if err != nil || slices.Contains(serials, pki.SerialHex(id.Leaf)) {
			b.Fatalf("round %d: no fresh certificate (%v)", r+1, err)
		}
		serials = append(serials, pki.SerialHex(id.Leaf))
		b.Logf("round %d: agent process start to node Ready %.3fs (certificate %s)", r+1, s, serials[r][:8])
		secs = append(secs, s)

		c.Stop(1, 10*time.Second)
		start = time.Now()
		c.Start(1)
		restart = append(restart, time.Since(start).Seconds())
		if id, err := c.nodeCert(1); err != nil || pki.SerialHex(id.Leaf) != serials[r] {
			b.Fatalf("round %d: the restart did not keep its certificate (%v)", r+1, err)
		}
	}
	b.ReportMetric(median(secs), "s-join-median")
	b.ReportMetric(slices.Min(secs), "s-join-min")
	b.ReportMetric(slices.Max(secs), "s-join-max")
	b.ReportMetric(median(restart), "s-restart-median")
	b.Logf("fresh agent start to Ready (%d rounds): median %.3fs [%.3f–%.3f]; restart with its certificate: median %.3fs [%.3f–%.3f]",
		rounds, median(secs), slices.Min(secs), slices.Max(secs), median(restart), slices.Min(restart), slices.Max(restart))
}
