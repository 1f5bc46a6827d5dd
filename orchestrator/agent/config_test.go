package agent

import (
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/containers/images"
)

// TestRuntimeConfigCarriesPolicy: the node config's security keys reach the
// container runtime, and a container's seccomp choice reaches its config.
func TestRuntimeConfigCarriesPolicy(t *testing.T) {
	for _, allow := range []bool{true, false} {
		n := configs.DefaultNodeConfig()
		n.AllowUnconfined = allow
		if got := RuntimeConfig(n, nil).AllowUnconfined; got != allow {
			t.Errorf("allow_unconfined = %v: runtime AllowUnconfined %v", allow, got)
		}
	}
	n := configs.DefaultNodeConfig()
	n.Images = configs.Images{MaxLayerBytes: 64 << 20, MaxLayerEntries: 100, MinFreeBytes: 1 << 30}
	want := images.Limits{MaxLayerBytes: 64 << 20, MaxLayerEntries: 100, MinFreeBytes: 1 << 30}
	if got := RuntimeConfig(n, nil).ImageLimits; got != want {
		t.Errorf("[images] limits: runtime has %+v, want %+v", got, want)
	}
	for _, choice := range []string{"", "default", "unconfined"} {
		cc := containerConfig("http", &configs.ContainerSpec{Image: "img", Seccomp: choice}, "always")
		if cc.Seccomp != containers.SeccompProfile(choice) {
			t.Errorf("seccomp %q: container config has %q", choice, cc.Seccomp)
		}
	}
}
