package agent

import (
	"net"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestBuildStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := func(restart string, names ...string) *api.Pod {
		p := &api.Pod{Spec: api.PodSpec{Restart: restart, Containers: map[string]*configs.ContainerSpec{}}}
		for _, n := range names {
			p.Spec.Containers[n] = &configs.ContainerSpec{Image: "x"}
		}
		return p
	}
	running := func(pid, restarts int) *containers.ContainerStatus {
		return &containers.ContainerStatus{State: containers.StateRunning, Pid: pid, RestartCount: restarts, StartedAt: now}
	}
	exited := func(code int, reason string) *containers.ContainerStatus {
		return &containers.ContainerStatus{State: containers.StateExited, ExitCode: code, Reason: reason}
	}
	tests := []struct {
		name      string
		pod       *api.Pod
		views     map[string]ctrView
		phase     string
		ready     bool
		reason    string // of the first container
		state     string // of the first container
		podReason string
	}{
		{"not created yet", pod("always", "a"), map[string]ctrView{}, api.PodPending, false, ReasonCreating, "waiting", ""},
		{"image pull backoff", pod("always", "a"), map[string]ctrView{"a": {waitReason: ReasonImagePullBackOff}}, api.PodPending, false, ReasonImagePullBackOff, "waiting", ReasonImagePullBackOff},
		{"running, not ready", pod("always", "a"), map[string]ctrView{"a": {st: running(10, 0)}}, api.PodRunning, false, "", "running", ""},
		{"running and ready", pod("always", "a"), map[string]ctrView{"a": {st: running(10, 0), ready: true}}, api.PodRunning, true, "", "running", ""},
		{"one of two ready", pod("always", "a", "b"), map[string]ctrView{"a": {st: running(10, 0), ready: true}, "b": {st: running(11, 0)}}, api.PodRunning, false, "", "running", ""},
		{"exited, always restarts", pod("always", "a"), map[string]ctrView{"a": {st: exited(1, containers.ReasonError)}}, api.PodRunning, false, ReasonCrashLoopBackOff, "waiting", ""},
		{"oom killed, restarting", pod("on-failure", "a"), map[string]ctrView{"a": {st: exited(137, containers.ReasonOOMKilled)}}, api.PodRunning, false, ReasonCrashLoopBackOff, "waiting", ""},
		{"failed for good", pod("never", "a"), map[string]ctrView{"a": {st: exited(2, containers.ReasonError)}}, api.PodFailed, false, containers.ReasonError, "exited", "Error"},
		{"succeeded", pod("on-failure", "a"), map[string]ctrView{"a": {st: exited(0, containers.ReasonCompleted)}}, api.PodSucceeded, false, containers.ReasonCompleted, "exited", "Completed"},
		{"waiting for restart backoff", pod("always", "a"), map[string]ctrView{"a": {st: &containers.ContainerStatus{State: containers.StateCreated, RestartCount: 2, Reason: containers.ReasonError, ExitCode: 1}}}, api.PodRunning, false, ReasonCrashLoopBackOff, "waiting", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := buildStatus(tc.pod, "10.0.0.2", now, tc.views, api.PodStatus{})
			if s.Phase != tc.phase || s.Ready != tc.ready || s.Reason != tc.podReason {
				t.Errorf("phase %s ready %v reason %q, want %s %v %q", s.Phase, s.Ready, s.Reason, tc.phase, tc.ready, tc.podReason)
			}
			c := s.Containers[0]
			if c.Reason != tc.reason || c.State != tc.state {
				t.Errorf("container: state %s reason %q, want %s %q", c.State, c.Reason, tc.state, tc.reason)
			}
			if s.IP != "10.0.0.2" {
				t.Errorf("ip %q", s.IP)
			}
		})
	}
}

