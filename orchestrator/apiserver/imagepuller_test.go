package apiserver

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// ensuringImages is a fakeImages that can also ensure (pull if missing).
type ensuringImages struct {
	fakeImages
	ensured []string
}

func (f *ensuringImages) EnsureImage(_ context.Context, node, ref string) (api.ImageInfo, error) {
	f.mu.Lock()
	f.ensured = append(f.ensured, node+" "+ref)
	f.mu.Unlock()
	return api.ImageInfo{Refs: []string{ref}}, nil
}

// TestImagePuller: the controllers' pre-pull goes through the NodeImages
// set at call time (none yet: node not reachable), ensures where it can
// and pulls otherwise, and gives a node's error on one line.
func TestImagePuller(t *testing.T) {
	s, _ := newTestServer(t, "10.96.0.0/16")
	p := s.ImagePuller()
	ctx := context.Background()
	if err := p.EnsureImage(ctx, "n1", "reg/x:1"); err == nil || !errors.Is(err, api.ErrNodeUnreachable) {
		t.Fatalf("before SetNodeImages: %v", err)
	}
	if err := p.EnsureImage(ctx, "n1", "Bad Ref!"); err == nil || !strings.Contains(err.Error(), "Bad Ref!") {
		t.Fatalf("bad ref: %v", err)
	}
	pulls := &fakeImages{}
	s.SetNodeImages(pulls)
	if err := p.EnsureImage(ctx, "n1", "reg/x:1"); err != nil || len(pulls.asked) != 1 {
		t.Fatalf("through PullImage: %v, asked %v", err, pulls.asked)
	}
	err := p.EnsureImage(ctx, "n2", "reg/x:1")
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Fatalf("n2's error: %v", err)
	}
	ens := &ensuringImages{}
	s.SetNodeImages(ens)
	if err := p.EnsureImage(ctx, "n1", "reg/x:2"); err != nil || len(ens.ensured) != 1 || len(ens.asked) != 0 {
		t.Fatalf("through EnsureImage: %v, ensured %v, pulled %v", err, ens.ensured, ens.asked)
	}
}
