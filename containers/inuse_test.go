package containers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/containers/images"
	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// openStore opens the image store of cfg alone, as `skiff images` does.
func openStore(t *testing.T, cfg Config) *images.Store {
	t.Helper()
	st, err := OpenImageStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestImagesInUse: a container's image is in use, from the records alone,
// and a GC of another store spares its layers after the image's removal
// until the pod goes.
func TestImagesInUse(t *testing.T) {
	requireRoot(t)
	r, cfg, pod, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	img, err := r.Images().Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}}); err != nil {
		t.Fatal(err)
	}
	used, err := ImagesInUse(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := pod + "/c"; len(used[img.ID]) != 1 || used[img.ID][0] != want {
		t.Fatalf("in use: %v, want %s using %s", used, img.ID, want)
	}
	scfg := cfg
	scfg.LayerGCGrace = -1
	st := openStore(t, scfg)
	if err := st.Remove(ref); err != nil {
		t.Fatal(err)
	}
	if removed, err := st.GC(); err != nil || len(removed) != 0 {
		t.Fatalf("gc under a running container removed %v (%v)", removed, err)
	}
	if err := r.RemovePod(ctx, pod, time.Second); err != nil {
		t.Fatal(err)
	}
	if used, err := ImagesInUse(cfg); err != nil || len(used) != 0 {
		t.Fatalf("in use after the pod went: %v (%v)", used, err)
	}
	if removed, err := st.GC(); err != nil || len(removed) != len(img.Layers) {
		t.Fatalf("gc after the pod went removed %v (%v), want %d layers", removed, err, len(img.Layers))
	}
}

// TestOpenImageStoreLeavesStateDir: an image store opened alone writes
// nothing to the state directory and imports dropped archives only when
// asked; GC's grace spares a fresh layer.
func TestOpenImageStoreLeavesStateDir(t *testing.T) {
	requireRoot(t)
	bb, _ := testImages(t)
	cfg := testConfig(t)
	if err := os.MkdirAll(filepath.Join(cfg.Root, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := imagetest.WriteDockerArchive(filepath.Join(cfg.Root, "images", "bb.tar"), "site.local/bb:1", bb); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, cfg)
	if imgs, err := st.List(); err != nil || len(imgs) != 0 {
		t.Fatalf("list before ImportDir: %v (%v), want nothing imported", imgs, err)
	}
	if _, err := st.ImportDir(context.Background()); err != nil {
		t.Fatal(err)
	}
	img, err := st.Get("site.local/bb:1")
	if err != nil {
		t.Fatal(err)
	}
	if used, err := ImagesInUse(cfg); err != nil || len(used) != 0 {
		t.Errorf("in use without a state dir: %v (%v)", used, err)
	}
	if err := st.Remove("site.local/bb:1"); err != nil {
		t.Fatal(err)
	}
	if removed, err := st.GC(); err != nil || len(removed) != 0 {
		t.Errorf("gc within the grace removed %v (%v)", removed, err)
	}
	if _, err := os.Stat(st.LayerDir(img.Layers[0])); err != nil {
		t.Errorf("fresh layer collected: %v", err)
	}
	if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s: %v, want it never made", cfg.StateDir, err)
	}
}
