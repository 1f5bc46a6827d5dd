package clustertest

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkFailover kills an agent node (SIGKILL of its skiff and its link
// cut) several times on a 3-node cluster running 6 replicas, with the lan
// and the edge gossip profile, and reports per profile the median, min and
// max of the seconds from the kill to
//
//   - lb: the dead node's pod IPs gone from both survivors' nat tables;
//   - ready: 6 ready pods again, none on the dead node.
//
// Between rounds the node is healed and restarted and the cluster settles.
// Rounds: $SKIFF_FAILOVER_ROUNDS (default 5); node_grace:
// $SKIFF_FAILOVER_GRACE (default 3s). Run it once per profile:
//
//	go test -run '^$' -bench Failover -benchtime 1x ./orchestrator/clustertest/
func BenchmarkFailover(b *testing.B) {
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("SKIFF_FAILOVER_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	grace := 3 * time.Second
	if v, err := time.ParseDuration(os.Getenv("SKIFF_FAILOVER_GRACE")); err == nil && v > 0 {
		grace = v
	}
	for _, profile := range []string{"lan", "edge"} {
		b.Run(profile, func(b *testing.B) {
			c := New(b, Options{Nodes: 3, GossipProfile: profile, NodeGrace: grace})
			c.Apply(DemoManifest(6))
			c.WaitAppReady("web", 6, appTimeout)
			var lb, ready []float64
			for r := range rounds {
				l, rd := c.failoverRound(b)
				b.Logf("%s round %d: endpoints gone %.2fs, replacements ready %.2fs", profile, r+1, l, rd)
				lb, ready = append(lb, l), append(ready, rd)
			}
			b.ReportMetric(median(lb), "s-lb-median")
			b.ReportMetric(slices.Min(lb), "s-lb-min")
			b.ReportMetric(slices.Max(lb), "s-lb-max")
			b.ReportMetric(median(ready), "s-ready-median")
			b.ReportMetric(slices.Min(ready), "s-ready-min")
			b.ReportMetric(slices.Max(ready), "s-ready-max")
			b.Logf("%s (node_grace %s, %d rounds): kill→lb median %.2fs [%.2f–%.2f]; kill→ready median %.2fs [%.2f–%.2f]",
				profile, grace, rounds, median(lb), slices.Min(lb), slices.Max(lb), median(ready), slices.Min(ready), slices.Max(ready))
		})
	}
}

// failoverRound kills the agent node with the most pods, measures, and
// brings it back; it returns the seconds to lb and to ready.
func (c *Cluster) failoverRound(b *testing.B) (lbSecs, readySecs float64) {
	pods, err := c.ReadyPods("web", "web", 6)
	if err != nil {
		b.Fatal(err)
	}
	on := c.podsOn(pods)
	victim := 1
	if len(on[2]) > len(on[1]) {
		victim = 2
	}
	lost := podIPs(on[victim])
	if len(lost) == 0 {
		b.Fatalf("no pod on an agent: %s", podSummary(pods))
	}
	survivors := []int{0, 3 - victim}
	start := time.Now()
	c.Kill(victim)
	c.Cut(victim)
	var lbAt, readyAt time.Duration
	c.WaitFor("endpoints gone and replacements ready", 120*time.Second, func() (bool, error) {
		if lbAt == 0 {
			gone := true
			for _, s := range survivors {
				held, err := c.LBHoldsAny(s, lost)
				if err != nil || len(held) > 0 {
					gone = false
					break
				}
			}
			if gone {
				lbAt = time.Since(start)
			}
		}
		if readyAt == 0 {
			if p, err := c.ReadyPods("web", "web", 6); err == nil && PerNode(p)[c.Nodes[victim].Name] == 0 {
				readyAt = time.Since(start)
			}
		}
		return lbAt > 0 && readyAt > 0, fmt.Errorf("lb at %s, ready at %s", lbAt, readyAt)
	})
	c.Heal(victim)
	c.Start(victim)
	c.WaitFor("the returning node settles", 60*time.Second, func() (bool, error) {
		p, err := c.ReadyPods("web", "web", 6)
		if err != nil {
			return false, err
		}
		if PerNode(p)[c.Nodes[victim].Name] != 0 {
			return false, fmt.Errorf("pods on the returning node: %s", podSummary(p))
		}
		ents, _ := os.ReadDir(c.PodNetnsDir(victim))
		return len(ents) == 0, fmt.Errorf("%d pod netns left on the returning node", len(ents))
	})
	return lbAt.Seconds(), readyAt.Seconds()
}

// BenchmarkAgentRSS reports the resident memory of an idle agent (nodes 1
// and 2 of a 3-node cluster running nothing, sampled 10 times over 5s once
// every node is Ready) and, as the baseline of the same run, of node 0's
// `skiff server --agent`.
func BenchmarkAgentRSS(b *testing.B) {
	c := New(b, Options{Nodes: 3})
	var agent, server []float64
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for range 10 {
		<-tick.C
		for i, n := range c.Nodes {
			kb, err := rssKB(n.PID())
			if err != nil {
				b.Fatal(err)
			}
			if i == 0 {
				server = append(server, float64(kb)/1024)
			} else {
				agent = append(agent, float64(kb)/1024)
			}
		}
	}
	b.ReportMetric(median(agent), "MB-agent-rss-median")
	b.ReportMetric(slices.Max(agent), "MB-agent-rss-max")
	b.ReportMetric(median(server), "MB-server-agent-rss-median")
	b.Logf("idle RSS: agent median %.1f MB [%.1f–%.1f]; server --agent median %.1f MB [%.1f–%.1f]",
		median(agent), slices.Min(agent), slices.Max(agent), median(server), slices.Min(server), slices.Max(server))
}

// rssKB reads VmRSS of a process.
func rssKB(pid int) (int, error) {
	if pid == 0 {
		return 0, fmt.Errorf("process not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
