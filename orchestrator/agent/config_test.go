package agent

import (
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
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
	for _, choice := range []string{"", "default", "unconfined"} {
		cc := containerConfig("http", &configs.ContainerSpec{Image: "img", Seccomp: choice}, "always")
		if cc.Seccomp != containers.SeccompProfile(choice) {
			t.Errorf("seccomp %q: container config has %q", choice, cc.Seccomp)
		}
	}
}
