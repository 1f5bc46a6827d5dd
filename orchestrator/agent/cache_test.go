package agent

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestCacheBytesStable: the same content always encodes to the same bytes,
// whatever order the maps it comes from hand it out in, so that cacheLoop
// writes the file only when something changed.
func TestCacheBytesStable(t *testing.T) {
	encode := func(order []int) string {
		c := &cache{PodCIDR: "10.88.0.0/24"}
		for _, i := range order {
			name := fmt.Sprintf("web-%d", i)
			c.Pods = append(c.Pods, &api.Pod{Meta: api.Meta{Name: name}})
			c.Services = append(c.Services, &api.Service{Meta: api.Meta{Name: name}})
			c.Endpoints = append(c.Endpoints, &api.Endpoints{Meta: api.Meta{Name: name}})
			c.Nodes = append(c.Nodes, peerNode{Name: fmt.Sprintf("n%d", i)})
		}
		c.sort()
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := encode([]int{0, 1, 2, 3})
	for _, order := range [][]int{{3, 2, 1, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}} {
		if got := encode(order); got != want {
			t.Errorf("order %v encodes differently:\n%s\nwant\n%s", order, got, want)
		}
	}
}

// TestCacheFingerprint: the fingerprint the cache loop compares before it
// encodes moves with every object's revision, the peers and the pod CIDR,
// and is empty (compare the bytes) when an object has no revision.
func TestCacheFingerprint(t *testing.T) {
	mk := func(podRev, svcRev, epRev int64, peerAddr string) *cache {
		c := &cache{PodCIDR: "10.88.0.0/24",
			Pods:      []*api.Pod{{Meta: api.Meta{Name: "web-1", Revision: podRev}}},
			Services:  []*api.Service{{Meta: api.Meta{Name: "web", Revision: svcRev}}},
			Endpoints: []*api.Endpoints{{Meta: api.Meta{Name: "web", Revision: epRev}}},
			Nodes:     []peerNode{{Name: "n1", Addr: peerAddr, PodCIDR: "10.88.1.0/24"}},
		}
		c.sort()
		return c
	}
	base := mk(5, 6, 7, "10.0.0.2").fingerprint()
	if base == "" || mk(5, 6, 7, "10.0.0.2").fingerprint() != base {
		t.Fatalf("same content: fingerprints %q and %q", base, mk(5, 6, 7, "10.0.0.2").fingerprint())
	}
	for name, c := range map[string]*cache{
		"pod changed":       mk(8, 6, 7, "10.0.0.2"),
		"service changed":   mk(5, 8, 7, "10.0.0.2"),
		"endpoints changed": mk(5, 6, 8, "10.0.0.2"),
		"peer moved":        mk(5, 6, 7, "10.0.0.3"),
	} {
		if c.fingerprint() == base {
			t.Errorf("%s: same fingerprint", name)
		}
	}
	if got := mk(0, 6, 7, "10.0.0.2").fingerprint(); got != "" {
		t.Errorf("an object without a revision: fingerprint %q, want none", got)
	}
}
