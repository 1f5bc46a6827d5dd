package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	imgstore "github.com/skiff-edge/skiff/containers/images" // cli has a func images
	"github.com/skiff-edge/skiff/containers/images/imagetest"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// requireRootForImages: unpacking layers keeps their owners, which needs
// root.
func requireRootForImages(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (CI runs as root)")
	}
	t.Skip("needs root")
}

// testImage is a small two-layer image whose content depends on tag, so
// that each tag is a different image.
func testImage(t *testing.T, tag string) v1.Image {
	t.Helper()
	l1, err := imagetest.Layer([]imagetest.File{{Path: "etc", Dir: true}, {Path: "etc/tag", Data: []byte(tag)}})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := imagetest.Layer([]imagetest.File{{Path: "data", Data: bytes.Repeat([]byte(tag), 50000)}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagetest.Image(v1.Config{Cmd: []string{"/bin/true"}}, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newImages(t *testing.T) (*Images, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	var out, errw bytes.Buffer
	return &Images{DataDir: t.TempDir(), StateDir: filepath.Join(t.TempDir(), "run", "containers"), Node: "n1", Out: &out, Err: &errw}, &out, &errw
}

func TestImagesPullListRemove(t *testing.T) {
	requireRootForImages(t)
	ctx := context.Background()
	reg, err := imagetest.StartRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	ref := reg.Addr + "/demo/web:1"
	if err := imagetest.Push(ref, testImage(t, "pull")); err != nil {
		t.Fatal(err)
	}

	for _, tty := range []bool{false, true} {
		o, out, errw := newImages(t)
		o.TTY = tty
		if err := o.Pull(ctx, ref); err != nil {
			t.Fatalf("pull (tty %v): %v", tty, err)
		}
		if !strings.HasPrefix(out.String(), "pulled "+ref+" (") {
			t.Errorf("pull output %q", out.String())
		}
		prog := errw.String()
		if tty {
			if !strings.Contains(prog, "\r\x1b[K") || strings.Contains(prog, "\n") {
				t.Errorf("tty progress should be one rewritten line: %q", prog)
			}
		} else {
			lines := strings.Split(strings.TrimSpace(prog), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "resolving ") || !strings.Contains(lines[1], " / ") {
				t.Errorf("plain progress: want resolving and a line per layer, got %q", prog)
			}
		}

		out.Reset()
		if err := o.List(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		rows := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(rows) != 2 || !strings.HasPrefix(rows[0], "REPOSITORY:TAG") || !strings.HasPrefix(rows[1], ref+" ") {
			t.Errorf("ls:\n%s", out.String())
		}

		out.Reset()
		if err := o.Remove(ctx, ref, false); err != nil {
			t.Fatal(err)
		}
		if err := o.Remove(ctx, ref, false); !errors.Is(err, imgstore.ErrImageNotPresent) {
			t.Errorf("second rm: %v, want image not present", err)
		}
	}
}

func TestImagesImportFormats(t *testing.T) {
	requireRootForImages(t)
	ctx := context.Background()
	dir := t.TempDir()
	tests := []struct {
		name  string
		write func(path, ref string, img v1.Image) error
	}{
		{"oci", imagetest.WriteOCIArchive},
		{"docker", imagetest.WriteDockerArchive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, out, _ := newImages(t)
			ref := "localhost/skiff-" + tt.name + ":1"
			path := filepath.Join(dir, tt.name+".tar")
			if err := tt.write(path, ref, testImage(t, tt.name)); err != nil {
				t.Fatal(err)
			}
			if err := o.Import(ctx, path); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out.String(), "imported "+ref+" (") {
				t.Errorf("import output %q", out.String())
			}
			out.Reset()
			if err := o.List(ctx, time.Now()); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "\n"+ref+" ") {
				t.Errorf("ls does not show %s:\n%s", ref, out.String())
			}
		})
	}
}

func TestImagesErrors(t *testing.T) {
	requireRootForImages(t)
	ctx := context.Background()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	if err := imagetest.WriteOCIArchive(good, "localhost/x:1", testImage(t, "x")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.tar")
	garbage := filepath.Join(dir, "garbage.tar")
	empty := filepath.Join(dir, "empty.tar")
	for p, data := range map[string][]byte{truncated: b[:len(b)/2], garbage: []byte("not a tar\n"), empty: make([]byte, 1024)} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		run  func(o *Images) error
		want error
	}{
		{"bad ref pull", func(o *Images) error { return o.Pull(ctx, "Bad//ref") }, imgstore.ErrBadReference},
		{"bad ref rm", func(o *Images) error { return o.Remove(ctx, "UPPER/case::x", false) }, imgstore.ErrBadReference},
		{"missing image rm", func(o *Images) error { return o.Remove(ctx, "localhost/none:1", false) }, imgstore.ErrImageNotPresent},
		{"truncated archive", func(o *Images) error { return o.Import(ctx, truncated) }, imgstore.ErrBadArchive},
		{"garbage archive", func(o *Images) error { return o.Import(ctx, garbage) }, imgstore.ErrBadArchive},
		{"empty archive", func(o *Images) error { return o.Import(ctx, empty) }, imgstore.ErrBadArchive},
		{"missing archive", func(o *Images) error { return o.Import(ctx, filepath.Join(dir, "none.tar")) }, os.ErrNotExist},
		{"missing data dir", func(o *Images) error { o.DataDir = filepath.Join(dir, "none"); return o.List(ctx, time.Now()) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, _, _ := newImages(t)
			err := tt.run(o)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			var line bytes.Buffer
			PrintError(&line, err)
			if strings.Count(line.String(), "\n") != 1 {
				t.Errorf("error is not one line: %q", line.String())
			}
		})
	}
}

// TestImagesRemoveInUse: rm refuses an image that a container of this
// node uses (from the runtime's records, as containers.ImagesInUse reads
// them) or that a live pod of this node runs (as the API tells), and when
// it cannot tell; --force removes it anyway.
func TestImagesRemoveInUse(t *testing.T) {
	requireRootForImages(t)
	ctx := context.Background()
	tests := []struct {
		name string
		// setup makes the image look used; id is the image's ID.
		setup func(t *testing.T, o *Images, id string)
		want  error
		says  string
	}{
		{"pod from the API", func(t *testing.T, o *Images, _ string) {
			pods := []api.Pod{
				{Meta: api.Meta{Name: "web-1"}, Spec: api.PodSpec{Node: "n1", Containers: map[string]*configs.ContainerSpec{"http": {Image: "localhost/used:1"}}}, Status: api.PodStatus{Phase: api.PodRunning}},
			}
			o.API = fakeAPI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]any{"revision": 1, "items": pods})
			}))
		}, ErrImageInUse, "pod web-1"},
		// A record as the runtime writes it (containers' record.json); the
		// containers package tests ImagesInUse against real containers.
		{"container on the node", func(t *testing.T, o *Images, id string) {
			writeRecord(t, o.StateDir, "web-2_http", fmt.Sprintf(`{"pod":"web-2","config":{"name":"http","image":"localhost/used:1"},"image_id":%q}`, id))
		}, ErrImageInUse, "container web-2/http"},
		{"unreadable record", func(t *testing.T, o *Images, _ string) {
			writeRecord(t, o.StateDir, "web-3_http", "{not json")
		}, nil, "cannot tell"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, _, _ := newImages(t)
			path := filepath.Join(t.TempDir(), "a.tar")
			if err := imagetest.WriteDockerArchive(path, "localhost/used:1", testImage(t, "used")); err != nil {
				t.Fatal(err)
			}
			if err := o.Import(ctx, path); err != nil {
				t.Fatal(err)
			}
			st, err := containers.OpenImageStore(o.config())
			if err != nil {
				t.Fatal(err)
			}
			img, err := st.Get("localhost/used:1")
			if err != nil {
				t.Fatal(err)
			}
			tt.setup(t, o, img.ID)
			err = o.Remove(ctx, "localhost/used:1", false)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("rm of an image in use: %v, want %v saying %q", err, tt.want, tt.says)
			}
			if _, err := st.Get("localhost/used:1"); err != nil {
				t.Fatalf("refused rm removed it: %v", err)
			}
			if err := o.Remove(ctx, "localhost/used:1", true); err != nil {
				t.Fatalf("rm --force: %v", err)
			}
		})
	}
}

func writeRecord(t *testing.T, stateDir, id, content string) {
	t.Helper()
	dir := filepath.Join(stateDir, "containers", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "record.json"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestImagesBesideEachOther: two `skiff images import` at once on one data
// dir keep both images and leave the runtime's state directory alone.
func TestImagesBesideEachOther(t *testing.T) {
	requireRootForImages(t)
	ctx := context.Background()
	o1, _, _ := newImages(t)
	dir := t.TempDir()
	errs := make(chan error, 2)
	for i := range 2 {
		o := *o1
		o.Out, o.Err = io.Discard, io.Discard
		path := filepath.Join(dir, fmt.Sprintf("%d.tar", i))
		if err := imagetest.WriteDockerArchive(path, fmt.Sprintf("localhost/side:%d", i), testImage(t, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		go func() { errs <- o.Import(ctx, path) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	o1.Out = &out
	if err := o1.List(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if !strings.Contains(out.String(), fmt.Sprintf("localhost/side:%d ", i)) {
			t.Errorf("ls lacks localhost/side:%d:\n%s", i, out.String())
		}
	}
	if _, err := os.Stat(o1.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s: %v, want it untouched", o1.StateDir, err)
	}
}
