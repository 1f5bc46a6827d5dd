package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// policySandboxes is the fake runtime's sandboxes behind a host volume
// policy, as the real runtime's StartPod is (on paths as written: the
// fake has no filesystem to resolve them in).
type policySandboxes struct {
	fakeRuntime
	policy containers.HostPathPolicy
}

func (s policySandboxes) StartPod(ctx context.Context, pc containers.PodConfig) error {
	for name, v := range pc.Volumes {
		if v.Type != containers.VolumeHost {
			continue
		}
		var he *containers.HostPathError
		if err := s.policy.Check(v.Path); errors.As(err, &he) {
			he.Volume = name
			return fmt.Errorf("pod %s: %w", pc.Name, he)
		}
	}
	return s.fakeRuntime.StartPod(ctx, pc)
}

// TestRefusedHostVolume: a pod whose host volume the node's policy refuses
// stays Pending, each container waiting with StartError and the rule,
// with a Warning event that says it; it gets no sandbox and no container.
// An allowed one runs. Needs no root.
func TestRefusedHostVolume(t *testing.T) {
	node := configs.DefaultNodeConfig()
	node.HostVolumePaths = []string{"/srv/"}
	tests := []struct {
		name, path, rule string // rule "" for allowed
	}{
		{"outside the prefixes", "/etc", `host path "/etc" is not under host_volume_paths ["/srv/"]`},
		{"inside the data dir", "/var/lib/skiff/pki", `host path "/var/lib/skiff/pki" is inside skiff's data dir "/var/lib/skiff"`},
		{"containing the run dir", "/run", `host path "/run" contains skiff's run dir "/run/skiff"`},
		{"allowed", "/srv/data", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			w := newWorld("n1")
			w.images["img:1"] = true
			ps := w.newPods(time.Now, time.Second)
			ps.sandboxes = policySandboxes{fakeRuntime{w}, HostPathPolicy(node)}
			pod := &api.Pod{Meta: api.Meta{Name: "web-1"}, Spec: api.PodSpec{Node: "n1", Restart: configs.RestartAlways,
				Containers: map[string]*configs.ContainerSpec{
					"app":  {Image: "img:1", Mounts: map[string]string{"v": "/v"}},
					"side": {Image: "img:1"},
				},
				Volumes: map[string]*configs.VolumeSpec{"v": {Type: configs.VolumeHost, Path: tt.path, ReadOnly: true}}}}
			w.put(pod)
			wk := newPodWorker(ps, pod.Name, w.object(pod.Name))
			_, err := wk.sync(ctx)
			st := w.object(pod.Name).Status
			if tt.rule == "" {
				if err != nil || st.Phase != api.PodRunning {
					t.Fatalf("allowed host volume: sync %v, status %+v", err, st)
				}
				return
			}
			var he *containers.HostPathError
			if !errors.As(err, &he) {
				t.Fatalf("sync = %v, want a *containers.HostPathError", err)
			}
			if st.Phase != api.PodPending || st.Ready || len(st.Containers) != 2 {
				t.Fatalf("status %+v, want Pending with both containers", st)
			}
			for _, cs := range st.Containers {
				if cs.State != "waiting" || cs.Reason != containers.ReasonStartFail || !strings.Contains(cs.Message, tt.rule) {
					t.Errorf("container %s: %s %s %q, want waiting with %s and %q", cs.Name, cs.State, cs.Reason, cs.Message, containers.ReasonStartFail, tt.rule)
				}
			}
			if len((fakeRuntime{w}).Pods()) != 0 || len(w.ctrs) != 0 {
				t.Errorf("a refused pod got a sandbox or containers")
			}
			var events []string
			for len(ps.events.c) > 0 {
				ev := <-ps.events.c
				if ev.Type == api.EventWarning && ev.Reason == "Failed" && strings.Contains(ev.Message, tt.rule) {
					return
				}
				events = append(events, ev.Reason+": "+ev.Message)
			}
			t.Errorf("no Warning event Failed naming %q; events %q", tt.rule, events)
		})
	}
}

// TestHostPathPolicyOfNode: by default a node refuses every host volume.
func TestHostPathPolicyOfNode(t *testing.T) {
	n := configs.DefaultNodeConfig()
	if err := HostPathPolicy(n).Check("/srv/x"); err == nil {
		t.Error("the default node config allows a host volume")
	}
	n.HostVolumePaths = []string{"/srv", "/var"}
	n.TokenFile = "/srv/token"
	for path, allowed := range map[string]bool{"/srv/x": true, "/var/log": true, "/var": false, "/run/skiff/skiff.sock": false, "/srv/token": false} {
		if err := HostPathPolicy(n).Check(path); (err == nil) != allowed {
			t.Errorf("%s: %v, want allowed %v", path, err, allowed)
		}
	}
}
