package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/skiff-edge/skiff/containers"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (CI runs as root)")
	}
	t.Skip("needs root: unpacking layers keeps their owners")
}

// TestArchives builds the demo image in both formats and imports each into
// a fresh image store, as a node does.
func TestArchives(t *testing.T) {
	requireRoot(t)
	const ref = "localhost/skiff-demo:1"
	for _, format := range []string{"oci", "docker"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "images", "demo.tar")
			if err := run(out, ref, format); err != nil {
				t.Fatal(err)
			}
			if m, _ := filepath.Glob(filepath.Join(dir, "images", ".tmp-*")); len(m) != 0 {
				t.Errorf("temporary files left: %v", m)
			}
			rt, err := containers.Open(context.Background(), containers.Config{
				Root:     filepath.Join(dir, "data"),
				StateDir: filepath.Join(dir, "state"),
				Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rt.Close() })
			imgs, err := rt.Images().Import(context.Background(), out, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || !slices.Equal(imgs[0].Refs, []string{ref}) {
				t.Fatalf("imported %+v, want one image named %s", imgs, ref)
			}
			c := imgs[0].Config
			if !slices.Equal(c.Entrypoint, []string{"/app"}) || !slices.Equal(c.Cmd, []string{"-listen", ":8080"}) {
				t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
			}
			if _, err := os.Stat(filepath.Join(rt.Images().LayerDir(imgs[0].Layers[1]), "app")); err != nil {
				t.Errorf("the demo binary is not in the second layer: %v", err)
			}
		})
	}
	if err := run(filepath.Join(t.TempDir(), "x.tar"), ref, "zip"); err == nil {
		t.Error("format zip accepted")
	}
}
