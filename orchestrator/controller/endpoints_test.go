package controller

import (
	"reflect"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestEndpointsFor(t *testing.T) {
	svc := func(target configs.PortRef) *api.Service {
		return &api.Service{Meta: api.Meta{Name: "web"}, Spec: configs.ServiceSpec{App: "web", Port: 80, TargetPort: target}}
	}
	named := configs.PortRef{Name: "http"}
	twoPorts := func(p *api.Pod) {
		p.Spec.Containers["side"] = &configs.ContainerSpec{Image: "x", Ports: map[string]int{"admin": 9000}}
	}
	tests := []struct {
		name string
		svc  *api.Service
		pods []*api.Pod
		want []api.Endpoint
	}{
		{
			name: "ready pods by name, target port by name",
			svc:  svc(named),
			pods: []*api.Pod{
				mkPod("web-2", "web", onNode("b"), ready("10.88.1.2")),
				mkPod("web-1", "web", onNode("a"), ready("10.88.0.2")),
			},
			want: []api.Endpoint{
				{Pod: "web-1", Node: "a", IP: "10.88.0.2", Port: 8080},
				{Pod: "web-2", Node: "b", IP: "10.88.1.2", Port: 8080},
			},
		},
		{
			name: "left out: unready, deleting, no ip, down node, unbound, other app",
			svc:  svc(named),
			pods: []*api.Pod{
				mkPod("ok", "web", onNode("a"), ready("10.88.0.2")),
				mkPod("unready", "web", onNode("a"), running()),
				mkPod("deleting", "web", onNode("a"), ready("10.88.0.3"), deleting()),
				mkPod("noip", "web", onNode("a"), ready("")),
				mkPod("down", "web", onNode("down"), ready("10.88.2.2")),
				mkPod("gone", "web", onNode("gone"), ready("10.88.3.2")),
				mkPod("unbound", "web", ready("10.88.0.4")),
				mkPod("other", "api", onNode("a"), ready("10.88.0.5")),
			},
			want: []api.Endpoint{{Pod: "ok", Node: "a", IP: "10.88.0.2", Port: 8080}},
		},
		{
			name: "target port by number",
			svc:  svc(configs.PortRef{Number: 9999}),
			pods: []*api.Pod{mkPod("p", "web", onNode("a"), ready("10.88.0.2"))},
			want: []api.Endpoint{{Pod: "p", Node: "a", IP: "10.88.0.2", Port: 9999}},
		},
		{
			name: "no target port means the service port",
			svc:  svc(configs.PortRef{}),
			pods: []*api.Pod{mkPod("p", "web", onNode("a"), ready("10.88.0.2"))},
			want: []api.Endpoint{{Pod: "p", Node: "a", IP: "10.88.0.2", Port: 80}},
		},
		{
			name: "name found in a second container",
			svc:  svc(configs.PortRef{Name: "admin"}),
			pods: []*api.Pod{mkPod("p", "web", onNode("a"), ready("10.88.0.2"), twoPorts)},
			want: []api.Endpoint{{Pod: "p", Node: "a", IP: "10.88.0.2", Port: 9000}},
		},
		{
			name: "unknown port name leaves the pod out",
			svc:  svc(configs.PortRef{Name: "grpc"}),
			pods: []*api.Pod{mkPod("p", "web", onNode("a"), ready("10.88.0.2"))},
			want: []api.Endpoint{},
		},
	}
	nodes := []*api.Node{mkNode("a", true, 1000, mi, nil), mkNode("b", true, 1000, mi, nil), mkNode("down", false, 1000, mi, nil)}
	nv := newNodeView(nodes)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := endpointsFor(tt.svc, tt.pods, nv)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("endpoints = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