func TestBuildStatusKeepsStartedAt(t *testing.T) {
	then := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &api.Pod{Spec: api.PodSpec{Containers: map[string]*configs.ContainerSpec{"a": {}}}}
	views := map[string]ctrView{"a": {st: &containers.ContainerStatus{State: containers.StateRunning, Pid: 3}, ready: true}}
	s := buildStatus(p, "", time.Now(), views, api.PodStatus{StartedAt: &then})
	if s.StartedAt == nil || !s.StartedAt.Equal(then) {
		t.Errorf("started at %v, want %v", s.StartedAt, then)
	}
	if s.Containers[0].PID != 3 {
		t.Errorf("pid %d", s.Containers[0].PID)
	}
}

func TestLBState(t *testing.T) {
	svcs := map[string]*api.Service{
		"web":     {Meta: api.Meta{Name: "web"}, Spec: configs.ServiceSpec{App: "web", Port: 80}, Status: api.ServiceStatus{ClusterIP: "10.96.0.10"}},
		"pub":     {Meta: api.Meta{Name: "pub"}, Spec: configs.ServiceSpec{App: "web", Port: 80, Type: configs.ServiceNodePort, Affinity: configs.AffinityClientIP}, Status: api.ServiceStatus{ClusterIP: "10.96.0.11", NodePort: 30080}},
		"dns":     {Meta: api.Meta{Name: "dns"}, Spec: configs.ServiceSpec{App: "dns", Port: 53, Protocol: configs.ProtocolUDP}, Status: api.ServiceStatus{ClusterIP: "10.96.0.12"}},
		"pending": {Meta: api.Meta{Name: "pending"}, Spec: configs.ServiceSpec{App: "x", Port: 80}},
	}
	eps := map[string]*api.Endpoints{
		"web": {Endpoints: []api.Endpoint{{Pod: "a", IP: "10.88.0.2", Port: 8080}, {Pod: "b", IP: "10.88.0.3", Port: 8080}}},
		"pub": {Endpoints: []api.Endpoint{{Pod: "a", IP: "10.88.0.2", Port: 8080}, {Pod: "bad", IP: "nope", Port: 1}}},
	}
	out, outEps, ips := lbState(svcs, eps)
	if len(out) != 3 {
		t.Fatalf("services %+v: want 3 (the one without a cluster IP left out)", out)
	}
	byName := map[string]int{}
	for i, s := range out {
		byName[s.Name] = i
	}
	pub := out[byName["pub"]]
	if pub.NodePort != 30080 || !pub.Affinity || !pub.ClusterIP.Equal(net.ParseIP("10.96.0.11")) {
		t.Errorf("pub: %+v", pub)
	}
	if out[byName["web"]].NodePort != 0 {
		t.Errorf("a cluster service got a node port")
	}
	if out[byName["dns"]].Protocol != "udp" {
		t.Errorf("dns protocol %q", out[byName["dns"]].Protocol)
	}
	if len(outEps["web"]) != 2 || len(outEps["pub"]) != 1 {
		t.Errorf("endpoints %+v", outEps)
	}
	if !ips["10.88.0.2"] || !ips["10.88.0.3"] || len(ips) != 2 {
		t.Errorf("ips %v", ips)
	}
}

func TestPlainLine(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"full line", "2026-01-01T00:00:00.000000000Z stdout F hello world\n", "hello world\n"},
		{"partial line", "2026-01-01T00:00:00.000000000Z stderr P part", "part"},
		{"empty message", "2026-01-01T00:00:00.000000000Z stdout F\n", "\n"},
		{"not cri", "junk\n", "junk\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(plainLine([]byte(tc.in))); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProbePort(t *testing.T) {
	spec := &configs.ContainerSpec{Ports: map[string]int{"http": 8080}}
	tests := []struct {
		name string
		ref  configs.PortRef
		want int
	}{
		{"number", configs.PortRef{Number: 9000}, 9000},
		{"name", configs.PortRef{Name: "http"}, 8080},
		{"unknown name", configs.PortRef{Name: "grpc"}, 0},
		{"the only port", configs.PortRef{}, 8080},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := probePort(tc.ref, spec); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}
