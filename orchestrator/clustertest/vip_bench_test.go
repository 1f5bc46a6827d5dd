package clustertest

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkVIPFailover measures, on a 3-node cluster with the demo app on
// every node behind a load-balancer service, the seconds from the holder
// of the service's address being cut off (link down, then SIGKILL of its
// skiff) to the first answer through the address to a LAN client netns
// on the test bridge that loops on it (a new connection each time, 250 ms
// timeout). The lan gossip profile (serf/memberlist defaults) runs in the
// same process as the baseline of the edge one. Between rounds the victim
// is healed and restarted and the cluster settles. Rounds:
// $SKIFF_VIP_ROUNDS (default 5). bench/vip.sh runs it.
func BenchmarkVIPFailover(b *testing.B) {
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("SKIFF_VIP_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for _, profile := range []string{"lan", "edge"} {
		b.Run(profile, func(b *testing.B) {
			c := New(b, Options{Nodes: 3, GossipProfile: profile, ServerTables: vipPools})
			lan := c.lanClient(b)
			c.Apply(vipManifest())
			c.WaitAppReady("web", 3, appTimeout)
			addr, _ := c.serviceAddr("shop", 30*time.Second)
			var secs []float64
			var victims string
			for r := range rounds {
				victim, next, s := c.vipFailover(b, lan, addr, 80)
				b.Logf("%s round %d: %s cut and killed, first answer through %s after %.2fs from %s",
					profile, r+1, c.Nodes[victim].Name, addr, s, c.Nodes[next].Name)
				secs = append(secs, s)
				victims += fmt.Sprintf(" n%d", victim)
				c.Heal(victim)
				c.Start(victim)
				c.waitStatusHolder("shop", addr)
			}
			b.ReportMetric(median(secs), "s-median")
			b.ReportMetric(slices.Min(secs), "s-min")
			b.ReportMetric(slices.Max(secs), "s-max")
			b.Logf("%s (%d rounds, victims%s): cut → first answer through the VIP median %.2fs [%.2f–%.2f]",
				profile, rounds, victims, median(secs), slices.Min(secs), slices.Max(secs))
		})
	}
}
