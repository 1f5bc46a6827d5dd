package controller

import (
	"reflect"
	"sort"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

func threeNodes() []*api.Node {
	return []*api.Node{
		mkNode("a", true, 4000, 4096*mi, map[string]string{"site": "x"}),
		mkNode("b", true, 4000, 4096*mi, map[string]string{"site": "x"}),
		mkNode("c", true, 4000, 4096*mi, map[string]string{"site": "y"}),
	}
}

func TestPlanReplicas(t *testing.T) {
	tests := []struct {
		name       string
		replicas   int
		update     *configs.UpdateSpec
		pods       []*api.Pod
		create     int
		retire     []string
		status     api.AppStatus
		inProgress bool
	}{
		{
			name:     "scale up from nothing",
			replicas: 3,
			create:   3,
			status:   api.AppStatus{TemplateHash: "h1"},
		},
		{
			name:     "steady",
			replicas: 2,
			pods:     []*api.Pod{mkPod("a1", "web", onNode("a"), ready("1")), mkPod("b1", "web", onNode("b"), ready("2"))},
			status:   api.AppStatus{TemplateHash: "h1", Replicas: 2, Ready: 2, Updated: 2},
		},
		{
			name:     "scale down removes unscheduled, then unready, then newest",
			replicas: 2,
			pods: []*api.Pod{
				mkPod("old", "web", onNode("a"), ready("1")),
				mkPod("new", "web", onNode("b"), ready("2"), created(5)),
				mkPod("mid", "web", onNode("c"), ready("3"), created(2)),
				mkPod("unready", "web", onNode("c"), running(), created(-5)),
				mkPod("pending", "web", created(-9)),
			},
			retire: []string{"pending", "unready", "new"},
			status: api.AppStatus{TemplateHash: "h1", Replicas: 2, Ready: 2, Updated: 2},
		},
		{
			name:     "scale down prefers crowded nodes",
			replicas: 2,
			pods: []*api.Pod{
				mkPod("a1", "web", onNode("a"), ready("1")),
				mkPod("a2", "web", onNode("a"), ready("2")),
				mkPod("b1", "web", onNode("b"), ready("3"), created(9)),
			},
			retire: []string{"a2"},
			status: api.AppStatus{TemplateHash: "h1", Replicas: 2, Ready: 2, Updated: 2},
		},
		{
			name:     "pods on a down node go first",
			replicas: 1,
			pods: []*api.Pod{
				mkPod("a1", "web", onNode("a"), ready("1")),
				mkPod("d1", "web", onNode("down"), ready("2")),
			},
			retire: []string{"d1"},
			status: api.AppStatus{TemplateHash: "h1", Replicas: 1, Ready: 1, Updated: 1},
		},
		{
			name:     "deleting pods do not count",
			replicas: 2,
			pods:     []*api.Pod{mkPod("a1", "web", onNode("a"), ready("1")), mkPod("b1", "web", onNode("b"), ready("2"), deleting())},
			create:   1,
			status:   api.AppStatus{TemplateHash: "h1", Replicas: 1, Ready: 1, Updated: 1},
		},
		{
			name:     "failed pod replaced under always",
			replicas: 2,
			pods:     []*api.Pod{mkPod("a1", "web", onNode("a"), ready("1")), mkPod("b1", "web", onNode("b"), phase(api.PodFailed))},
			create:   1,
			retire:   []string{"b1"},
			status:   api.AppStatus{TemplateHash: "h1", Replicas: 1, Ready: 1, Updated: 1},
		},
		{
			name:     "succeeded pod replaced under always",
			replicas: 1,
			pods:     []*api.Pod{mkPod("b1", "web", onNode("b"), phase(api.PodSucceeded))},
			create:   1,
			retire:   []string{"b1"},
			status:   api.AppStatus{TemplateHash: "h1"},
		},
		{
			name:     "failed pod replaced under on-failure, succeeded kept",
			replicas: 2,
			pods: []*api.Pod{
				mkPod("a1", "web", onNode("a"), phase(api.PodSucceeded), restart(configs.RestartOnFailure)),
				mkPod("b1", "web", onNode("b"), phase(api.PodFailed), restart(configs.RestartOnFailure)),
			},
			create: 1,
			retire: []string{"b1"},
			status: api.AppStatus{TemplateHash: "h1", Replicas: 1, Updated: 1},
		},
		{
			name:     "ended pods kept under never",
			replicas: 2,
			pods: []*api.Pod{
				mkPod("a1", "web", onNode("a"), phase(api.PodSucceeded), restart(configs.RestartNever)),
				mkPod("b1", "web", onNode("b"), phase(api.PodFailed), restart(configs.RestartNever)),
			},
			status: api.AppStatus{TemplateHash: "h1", Replicas: 2, Updated: 2},
		},
		{
			name:     "update starts with a surge pod",
			replicas: 3,
			pods: []*api.Pod{
				mkPod("o1", "web", onNode("a"), ready("1"), hashed("h0")),
				mkPod("o2", "web", onNode("b"), ready("2"), hashed("h0")),
				mkPod("o3", "web", onNode("c"), ready("3"), hashed("h0")),
			},
			create:     1,
			status:     api.AppStatus{TemplateHash: "h1", Replicas: 3, Ready: 3},
			inProgress: true,
		},
		{
			name:     "update waits for the new pod",
			replicas: 3,
			pods: []*api.Pod{
				mkPod("o1", "web", onNode("a"), ready("1"), hashed("h0")),
				mkPod("o2", "web", onNode("b"), ready("2"), hashed("h0")),
				mkPod("o3", "web", onNode("c"), ready("3"), hashed("h0")),
				mkPod("n1", "web", onNode("a"), running()),
			},
			status:     api.AppStatus{TemplateHash: "h1", Replicas: 4, Ready: 3, Updated: 1},
			inProgress: true,
		},
		{
			name:     "update retires an old pod once a new one is ready",
			replicas: 3,
			pods: []*api.Pod{
				mkPod("o1", "web", onNode("a"), ready("1"), hashed("h0")),
				mkPod("o2", "web", onNode("b"), ready("2"), hashed("h0"), created(1)),
				mkPod("o3", "web", onNode("c"), ready("3"), hashed("h0")),
				mkPod("n1", "web", onNode("a"), ready("4")),
			},
			create:     0,
			retire:     []string{"o1"}, // on the crowded node
			status:     api.AppStatus{TemplateHash: "h1", Replicas: 3, Ready: 3, Updated: 1},
			inProgress: true,
		},
		{
			name:     "unready old pods go before ready ones",
			replicas: 2,
			pods: []*api.Pod{
				mkPod("o1", "web", onNode("a"), ready("1"), hashed("h0")),
				mkPod("o2", "web", onNode("b"), running(), hashed("h0")),
				mkPod("n1", "web", onNode("c"), ready("3")),
			},
			retire:     []string{"o2"},
			status:     api.AppStatus{TemplateHash: "h1", Replicas: 2, Ready: 2, Updated: 1},
			inProgress: true,
		},
		{
			name:     "max unavailable without surge",
			replicas: 3,
			update:   &configs.UpdateSpec{MaxSurge: intp(0), MaxUnavailable: intp(1)},
			pods: []*api.Pod{
				mkPod("o1", "web", onNode("a"), ready("1"), hashed("h0")),
				mkPod("o2", "web", onNode("b"), ready("2"), hashed("h0"), created(1)),
				mkPod("o3", "web", onNode("c"), ready("3"), hashed("h0")),
			},
			retire:     []string{"o2"},
			status:     api.AppStatus{TemplateHash: "h1", Replicas: 2, Ready: 2},
			inProgress: true,
		},
		{
			name:     "scale down during an update",
			replicas: 2,
			pods: []*api.Pod{
				mkPod("o1", "web", onNode("a"), ready("1"), hashed("h0")),
				mkPod("n1", "web", onNode("a"), ready("2")),
				mkPod("n2", "web", onNode("b"), ready("3")),
				mkPod("n3", "web", onNode("c"), ready("4"), created(1)),
			},
			retire: []string{"n1", "o1"}, // n1 shares a node with o1
			status: api.AppStatus{TemplateHash: "h1", Replicas: 2, Ready: 2, Updated: 2},
		},
		{
			name:     "last old pod goes when new ones are ready",
			replicas: 2,
			pods: []*api.Pod{
				mkPod("o1", "web", onNode("a"), ready("1"), hashed("h0")),
				mkPod("n1", "web", onNode("b"), ready("2")),
				mkPod("n2", "web", onNode("c"), ready("3")),
			},
			retire: []string{"o1"},
			status: api.AppStatus{TemplateHash: "h1", Replicas: 2, Ready: 2, Updated: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := threeNodes()
			nodes = append(nodes, mkNode("down", false, 4000, 4096*mi, nil))
			nv := newNodeView(nodes)
			app := mkApp("web", tt.replicas)
			app.Spec.Update = tt.update
			cl := newCluster(nodes, tt.pods, func(n *api.Node) bool { return nv.up[n.Name] })
			plan := planApp(app, "h1", tt.pods, nv, cl)
			if plan.create != tt.create {
				t.Errorf("create = %d, want %d", plan.create, tt.create)
			}
			if got := names(plan.retire); !reflect.DeepEqual(got, append([]string{}, tt.retire...)) {
				t.Errorf("retire = %v, want %v", got, tt.retire)
			}
			if !reflect.DeepEqual(plan.status, tt.status) {
				t.Errorf("status = %+v, want %+v", plan.status, tt.status)
			}
			if plan.progressing != tt.inProgress {
				t.Errorf("progressing = %v, want %v", plan.progressing, tt.inProgress)
			}
		})
	}
}

func TestPlanPerNode(t *testing.T) {
	tests := []struct {
		name     string
		selector map[string]string
		pods     []*api.Pod
		createOn []string
		retire   []string
		unfit    map[string]string
		cpu      float64
		hostPort int
	}{
		{
			name:     "one per matching ready node",
			selector: map[string]string{"site": "x"},
			createOn: []string{"a", "b"},
		},
		{
			name:     "every ready node without a selector",
			pods:     []*api.Pod{mkPod("a1", "web", onNode("a"), ready("1"))},
			createOn: []string{"b", "c"},
		},
		{
			name:     "pods off the selector go, pods on a down node stay",
			selector: map[string]string{"site": "x"},
			pods: []*api.Pod{
				mkPod("a1", "web", onNode("a")),
				mkPod("c1", "web", onNode("c")),
				mkPod("d1", "web", onNode("down")),
				mkPod("x1", "web"),
			},
			createOn: []string{"b"},
			retire:   []string{"c1", "x1"},
		},
		{
			name:     "duplicates on a node go",
			selector: map[string]string{"site": "x"},
			pods: []*api.Pod{
				mkPod("a1", "web", onNode("a"), ready("1")),
				mkPod("a2", "web", onNode("a"), running(), created(1)),
				mkPod("b1", "web", onNode("b"), ready("2")),
			},
			retire: []string{"a2"},
		},
		{
			name:     "a node without room is reported",
			selector: map[string]string{"site": "x"},
			pods:     []*api.Pod{mkPod("big", "other", onNode("a"), requests(3.9, 0))},
			createOn: []string{"b"},
			unfit:    map[string]string{"a": whyCPU},
			cpu:      0.5,
		},
		{
			name:     "update surges one node at a time",
			selector: map[string]string{"site": "x"},
			pods: []*api.Pod{
				mkPod("a1", "web", onNode("a"), ready("1"), hashed("h0")),
				mkPod("b1", "web", onNode("b"), ready("2"), hashed("h0")),
			},
			createOn: []string{"a"},
		},
		{
			name:     "update retires the old pod once the new one is ready",
			selector: map[string]string{"site": "x"},
			pods: []*api.Pod{
				mkPod("a1", "web", onNode("a"), ready("1"), hashed("h0")),
				mkPod("a2", "web", onNode("a"), ready("3")),
				mkPod("b1", "web", onNode("b"), ready("2"), hashed("h0")),
			},
			createOn: []string{"b"},
			retire:   []string{"a1"},
		},
		{
			name:     "update with host ports replaces in place",
			selector: map[string]string{"site": "x"},
			pods: []*api.Pod{
				mkPod("a1", "web", onNode("a"), ready("1"), hashed("h0"), hostPort(80)),
				mkPod("b1", "web", onNode("b"), ready("2"), hashed("h0"), hostPort(80)),
			},
			retire:   []string{"a1"},
			hostPort: 80,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := append(threeNodes(), mkNode("down", false, 4000, 4096*mi, map[string]string{"site": "x"}))
			nv := newNodeView(nodes)
			app := mkApp("web", 0)
			app.Spec.Mode = configs.ModePerNode
			app.Spec.NodeSelector = tt.selector
			app.Spec.Containers["main"].CPU = tt.cpu
			if tt.hostPort != 0 {
				app.Spec.Containers["main"].HostPorts = map[string]int{"http": tt.hostPort}
			}
			cl := newCluster(nodes, tt.pods, func(n *api.Node) bool { return nv.up[n.Name] })
			var mine []*api.Pod
			for _, p := range tt.pods {
				if p.Spec.App == "web" {
					mine = append(mine, p)
				}
			}
			plan := planApp(app, "h1", mine, nv, cl)
			sort.Strings(plan.createOn)
			if !reflect.DeepEqual(plan.createOn, tt.createOn) {
				t.Errorf("createOn = %v, want %v", plan.createOn, tt.createOn)
			}
			got := names(plan.retire)
			sort.Strings(got)
			if !reflect.DeepEqual(got, append([]string{}, tt.retire...)) {
				t.Errorf("retire = %v, want %v", got, tt.retire)
			}
			if tt.unfit == nil {
				tt.unfit = map[string]string{}
			}
			if !reflect.DeepEqual(plan.unfit, tt.unfit) {
				t.Errorf("unfit = %v, want %v", plan.unfit, tt.unfit)
			}
		})
	}
}
