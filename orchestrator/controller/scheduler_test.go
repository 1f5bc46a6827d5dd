package controller

import (
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

func upNodes(nodes []*api.Node) func(*api.Node) bool {
	return func(n *api.Node) bool { return n.Ready() }
}

func TestSchedule(t *testing.T) {
	big := func(name string) *api.Node { return mkNode(name, true, 4000, 4096*mi, nil) }
	tests := []struct {
		name  string
		nodes []*api.Node
		pods  []*api.Pod // already bound
		pod   *api.Pod
		want  string // node, or "" when unschedulable
		why   string
	}{
		{
			name:  "least allocated",
			nodes: []*api.Node{big("a"), big("b")},
			pods:  []*api.Pod{mkPod("x", "other", onNode("a"), requests(1, 512*mi))},
			pod:   mkPod("p", "web", requests(0.5, 64*mi)),
			want:  "b",
		},
		{
			name:  "spread before least allocated",
			nodes: []*api.Node{big("a"), big("b")},
			pods: []*api.Pod{
				mkPod("x", "other", onNode("a"), requests(3, 3000*mi)),
				mkPod("w1", "web", onNode("b")),
			},
			pod:  mkPod("p", "web"),
			want: "a",
		},
		{
			name:  "ties go to the first name",
			nodes: []*api.Node{big("c"), big("a"), big("b")},
			pod:   mkPod("p", "web"),
			want:  "a",
		},
		{
			name: "per node reasons",
			nodes: []*api.Node{
				mkNode("a", true, 4000, 128*mi, nil),
				mkNode("b", true, 4000, 128*mi, map[string]string{"site": "x"}),
				mkNode("c", true, 4000, 4096*mi, map[string]string{"site": "y"}),
			},
			pod: mkPod("p", "web", requests(0.1, 256*mi), selector("site", "x")),
			why: "0/3 nodes fit: 2 selector mismatch, 1 insufficient memory",
		},
		{
			name: "memory then selector",
			nodes: []*api.Node{
				mkNode("a", true, 4000, 128*mi, map[string]string{"site": "x"}),
				mkNode("b", true, 4000, 128*mi, map[string]string{"site": "x"}),
				mkNode("c", true, 4000, 4096*mi, nil),
			},
			pod: mkPod("p", "web", requests(0.1, 256*mi), selector("site", "x")),
			why: "0/3 nodes fit: 2 insufficient memory, 1 selector mismatch",
		},
		{
			name:  "insufficient cpu counts bound pods",
			nodes: []*api.Node{mkNode("a", true, 1000, 4096*mi, nil)},
			pods:  []*api.Pod{mkPod("x", "other", onNode("a"), requests(0.75, 0))},
			pod:   mkPod("p", "web", requests(0.5, 0)),
			why:   "0/1 nodes fit: 1 insufficient cpu",
		},
		{
			name:  "ended pods free their node",
			nodes: []*api.Node{mkNode("a", true, 1000, 4096*mi, nil)},
			pods:  []*api.Pod{mkPod("x", "other", onNode("a"), requests(0.75, 0), phase(api.PodFailed))},
			pod:   mkPod("p", "web", requests(0.5, 0)),
			want:  "a",
		},
		{
			name:  "pods being deleted still hold their node",
			nodes: []*api.Node{mkNode("a", true, 1000, 4096*mi, nil)},
			pods:  []*api.Pod{mkPod("x", "other", onNode("a"), requests(0.75, 0), deleting())},
			pod:   mkPod("p", "web", requests(0.5, 0)),
			why:   "0/1 nodes fit: 1 insufficient cpu",
		},
		{
			name:  "not ready and cordoned nodes",
			nodes: []*api.Node{mkNode("a", false, 4000, 4096*mi, nil), func() *api.Node { n := big("b"); n.Spec.Unschedulable = true; return n }()},
			pod:   mkPod("p", "web"),
			why:   "0/2 nodes fit: 1 node not ready, 1 node unschedulable",
		},
		{
			name:  "host port conflict",
			nodes: []*api.Node{big("a"), big("b")},
			pods:  []*api.Pod{mkPod("x", "other", onNode("a"), hostPort(80)), mkPod("y", "other", onNode("b"), hostPort(80))},
			pod:   mkPod("p", "web", hostPort(80)),
			why:   "0/2 nodes fit: 2 host port conflict",
		},
		{
			name:  "host port free elsewhere",
			nodes: []*api.Node{big("a"), big("b")},
			pods:  []*api.Pod{mkPod("x", "other", onNode("a"), hostPort(80))},
			pod:   mkPod("p", "web", hostPort(80)),
			want:  "b",
		},
		{
			name:  "pod limit",
			nodes: []*api.Node{func() *api.Node { n := big("a"); n.Status.Allocatable.Pods = 2; return n }()},
			pods:  []*api.Pod{mkPod("x", "o", onNode("a")), mkPod("y", "o", onNode("a"))},
			pod:   mkPod("p", "web"),
			why:   "0/1 nodes fit: 1 too many pods",
		},
		{
			name:  "default pod limit 110",
			nodes: []*api.Node{big("a")},
			pods: func() []*api.Pod {
				var ps []*api.Pod
				for i := range DefaultMaxPods {
					ps = append(ps, mkPod("x"+string(rune('0'+i%10))+string(rune('a'+i/10)), "o", onNode("a")))
				}
				return ps
			}(),
			pod: mkPod("p", "web"),
			why: "0/1 nodes fit: 1 too many pods",
		},
		{
			name: "no nodes",
			pod:  mkPod("p", "web"),
			why:  "0/0 nodes fit: no nodes registered",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCluster(tt.nodes, tt.pods, upNodes(tt.nodes))
			got, why := cl.schedule(tt.pod)
			if got != tt.want || why != tt.why {
				t.Fatalf("schedule = %q, %q; want %q, %q", got, why, tt.want, tt.why)
			}
		})
	}
}

// TestScheduleSpreadsBatch binds six replicas in turn, as schedulePending
// does, and expects two per node.
func TestScheduleSpreadsBatch(t *testing.T) {
	nodes := []*api.Node{
		mkNode("a", true, 4000, 4096*mi, nil),
		mkNode("b", true, 4000, 4096*mi, nil),
		mkNode("c", true, 4000, 4096*mi, nil),
	}
	cl := newCluster(nodes, nil, upNodes(nodes))
	per := map[string]int{}
	for i := range 6 {
		p := mkPod(string(rune('p'+i)), "web", requests(0.1, 16*mi))
		n, why := cl.schedule(p)
		if n == "" {
			t.Fatalf("pod %d unschedulable: %s", i, why)
		}
		cl.bind(p, n)
		per[n]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if per[n] != 2 {
			t.Fatalf("pods per node = %v, want 2 each", per)
		}
	}
}
