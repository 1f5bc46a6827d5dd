package containers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-edge/skiff/containers/images"
	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// Tests of the runtime with its image store: images imported from archives
// run. The store alone is tested in package images.

func TestImportArchives(t *testing.T) {
	requireRoot(t)
	bb, _ := testImages(t)
	tests := []struct {
		name  string
		write func(path, ref string, img v1.Image) error
	}{
		{"docker save", imagetest.WriteDockerArchive},
		{"oci layout", imagetest.WriteOCIArchive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			r := openRuntime(t, cfg)
			ref := "registry.example:5000/air/busybox:" + randSuffix()
			path := filepath.Join(t.TempDir(), "img.tar")
			if err := tt.write(path, ref, bb); err != nil {
				t.Fatal(err)
			}
			imgs, err := r.Images().Import(context.Background(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || len(imgs[0].Refs) != 1 || imgs[0].Refs[0] != ref {
				t.Fatalf("imported %+v", imgs)
			}
			runToCompletion(t, r, ref, "echo imported", "imported")
		})
	}
}

// runToCompletion runs a shell command in a fresh pod and checks its output.
func runToCompletion(t *testing.T, r *Runtime, ref, script, want string) {
	t.Helper()
	ctx := context.Background()
	pod := "run-" + randSuffix()
	if err := r.StartPod(ctx, PodConfig{Name: pod}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sh", "-c", script}, Restart: RestartNever}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, r, pod, "c", 20*time.Second)
	out := readLog(t, r, pod, "c", LogOptions{Tail: -1})
	if ev.Status.ExitCode != 0 || !strings.Contains(out, want) {
		t.Fatalf("exit %+v, logs %q, want %q", ev.Status, out, want)
	}
	if err := r.RemovePod(ctx, pod, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestImportDroppedArchivesOnOpen(t *testing.T) {
	requireRoot(t)
	bb, dm := testImages(t)
	cfg := testConfig(t)
	if err := os.MkdirAll(filepath.Join(cfg.Root, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := imagetest.WriteDockerArchive(filepath.Join(cfg.Root, "images", "bb.tar"), "site.local/bb:1", bb); err != nil {
		t.Fatal(err)
	}
	if err := imagetest.WriteOCIArchive(filepath.Join(cfg.Root, "images", "demo.tar"), "site.local/demo:1", dm); err != nil {
		t.Fatal(err)
	}
	r := openRuntime(t, cfg)
	for _, ref := range []string{"site.local/bb:1", "site.local/demo:1"} {
		if _, err := r.Images().Get(ref); err != nil {
			t.Errorf("dropped archive not imported: %v", err)
		}
	}
	// Layers are shared: busybox is the demo image's bottom layer.
	ents, _ := os.ReadDir(filepath.Join(cfg.Root, "layers"))
	if len(ents) != 3 {
		t.Errorf("%d layer dirs, want 3 (busybox shared by both images)", len(ents))
	}
}

// TestStartWithMissingImage: a container whose image is not in the store
// does not start, and says why with the store's error.
func TestStartWithMissingImage(t *testing.T) {
	requireRoot(t)
	r := openRuntime(t, testConfig(t))
	ctx := context.Background()
	if err := r.StartPod(ctx, PodConfig{Name: "noimg"}); err != nil {
		t.Fatal(err)
	}
	_, err := r.StartContainer(ctx, "noimg", ContainerConfig{Name: "c", Image: "x.local/none:1"})
	if !errors.Is(err, images.ErrImageNotPresent) {
		t.Fatalf("start: %v, want images.ErrImageNotPresent", err)
	}
	if _, err := r.ContainerStatus("noimg", "c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("status of the container that did not start: %v, want ErrNotFound", err)
	}
}
