package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// fakeImages models the nodes' agents: n2's pulls fail with a registry's
// words, n3's agent cannot be reached; it records the nodes asked.
type fakeImages struct {
	mu    sync.Mutex
	asked []string
}

func (f *fakeImages) ask(node string) error {
	f.mu.Lock()
	f.asked = append(f.asked, node)
	f.mu.Unlock()
	switch node {
	case "n2":
		return errors.New("GET http://reg/v2/x/manifests/v1: MANIFEST_UNKNOWN: manifest unknown;\nunknown tag=v1")
	case "n3":
		return fmt.Errorf("node n3's agent: connection refused: %w", api.ErrNodeUnreachable)
	}
	return nil
}

func (f *fakeImages) PullImage(_ context.Context, node, ref string) (api.ImageInfo, error) {
	if err := f.ask(node); err != nil {
		return api.ImageInfo{}, err
	}
	return api.ImageInfo{Refs: []string{ref}, Digest: "sha256:abc", Size: 42}, nil
}

func (f *fakeImages) ListImages(_ context.Context, node string) ([]api.ImageInfo, error) {
	if err := f.ask(node); err != nil {
		return nil, err
	}
	return []api.ImageInfo{{Refs: []string{"a:1"}}, {Refs: []string{"b:1"}}}, nil
}

// TestImagesFanOut: one result per node, sorted, each node's error its
// own (on one line); a node not Ready is skipped with "all" and never
// asked; named nodes are asked once each.
func TestImagesFanOut(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/16")
	_, err := st.Update(func(tx *store.Tx) error {
		for _, n := range []string{"n3", "n1", "n2", "n4"} {
			node := &api.Node{Meta: api.Meta{Name: n}}
			node.Status.Conditions = []api.Condition{{Type: api.NodeReady, Status: n != "n4"}}
			if err := tx.Put(api.KindNode, node); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	defer hs.Close()
	c, err := client.New(hs.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.ListImages(ctx, api.NodeSelector{All: true}); !isStatus(err, 503) {
		t.Errorf("without NodeImages: %v, want 503", err)
	}
	f := &fakeImages{}
	s.SetNodeImages(f)

	res, err := c.PullImage(ctx, "reg/x:v1", api.NodeSelector{All: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.NodeImageResult{
		{Node: "n1", OK: true, Images: []api.ImageInfo{{Refs: []string{"reg/x:v1"}, Digest: "sha256:abc", Size: 42}}},
		{Node: "n2", Error: "GET http://reg/v2/x/manifests/v1: MANIFEST_UNKNOWN: manifest unknown; unknown tag=v1"},
		{Node: "n3", Error: "node not reachable: node n3's agent: connection refused"},
		{Node: "n4", Error: "node not Ready: skipped"},
	}
	if got := fmt.Sprintf("%+v", res.Items); got != fmt.Sprintf("%+v", want) {
		t.Errorf("pull on all:\n got %s\nwant %+v", got, want)
	}
	slices.Sort(f.asked)
	if !slices.Equal(f.asked, []string{"n1", "n2", "n3"}) {
		t.Errorf("asked %v, want n1 n2 n3", f.asked)
	}

	f.asked = nil
	res, err = c.ListImages(ctx, api.NodeSelector{Names: []string{"n1", "n1"}})
	if err != nil || len(res.Items) != 1 || !res.Items[0].OK || len(res.Items[0].Images) != 2 || len(f.asked) != 1 {
		t.Errorf("ls on n1,n1: %+v, %v; asked %v", res, err, f.asked)
	}
	if _, err := c.ListImages(ctx, api.NodeSelector{Names: []string{"n4"}}); !isStatus(err, 400) {
		t.Errorf("ls on a node not Ready: %v, want 400", err)
	}
	if _, err := c.PullImage(ctx, "reg/x:v1", api.NodeSelector{Names: []string{"n1", "../x"}}); !isStatus(err, 400) {
		t.Errorf("pull on a bad node name: %v, want 400", err)
	}
}
