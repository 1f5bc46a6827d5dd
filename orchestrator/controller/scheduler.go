package controller

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// DefaultMaxPods is a node's pod limit when its allocatable pods is 0.
const DefaultMaxPods = 110

// Reasons a node does not fit a pod, as they appear in the unschedulable
// message ("0/3 nodes fit: 2 insufficient memory, 1 selector mismatch").
const (
	whyNotReady      = "node not ready"
	whyUnschedulable = "node unschedulable"
	whySelector      = "selector mismatch"
	whyTooManyPods   = "too many pods"
	whyCPU           = "insufficient cpu"
	whyMemory        = "insufficient memory"
	whyHostPort      = "host port conflict"
)

// podRequest is what a pod asks of a node: the sum of its containers' cpu
// and memory, and the host ports it binds.
func podRequest(p *api.Pod) (milliCPU, memory int64, hostPorts []int) {
	for _, c := range p.Spec.Containers {
		if c == nil {
			continue
		}
		milliCPU += int64(math.Round(c.CPU * 1000))
		memory += int64(c.Memory)
		for _, hp := range c.HostPorts {
			hostPorts = append(hostPorts, hp)
		}
	}
	return milliCPU, memory, hostPorts
}

// occupies reports whether a bound pod still holds its node's resources:
// every pod that has not terminated, including one being deleted (it runs
// until its agent stops it).
func occupies(p *api.Pod) bool {
	return p.Status.Phase != api.PodSucceeded && p.Status.Phase != api.PodFailed
}

// nodeInfo is a node with what the pods bound to it already use.
type nodeInfo struct {
	node      *api.Node
	ready     bool
	milliCPU  int64
	memory    int64
	pods      int
	hostPorts map[int]bool
	// apps counts this node's pods per app, for spreading.
	apps map[string]int
}

func newNodeInfo(n *api.Node, ready bool) *nodeInfo {
	return &nodeInfo{node: n, ready: ready, hostPorts: map[int]bool{}, apps: map[string]int{}}
}

// add accounts for a pod bound to the node.
func (ni *nodeInfo) add(p *api.Pod) {
	if !occupies(p) {
		return
	}
	cpu, mem, ports := podRequest(p)
	ni.milliCPU += cpu
	ni.memory += mem
	ni.pods++
	for _, hp := range ports {
		ni.hostPorts[hp] = true
	}
	ni.apps[p.Spec.App]++
}

func (ni *nodeInfo) maxPods() int {
	if n := ni.node.Status.Allocatable.Pods; n > 0 {
		return n
	}
	return DefaultMaxPods
}

// selectorMatches reports whether labels carry every pair of sel.
func selectorMatches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// fit returns "" when the pod fits the node, or the first reason it does
// not. Filters run in a fixed order so that the reason is stable.
func (ni *nodeInfo) fit(p *api.Pod) string {
	switch {
	case !ni.ready:
		return whyNotReady
	case ni.node.Spec.Unschedulable:
		return whyUnschedulable
	case !selectorMatches(p.Spec.NodeSelector, ni.node.Spec.Labels):
		return whySelector
	case ni.pods+1 > ni.maxPods():
		return whyTooManyPods
	}
	cpu, mem, ports := podRequest(p)
	alloc := ni.node.Status.Allocatable
	if cpu > 0 && ni.milliCPU+cpu > alloc.MilliCPU {
		return whyCPU
	}
	if mem > 0 && ni.memory+mem > alloc.Memory {
		return whyMemory
	}
	for _, hp := range ports {
		if ni.hostPorts[hp] {
			return whyHostPort
		}
	}
	return ""
}

// leastAllocated scores the share of the node's cpu and memory left free
// once the pod runs there, from 0 (full) to 1 (empty).
func (ni *nodeInfo) leastAllocated(p *api.Pod) float64 {
	cpu, mem, _ := podRequest(p)
	alloc := ni.node.Status.Allocatable
	var sum float64
	var n int
	if alloc.MilliCPU > 0 {
		sum += float64(alloc.MilliCPU-ni.milliCPU-cpu) / float64(alloc.MilliCPU)
		n++
	}
	if alloc.Memory > 0 {
		sum += float64(alloc.Memory-ni.memory-mem) / float64(alloc.Memory)
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// better reports whether a is a better place for p than b: fewer pods of
// the same app first (spread), then more room left (least allocated), then
// the name, so that the choice is deterministic.
func better(p *api.Pod, a, b *nodeInfo) bool {
	if ca, cb := a.apps[p.Spec.App], b.apps[p.Spec.App]; ca != cb {
		return ca < cb
	}
	if sa, sb := a.leastAllocated(p), b.leastAllocated(p); sa != sb {
		return sa > sb
	}
	return a.node.Name < b.node.Name
}

// cluster is the scheduler's view: every node with what is bound to it.
type cluster struct {
	nodes  []*nodeInfo // sorted by name
	byName map[string]*nodeInfo
}

// newCluster accounts every bound pod against its node. ready tells which
// nodes take pods.
func newCluster(nodes []*api.Node, pods []*api.Pod, ready func(*api.Node) bool) *cluster {
	c := &cluster{byName: map[string]*nodeInfo{}}
	for _, n := range nodes {
		ni := newNodeInfo(n, ready(n))
		c.nodes = append(c.nodes, ni)
		c.byName[n.Name] = ni
	}
	sort.Slice(c.nodes, func(i, j int) bool { return c.nodes[i].node.Name < c.nodes[j].node.Name })
	for _, p := range pods {
		if ni := c.byName[p.Spec.Node]; ni != nil {
			ni.add(p)
		}
	}
	return c
}

// schedule picks the node for an unbound pod. When none fits it returns ""
// and why, per node: "0/3 nodes fit: 2 insufficient memory, 1 selector
// mismatch".
func (c *cluster) schedule(p *api.Pod) (node, why string) {
	var best *nodeInfo
	reasons := map[string]int{}
	for _, ni := range c.nodes {
		if r := ni.fit(p); r != "" {
			reasons[r]++
			continue
		}
		if best == nil || better(p, ni, best) {
			best = ni
		}
	}
	if best != nil {
		return best.node.Name, ""
	}
	return "", unschedulableMessage(len(c.nodes), reasons)
}

// bind accounts for p placed on node, so that the next pod sees it.
func (c *cluster) bind(p *api.Pod, node string) {
	if ni := c.byName[node]; ni != nil {
		ni.add(p)
	}
}

// unschedulableMessage says why no node of total fits: reasons by count,
// most first.
func unschedulableMessage(total int, reasons map[string]int) string {
	if total == 0 {
		return "0/0 nodes fit: no nodes registered"
	}
	keys := make([]string, 0, len(reasons))
	for r := range reasons {
		keys = append(keys, r)
	}
	sort.Slice(keys, func(i, j int) bool {
		if reasons[keys[i]] != reasons[keys[j]] {
			return reasons[keys[i]] > reasons[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, r := range keys {
		parts[i] = fmt.Sprintf("%d %s", reasons[r], r)
	}
	return fmt.Sprintf("0/%d nodes fit: %s", total, strings.Join(parts, ", "))
}
