package clustertest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Teardown()
	os.Exit(code)
}

// appTimeout bounds the wait for an app to be ready (image import, pod
// start, readiness probe), on a loaded 2-core machine.
const appTimeout = 90 * time.Second

// TestHarnessSingleNode: one node in its netns runs the demo app of 3
// replicas; the VIP answers from all 3 from inside the node's netns; the
// clean-up (registered by New) leaves nothing.
func TestHarnessSingleNode(t *testing.T) {
	c := New(t, Options{Nodes: 1})
	c.Apply(DemoManifest(3))
	pods := c.WaitAppReady("web", 3, appTimeout)
	vip := c.VIP("web")
	c.WaitFor("VIP answers from all 3 replicas", 30*time.Second, func() (bool, error) {
		h := Hit(c.Nodes[0].NetnsPath(), vip, 30)
		return len(h.ByPod) == 3 && h.Failed == 0, fmt.Errorf("%+v", h)
	})
	// A pod reaches the VIP too (hairpin through the node's bridge).
	h := Hit(c.PodNetns(0, pods[0].Name), vip, 20)
	if h.Failed > 0 || len(h.ByPod) == 0 {
		t.Errorf("from pod %s: %+v", pods[0].Name, h)
	}
	// A pod bound after the agent's first sync runs too.
	if out, err := c.CLI(0, "scale", "app", "web", "--replicas", "4"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c.WaitAppReady("web", 4, appTimeout)
	// The host's netns does not hold the cluster's addresses.
	if out, err := exec.Command("ip", "-o", "addr").CombinedOutput(); err != nil || strings.Contains(string(out), c.Nodes[0].Addr+"/") {
		t.Errorf("node address visible on the host (%v):\n%s", err, out)
	}
}

// TestClusterSpread: an app of 6 replicas lands 2 per node on a 3-node
// cluster.
func TestClusterSpread(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	c.Apply(DemoManifest(6))
	pods := c.WaitAppReady("web", 6, appTimeout)
	per := PerNode(pods)
	for _, n := range c.Nodes {
		if per[n.Name] != 2 {
			t.Errorf("node %s has %d pods, want 2 (%v)", n.Name, per[n.Name], per)
		}
		if procs := c.AppProcs(n.Index, "app"); len(procs) != per[n.Name] {
			t.Errorf("node %s runs %d demo processes %v, the API says %d pods", n.Name, len(procs), procs, per[n.Name])
		}
	}
}

// podsOn groups pods by node index.
func (c *Cluster) podsOn(pods []api.Pod) map[int][]api.Pod {
	m := map[int][]api.Pod{}
	for _, p := range pods {
		m[c.NodeIndex(p.Spec.Node)] = append(m[c.NodeIndex(p.Spec.Node)], p)
	}
	return m
}

// nodesHit maps the pods that answered to their nodes.
func nodesHit(h Hits, pods []api.Pod) map[string]int {
	where := map[string]string{}
	for _, p := range pods {
		where[p.Name] = p.Spec.Node
	}
	m := map[string]int{}
	for pod, n := range h.ByPod {
		m[where[pod]] += n
	}
	return m
}

// TestClusterVIPEverywhere: from every node and from a pod on every node,
// 30 requests to the VIP, each on a new connection, all succeed and reach
// replicas on all 3 nodes; a pod reaches a pod on every other node by its
// IP.
func TestClusterVIPEverywhere(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	c.Apply(DemoManifest(6))
	pods := c.WaitAppReady("web", 6, appTimeout)
	vip := c.VIP("web")
	on := c.podsOn(pods)
	for i := range c.Nodes {
		if len(on[i]) == 0 {
			t.Fatalf("no pod on node %d: %s", i, podSummary(pods))
		}
	}
	// Wait for node 0's load balancer to reach every node's pods, and for
	// every node's rules to name every pod; then each source is measured
	// once.
	var first Hits
	if err := c.Poll(30*time.Second, func() (bool, error) {
		first = Hit(c.Nodes[0].NetnsPath(), vip, 30)
		return first.Failed == 0 && len(nodesHit(first, pods)) == 3, nil
	}); err != nil {
		t.Errorf("from node 0 to VIP %s: %d failed %v, answers by node %v", vip, first.Failed, first.Errors, nodesHit(first, pods))
	}
	for i := range c.Nodes {
		c.WaitLBHolds(i, pods, 30*time.Second)
	}
	for i, n := range c.Nodes {
		for _, src := range []struct{ what, ns string }{
			{"node " + n.Name, n.NetnsPath()},
			{"pod " + on[i][0].Name, c.PodNetns(i, on[i][0].Name)},
		} {
			t.Run(src.what, func(t *testing.T) {
				h := Hit(src.ns, vip, 30)
				if h.Failed > 0 || len(nodesHit(h, pods)) != 3 {
					t.Errorf("from %s to VIP %s: %d failed %v, answers by node %v", src.what, vip, h.Failed, h.Errors, nodesHit(h, pods))
				}
			})
		}
	}
	for i := range c.Nodes {
		for j := range c.Nodes {
			if i == j {
				continue
			}
			src, dst := on[i][0], on[j][0]
			t.Run(fmt.Sprintf("pod on n%d to pod on n%d", i, j), func(t *testing.T) {
				body, err := c.GetFromPod(i, src.Name, dst.Status.IP+":8080")
				if err != nil || strings.TrimSpace(body) != "hello from "+dst.Name {
					t.Errorf("%s -> %s (%s): %q %v", src.Name, dst.Name, dst.Status.IP, body, err)
				}
			})
		}
	}
}

// killNode kills node i's skiff and cuts its link, as a lost machine.
func (c *Cluster) killNode(i int) {
	c.Kill(i)
	c.Cut(i)
}

// podIPs are the pods' IPs.
func podIPs(pods []api.Pod) []string {
	var ips []string
	for _, p := range pods {
		ips = append(ips, p.Status.IP)
	}
	return ips
}

// TestClusterNodeLoss: kill an agent's process and cut its link: its
// endpoints leave the survivors' load balancers (their nat tables no longer
// name the dead pods' IPs and VIP requests from survivors all succeed) and
// its pods come back on the others; heal and restart it: 6 pods, one per
// replica, and the returning node runs no container of the pods it lost.
func TestClusterNodeLoss(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	c.Apply(DemoManifest(6))
	pods := c.WaitAppReady("web", 6, appTimeout)
	vip := c.VIP("web")
	const victim = 2
	lost := c.podsOn(pods)[victim]
	if len(lost) == 0 {
		t.Fatalf("no pod on node %d: %s", victim, podSummary(pods))
	}
	lostIPs := podIPs(lost)
	killed := time.Now()
	c.killNode(victim)
	for _, s := range []int{0, 1} {
		c.WaitFor(fmt.Sprintf("node %d's nat table without %v", s, lostIPs), 45*time.Second, func() (bool, error) {
			held, err := c.LBHoldsAny(s, lostIPs)
			return err == nil && len(held) == 0, fmt.Errorf("still holds %v (%v)", held, err)
		})
	}
	t.Logf("endpoints of node %d gone from the survivors' load balancers %.1fs after the kill", victim, time.Since(killed).Seconds())
	for _, s := range []int{0, 1} {
		if h := Hit(c.Nodes[s].NetnsPath(), vip, 30); h.Failed > 0 {
			t.Errorf("from node %d after the loss: %d of 30 failed: %v", s, h.Failed, h.Errors)
		}
	}
	var moved []api.Pod
	c.WaitFor("6 ready pods on the survivors", 60*time.Second, func() (bool, error) {
		p, err := c.ReadyPods("web", "web", 6)
		if err != nil {
			return false, err
		}
		if n := PerNode(p)[c.Nodes[victim].Name]; n > 0 {
			return false, fmt.Errorf("%d pods still on the dead node", n)
		}
		moved = p
		return true, nil
	})
	t.Logf("replacement pods ready %.1fs after the kill", time.Since(killed).Seconds())

	c.Heal(victim)
	c.Start(victim)
	c.WaitFor("the returning node stops its old pods", 60*time.Second, func() (bool, error) {
		p, err := c.ReadyPods("web", "web", 6)
		if err != nil {
			return false, err
		}
		if left := lostContainers(c, victim, lost); len(left) > 0 {
			return false, fmt.Errorf("old pods still on node %d: %v", victim, left)
		}
		moved = p
		return true, nil
	})
	names := map[string]bool{}
	for _, p := range moved {
		if names[p.Name] {
			t.Errorf("pod %s twice", p.Name)
		}
		names[p.Name] = true
	}
	if len(moved) != 6 {
		t.Errorf("%d pods after the return, want 6: %s", len(moved), podSummary(moved))
	}
	// Exactly one running copy of each replica, counted in the kernel:
	// every node runs as many demo processes as the API gives it pods.
	per, total := PerNode(moved), 0
	for _, n := range c.Nodes {
		procs := c.AppProcs(n.Index, "app")
		total += len(procs)
		if len(procs) != per[n.Name] {
			t.Errorf("node %s runs %d demo processes %v, the API says %d pods", n.Name, len(procs), procs, per[n.Name])
		}
	}
	if total != 6 {
		t.Errorf("%d demo processes run in the cluster, want 6", total)
	}
}

// lostContainers lists the pods of lost whose netns mount is still on node
// i, or whose processes still run in node i's cgroup parent: what the
// returning agent must have stopped.
func lostContainers(c *Cluster, i int, lost []api.Pod) []string {
	var left []string
	for _, p := range lost {
		if _, err := os.Stat(c.PodNetns(i, p.Name)); err == nil {
			left = append(left, p.Name)
		}
	}
	for _, pid := range ContainerPIDs(lost) {
		if pid > 0 && processAlive(pid) {
			left = append(left, fmt.Sprintf("pid %d", pid))
		}
	}
	return left
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// TestClusterServerCutOff: node 0 (the server, with 2 of the 6 pods) is
// cut off for 30s while nodes 1 and 2 send requests to the VIP in a loop
// (1s timeout each, new connection each: a request balanced to node 0's
// pods is lost, and one to a healthy pod must not time out on a loaded
// machine). What must hold:
//
//   - every pod on nodes 1 and 2 answers through the VIP, from both nodes,
//     during the cut: the survivors keep serving their pods without a
//     server;
//   - after the first 5s of the cut, at most half the requests fail: the
//     only requests allowed to fail are those balanced to node 0's pods
//     (2 of 6 endpoints, a third), whether or not an agent drops the
//     endpoints of a node that gossip says failed (we log which: zero
//     failures means it did);
//   - after the heal, 6 pods are ready again and the containers on nodes 1
//     and 2 kept their PIDs: nothing healthy was restarted or replaced.
func TestClusterServerCutOff(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	c.Apply(DemoManifest(6))
	pods := c.WaitAppReady("web", 6, appTimeout)
	vip := c.VIP("web")
	on := c.podsOn(pods)
	survivorsPods := append(append([]api.Pod{}, on[1]...), on[2]...)
	before := ContainerPIDs(survivorsPods)

	c.Cut(0)
	cutAt := time.Now()
	type result struct {
		early, late Hits // first 5s, the rest
	}
	results := make([]result, 3)
	var wg sync.WaitGroup
	for _, i := range []int{1, 2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := result{early: Hits{ByPod: map[string]int{}}, late: Hits{ByPod: map[string]int{}}}
			for time.Since(cutAt) < 30*time.Second {
				h := &r.late
				if time.Since(cutAt) < 5*time.Second {
					h = &r.early
				}
				body, err := GetIn(c.Nodes[i].NetnsPath(), vip, time.Second)
				if err != nil {
					h.Failed++
					if len(h.Errors) < 5 {
						h.Errors = append(h.Errors, fmt.Sprintf("%.1fs %v", time.Since(cutAt).Seconds(), err))
					}
				} else {
					h.ByPod[strings.TrimSpace(strings.TrimPrefix(body, "hello from "))]++
				}
				time.Sleep(20 * time.Millisecond) // pace, not a condition
			}
			results[i] = r
		}()
	}
	wg.Wait()
	for _, i := range []int{1, 2} {
		r := results[i]
		ok := sum(r.late.ByPod)
		t.Logf("node %d during the cut: first 5s %d ok %d failed; then %d ok by node %v, %d failed %v", i,
			sum(r.early.ByPod), r.early.Failed, ok, nodesHit(r.late, pods), r.late.Failed, r.late.Errors)
		for _, p := range survivorsPods {
			if r.early.ByPod[p.Name]+r.late.ByPod[p.Name] == 0 {
				t.Errorf("node %d: pod %s on %s never answered through the VIP during the cut", i, p.Name, p.Spec.Node)
			}
		}
		if total := ok + r.late.Failed; total == 0 || float64(r.late.Failed) > 0.5*float64(total) {
			t.Errorf("node %d: %d of %d VIP requests failed after the first 5s of the cut (at most half may: those sent to node 0's pods)", i, r.late.Failed, total)
		}
		if r.late.Failed == 0 {
			t.Logf("node %d dropped node 0's endpoints during the cut", i)
		}
	}
	c.Heal(0)
	var after []api.Pod
	c.WaitFor("6 ready pods after the heal", 60*time.Second, func() (bool, error) {
		p, err := c.ReadyPods("web", "web", 6)
		after = p
		return err == nil, err
	})
	now := ContainerPIDs(after)
	for k, pid := range before {
		if now[k] != pid {
			t.Errorf("container %s: pid %d before the cut, %d after (restarted or replaced)", k, pid, now[k])
		}
	}
}

func podNames(pods []api.Pod) []string {
	var n []string
	for _, p := range pods {
		n = append(n, p.Name)
	}
	return n
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestAgentRestartWithoutServer: with the server cut off, an agent is
// killed (-9) and started again: its pods run (same container PIDs, or
// restarted from its cache) and its iptables rules come back from its local
// cache: the VIP answers from that node.
func TestAgentRestartWithoutServer(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	c.Apply(DemoManifest(6))
	pods := c.WaitAppReady("web", 6, appTimeout)
	vip := c.VIP("web")
	const agent = 1
	mine := c.podsOn(pods)[agent]
	if len(mine) == 0 {
		t.Fatalf("no pod on node %d: %s", agent, podSummary(pods))
	}
	// The agent saves its cache asynchronously: wait until it holds this
	// node's pods and the service (orchestrator/agent's
	// <data_dir>/agent-cache.json) before the server goes.
	cacheFile := filepath.Join(c.Nodes[agent].DataDir, "agent-cache.json")
	// Its pods and the service alone are not enough: the endpoints reach
	// the cache a save later than the pods (they follow the pods' ready
	// reports), and a cache without them programs no service rule.
	c.WaitFor("the agent's cache holding its pods and their endpoints", 20*time.Second, func() (bool, error) {
		b, err := os.ReadFile(cacheFile)
		if err != nil {
			return false, err
		}
		for _, name := range append(podNames(mine), `"web"`) {
			if !strings.Contains(string(b), name) {
				return false, fmt.Errorf("%s lacks %s", cacheFile, name)
			}
		}
		var cached struct {
			Endpoints []api.Endpoints `json:"endpoints"`
		}
		if err := json.Unmarshal(b, &cached); err != nil {
			return false, err
		}
		ips := map[string]bool{}
		for _, e := range cached.Endpoints {
			for _, ep := range e.Endpoints {
				ips[ep.IP] = true
			}
		}
		for _, p := range mine {
			if !ips[p.Status.IP] {
				return false, fmt.Errorf("%s has no endpoint %s (pod %s)", cacheFile, p.Status.IP, p.Name)
			}
		}
		return true, nil
	})
	c.Cut(0)
	c.Kill(agent)
	// The kill leaves the kernel's rules; flush the service chains so that
	// only the restarted agent can bring them back.
	if out, err := c.Exec(agent, "iptables", "-t", "nat", "-F", "PREROUTING"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := c.Exec(agent, "iptables", "-t", "nat", "-F", "OUTPUT"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if h := Hit(c.Nodes[agent].NetnsPath(), vip, 3); len(h.ByPod) > 0 {
		t.Fatalf("the VIP still answers with the jump rules flushed: %+v", h)
	}
	// The server is unreachable: the agent cannot wait for Ready in its
	// view, so we start the process and wait for the data plane.
	c.StartProcess(agent, c.agentArgs(c.Nodes[agent], c.Token())...)
	restarted := time.Now()
	mineIPs := podIPs(mine)
	// The agent programs its load balancer from the cache at once: the
	// jump to the service chains is back in nat OUTPUT well before a server
	// check or a gossip join could time out.
	c.WaitFor("the service jump back in the agent's nat OUTPUT", 30*time.Second, func() (bool, error) {
		out, err := c.Exec(agent, "iptables", "-t", "nat", "-S", "OUTPUT")
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, out)
		}
		return strings.Contains(out, "SKIFF-SERVICES"), fmt.Errorf("nat OUTPUT: %s", out)
	})
	t.Logf("node %d's nat table holds the cached service rules %.1fs after its restart", agent, time.Since(restarted).Seconds())
	c.WaitFor("the agent's VIP answers from its own pods", 60*time.Second, func() (bool, error) {
		h := Hit(c.Nodes[agent].NetnsPath(), vip, 20)
		hit := 0
		for _, p := range mine {
			hit += h.ByPod[p.Name]
		}
		return hit > 0, fmt.Errorf("%+v", h)
	})
	t.Logf("the VIP answers from node %d's pods %.1fs after its restart", agent, time.Since(restarted).Seconds())
	for _, p := range mine {
		if _, err := c.GetFromNode(agent, p.Status.IP+":8080"); err != nil {
			t.Errorf("pod %s (%s) does not answer on node %d: %v", p.Name, p.Status.IP, agent, err)
		}
	}
	held, err := c.LBHoldsAny(agent, mineIPs)
	if err != nil || len(held) != len(mineIPs) {
		t.Errorf("node %d's nat table names %v of its pods %v (%v)", agent, held, mineIPs, err)
	}
	c.Heal(0)
	healed := time.Now()
	c.WaitAppReady("web", 6, 60*time.Second)
	c.WaitNodeReady(agent, 30*time.Second)
	t.Logf("6 ready pods and node %d Ready %.1fs after the heal", agent, time.Since(healed).Seconds())
}

// TestJoinBadToken: an agent with a wrong secret, or with a token whose CA
// hash is not the server's, exits non-zero and says why.
func TestJoinBadToken(t *testing.T) {
	c := New(t, Options{Nodes: 2, NoStart: true})
	c.Start(0)
	good := c.Token()
	if !strings.HasPrefix(good, "K10") || !strings.Contains(good, "::") {
		t.Fatalf("skiff token printed %q, want K10<ca sha256>::<secret>", good)
	}
	hash, secret, _ := strings.Cut(strings.TrimPrefix(good, "K10"), "::")
	wrongHash := strings.Map(func(r rune) rune {
		if r == '0' {
			return '1'
		}
		return '0'
	}, hash)
	for _, tc := range []struct {
		name, token string
		want        []string // any of these in the log, lower-cased
	}{
		{"wrong secret", "K10" + hash + "::" + reverse(secret), []string{"token"}},
		{"wrong CA hash", "K10" + wrongHash + "::" + secret, []string{"ca does not match", "certificate"}},
		{"not a token", "nonsense", []string{"token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.StartAgent(1, tc.token)
			code := c.WaitExit(1, 30*time.Second)
			c.Nodes[1].proc = nil
			log := strings.ToLower(tailFile(c.Nodes[1].Log, 5))
			if code == 0 {
				t.Errorf("agent exited 0 with token %q", tc.token)
			}
			found := false
			for _, w := range tc.want {
				found = found || strings.Contains(log, w)
			}
			if !found {
				t.Errorf("exit %d; its log does not name %v:\n%s", code, tc.want, log)
			}
			t.Logf("exit %d: %s", code, tailFile(c.Nodes[1].Log, 1))
			if n, err := c.Client(0).GetNode(t.Context(), c.Nodes[1].Name); err == nil {
				t.Errorf("the server lists the refused node: %+v", n.Meta)
			}
		})
	}
	t.Run("good token", func(t *testing.T) {
		c.Start(1)
	})
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	if string(b) == s {
		return s + "x"
	}
	return string(b)
}
