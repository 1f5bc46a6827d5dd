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
