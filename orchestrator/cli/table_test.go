package cli

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

func TestParseKind(t *testing.T) {
	tests := []struct{ in, want string }{
		{"pods", api.KindPod}, {"pod", api.KindPod}, {"po", api.KindPod},
		{"svc", api.KindService}, {"Nodes", api.KindNode}, {"ep", api.KindEndpoints},
		{"app", api.KindApp}, {"events", api.KindEvent}, {"deployments", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKind(tt.in)
			if got != tt.want || (err != nil) != (tt.want == "") {
				t.Errorf("ParseKind(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

var now = time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return now.Add(-d) }

func ptr[T any](v T) *T { return &v }

// fixtures: one ready node, one not ready; an app with two pods (one
// running and ready, one terminating); a node-port service with endpoints.
func fixtures() (nodes []api.Node, apps []api.App, pods []api.Pod, svcs []api.Service, eps []api.Endpoints) {
	nodes = []api.Node{
		{Meta: api.Meta{Name: "edge-01", Created: ago(5 * 24 * time.Hour)},
			Spec: api.NodeSpec{PodCIDR: "10.88.1.0/24", Labels: map[string]string{"site": "shop-1"}},
			Status: api.NodeStatus{Addresses: []string{"10.0.0.5"},
				Capacity:    api.Resources{MilliCPU: 2000, Memory: 2 << 30, Pods: 110},
				Allocatable: api.Resources{MilliCPU: 1900, Memory: 1984 << 20, Pods: 110},
				Conditions:  []api.Condition{{Type: api.NodeReady, Status: true}}}},
		{Meta: api.Meta{Name: "edge-02", Created: ago(time.Hour)},
			Status: api.NodeStatus{Conditions: []api.Condition{{Type: api.NodeReady, Status: false}}}},
	}
	cs := map[string]*configs.ContainerSpec{"http": {Image: "echo:1.2", CPU: 0.25, Memory: 64 << 20}}
	apps = []api.App{{Meta: api.Meta{Name: "web", Created: ago(10 * time.Minute)},
		Spec:   configs.AppSpec{Replicas: ptr(3), Containers: cs},
		Status: api.AppStatus{TemplateHash: "7d9c", Replicas: 3, Ready: 2, Updated: 3}}}
	pods = []api.Pod{
		{Meta: api.Meta{Name: "web-7d9c-a", Created: ago(9 * time.Minute)},
			Spec: api.PodSpec{App: "web", TemplateHash: "7d9c", Node: "edge-01", Containers: cs},
			Status: api.PodStatus{Phase: api.PodRunning, IP: "10.88.1.4", Ready: true,
				Containers: []api.ContainerStatus{{Name: "http", State: "running", Ready: true, Restarts: 2}}}},
		{Meta: api.Meta{Name: "web-7d9c-b", Created: ago(30 * time.Second)},
			Spec:   api.PodSpec{App: "web", TemplateHash: "7d9c", Node: "edge-01", Containers: cs, Deleting: ptr(now)},
			Status: api.PodStatus{Phase: api.PodRunning}},
		{Meta: api.Meta{Name: "web-7d9c-c"},
			Spec: api.PodSpec{App: "web", TemplateHash: "7d9c", Containers: cs}},
	}
	svcs = []api.Service{{Meta: api.Meta{Name: "web", Created: ago(2 * time.Minute)},
		Spec:   configs.ServiceSpec{App: "web", Port: 80, TargetPort: configs.PortRef{Name: "http"}, Type: configs.ServiceNodePort},
		Status: api.ServiceStatus{ClusterIP: "10.96.0.10", NodePort: 30080}},
		{Meta: api.Meta{Name: "shop", Created: ago(2 * time.Minute)},
			Spec:   configs.ServiceSpec{App: "web", Port: 443, Type: configs.ServiceLoadBalancer},
			Status: api.ServiceStatus{ClusterIP: "10.96.0.11", NodePort: 30081, Address: "192.168.1.240", Holder: "edge-02"}},
		{Meta: api.Meta{Name: "new", Created: ago(time.Minute)},
			Spec:   configs.ServiceSpec{App: "web", Port: 80, Type: configs.ServiceLoadBalancer},
			Status: api.ServiceStatus{ClusterIP: "10.96.0.12", NodePort: 30082}}}
	eps = []api.Endpoints{{Meta: api.Meta{Name: "web", Created: ago(2 * time.Minute)},
		Endpoints: []api.Endpoint{{Pod: "web-7d9c-a", Node: "edge-01", IP: "10.88.1.4", Port: 8080}}}}
	return
}

func render(t *testing.T, tb *Tables, kind string, objs []api.Object) string {
	t.Helper()
	rows := make([][]string, len(objs))
	for i, o := range objs {
		rows[i] = tb.Row(o)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, tb.Header(kind), rows); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestTables(t *testing.T) {
	nodes, apps, pods, svcs, eps := fixtures()
	tests := []struct {
		name string
		kind string
		wide bool
		objs []api.Object
		want string
	}{
		{"nodes", api.KindNode, false, ptrs(nodes), `
NAME      STATUS     ADDRESS    POD-CIDR       PODS    CPU   MEMORY   AGE
edge-01   Ready      10.0.0.5   10.88.1.0/24   1/110   1.9   1.9Gi    5d
edge-02   NotReady   -          -              0       0     0        60m
`},
		{"apps", api.KindApp, false, ptrs(apps), `
NAME   MODE       READY   UP-TO-DATE   AUTOSCALE   LOAD   AGE
web    replicas   2/3     3            -           -      10m
`},
		{"apps wide", api.KindApp, true, ptrs(apps), `
NAME   MODE       READY   UP-TO-DATE   AUTOSCALE   LOAD   AGE   TEMPLATE   IMAGES
web    replicas   2/3     3            -           -      10m   7d9c       http=echo:1.2
`},
		{"pods", api.KindPod, false, ptrs(pods), `
NAME         APP   NODE      PHASE         READY   RESTARTS   IP          AGE
web-7d9c-a   web   edge-01   Running       1/1     2          10.88.1.4   9m
web-7d9c-b   web   edge-01   Terminating   0/1     0          -           30s
web-7d9c-c   web   -         Pending       0/1     0          -           <unknown>
`},
		{"pods wide", api.KindPod, true, ptrs(pods[:1]), `
NAME         APP   NODE      PHASE     READY   RESTARTS   IP          AGE   TEMPLATE   CONTAINERS      REASON
web-7d9c-a   web   edge-01   Running   1/1     2          10.88.1.4   9m    7d9c       http=echo:1.2   -
`},
		{"services", api.KindService, false, ptrs(svcs), `
NAME   TYPE            CLUSTER-IP   ADDRESS         HOLDER    PORT(S)   NODE-PORT   ENDPOINTS   AGE
web    node-port       10.96.0.10   -               -         80/tcp    30080       1           2m
shop   load-balancer   10.96.0.11   192.168.1.240   edge-02   443/tcp   30081       -           2m
new    load-balancer   10.96.0.12   <pending>       <none>    80/tcp    30082       -           60s
`},
		{"endpoints wide", api.KindEndpoints, true, ptrs(eps), `
NAME   ENDPOINTS        AGE   NODES
web    10.88.1.4:8080   2m    edge-01
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := &Tables{Wide: tt.wide, Now: now, Pods: pods, Endpoints: eps}
			got := render(t, tb, tt.kind, tt.objs)
			if want := strings.TrimPrefix(tt.want, "\n"); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestStreamTable(t *testing.T) {
	var b bytes.Buffer
	st := NewStreamTable(&b, []string{"NAME", "PHASE"}, [][]string{{"web-1", "Running"}})
	for _, r := range [][]string{{"NAME", "PHASE"}, {"web-1", "Running"}, {"web-long-name", "Pending"}} {
		if err := st.WriteRow(r); err != nil {
			t.Fatal(err)
		}
	}
	want := "NAME    PHASE\nweb-1   Running\nweb-long-name   Pending\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestRolloutDone(t *testing.T) {
	tests := []struct {
		name                     string
		replicas, updated, ready int
		hash                     string // default: the spec's
		done                     bool
		line                     string
	}{
		{"old template", 3, 3, 3, "0123456789", false, "waiting for the controller to take template"},
		{"updating", 3, 1, 1, "", false, "1 out of 3 new replicas have been updated"},
		{"old left", 4, 3, 3, "", false, "1 old replicas are pending termination"},
		{"not ready", 3, 3, 2, "", false, "2 of 3 updated replicas are ready"},
		{"done", 3, 3, 3, "", true, "app/web successfully rolled out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &api.App{Meta: api.Meta{Name: "web"}, Spec: configs.AppSpec{Replicas: ptr(3)},
				Status: api.AppStatus{Replicas: tt.replicas, Updated: tt.updated, Ready: tt.ready, TemplateHash: tt.hash}}
			if tt.hash == "" {
				a.Status.TemplateHash = api.TemplateHash(&a.Spec)
			}
			done, line := RolloutDone(a)
			if done != tt.done || !strings.Contains(line, tt.line) {
				t.Errorf("RolloutDone = %v, %q; want %v, ...%q...", done, line, tt.done, tt.line)
			}
		})
	}
}

func TestPrintError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("boom"), "skiff: boom\n"},
		{"api with details", &client.APIError{Status: 400, Code: api.CodeInvalid, Message: "invalid manifest",
			Details: []api.FieldDetail{{Field: "app.web.replicas", Message: "must be >= 0"}}},
			"skiff: invalid manifest\n  app.web.replicas: must be >= 0\n"},
		{"api detail repeated", &client.APIError{Status: 400, Code: api.CodeInvalid, Message: "replicas must be >= 0",
			Details: []api.FieldDetail{{Field: "replicas", Message: "replicas must be >= 0"}}},
			"skiff: replicas must be >= 0\n"},
		{"api details joined", fmt.Errorf("apply: %w", &client.APIError{Status: 400, Code: api.CodeInvalid, Message: "a: bad; b: worse",
			Details: []api.FieldDetail{{Field: "a", Message: "bad"}, {Field: "b", Message: "worse"}}}),
			"skiff: apply: the server rejected the request: 2 errors\n  a: bad\n  b: worse\n"},
		{"unreachable", fmt.Errorf("list: %w", &client.UnreachableError{Addr: "unix:///run/skiff/skiff.sock", Err: errors.New("connect: refused")}),
			"skiff: cannot reach the skiff API at unix:///run/skiff/skiff.sock (is skiff server running?)\n"},
		{"joined", errors.Join(errors.New("app/a not found"), fmt.Errorf("delete app/b: %w", &client.APIError{Status: 409, Message: "stale revision"})),
			"skiff: app/a not found\nskiff: delete app/b: stale revision\n"},
		{"manifest errors", configs.ErrorList{
			{File: "web.toml", Line: 3, Col: 12, Field: "app.web.replicas", Msg: "must be >= 0"},
			{File: "web.toml", Line: 7, Col: 1, Field: "app.web.colour", Msg: "unknown key"}},
			"web.toml:3:12: app.web.replicas: must be >= 0\nweb.toml:7:1: app.web.colour: unknown key\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			PrintError(&b, tt.err)
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}

// TestAutoscaledAppRow: an autoscaled app shows current→desired [min-max]
// and its measured load.
func TestAutoscaledAppRow(t *testing.T) {
	a := &api.App{Meta: api.Meta{Name: "api"},
		Spec: configs.AppSpec{Replicas: ptr(1), Autoscale: &configs.AutoscaleSpec{Min: 1, Max: 8, TargetRPS: 100, TargetCPU: 0.7},
			Containers: map[string]*configs.ContainerSpec{"http": {Image: "echo", CPU: 0.25}}},
		Status: api.AppStatus{Replicas: 3, Ready: 3, Updated: 3, Autoscale: &api.AutoscaleStatus{Desired: 5}}}
	tb := &Tables{Now: time.Now(), Load: map[string]api.AppLoad{"api": {RPS: 412.4, CPU: 1.234, Nodes: 3}}}
	row := tb.Row(a)
	want := []string{"api", "replicas", "3/5", "3", "3→5 [1-8]", "412 req/s, 1.23 cpu"}
	for i, w := range want {
		if row[i] != w {
			t.Errorf("column %s: %q, want %q", tb.Header(api.KindApp)[i], row[i], w)
		}
	}
}
