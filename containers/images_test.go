package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/skiff-edge/skiff/containers/imagetest"
	"golang.org/x/sys/unix"
)

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

func TestImageListRemoveGC(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	cfg := testConfig(t)
	cfg.LayerGCGrace = -1
	r := openRuntime(t, cfg)
	ctx := context.Background()
	for _, ref := range []string{reg.Addr + "/busybox:1", reg.Addr + "/demo:1"} {
		if _, err := r.Images().Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	list, err := r.Images().List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %+v", err, list)
	}
	if err := r.Images().Remove(reg.Addr + "/demo:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Images().Get(reg.Addr + "/demo:1"); !errors.Is(err, ErrImageNotPresent) {
		t.Fatalf("removed image: %v", err)
	}
	removed, err := r.Images().GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("gc removed %v, want the demo image's 2 own layers", removed)
	}
	runToCompletion(t, r, reg.Addr+"/busybox:1", "echo still here", "still here")
	if err := r.Images().Remove(reg.Addr + "/nope:1"); !errors.Is(err, ErrImageNotPresent) {
		t.Errorf("remove missing: %v", err)
	}
}

func TestImageErrors(t *testing.T) {
	requireRoot(t)
	bb, _ := testImages(t)
	reg := startRegistry(t)
	// A registry that cuts the connection half way through every blob.
	cut, err := imagetest.StartRegistry(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
				rec := &bufferWriter{header: http.Header{}}
				h.ServeHTTP(rec, req)
				if rec.code == http.StatusOK && rec.buf.Len() > 1000 {
					for k, v := range rec.header {
						w.Header()[k] = v
					}
					w.WriteHeader(http.StatusOK)
					w.Write(rec.buf.Bytes()[:rec.buf.Len()/2])
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.Close()
					return
				}
			}
			h.ServeHTTP(w, req)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cut.Close() })
	if err := imagetest.Push(cut.Addr+"/busybox:1", bb); err != nil {
		t.Fatal(err)
	}
	// A registry that is gone.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := ln.Addr().String()
	ln.Close()

	cfg := testConfig(t)
	r := openRuntime(t, cfg)
	dir := t.TempDir()
	corrupt := map[string][]byte{
		"garbage.tar":   []byte("this is not a tar file at all"),
		"empty-tar.tar": emptyTar(),
	}
	good := filepath.Join(dir, "good.tar")
	if err := imagetest.WriteDockerArchive(good, "x.local/bb:1", bb); err != nil {
		t.Fatal(err)
	}
	goodBytes, _ := os.ReadFile(good)
	corrupt["truncated.tar"] = goodBytes[:len(goodBytes)/2]
	corrupt["flipped.tar"] = flipLayerByte(t, goodBytes)
	for n, b := range corrupt {
		os.WriteFile(filepath.Join(dir, n), b, 0o644)
	}
	ctx := context.Background()
	tests := []struct {
		name string
		op   func() error
		is   error
		msg  string
	}{
		{"bad reference", func() error { _, err := r.Images().Pull(ctx, "UPPER/Case::x", nil); return err }, ErrBadReference, "bad image reference"},
		{"missing image", func() error { _, err := r.Images().Pull(ctx, reg.Addr+"/nothere:1", nil); return err }, ErrNotFound, "not found"},
		{"registry gone", func() error { _, err := r.Images().Pull(ctx, gone+"/busybox:1", nil); return err }, nil, "connection refused"},
		{"registry goes away mid-pull", func() error { _, err := r.Images().Pull(ctx, cut.Addr+"/busybox:1", nil); return err }, nil, "layer sha256:"},
		{"layer content does not match its diff id", func() error {
			l, err := imagetest.Layer([]imagetest.File{{Path: "a", Data: []byte("a")}})
			if err != nil {
				return err
			}
			_, err = r.Images().ensureLayer(ctx, l, "sha256:"+strings.Repeat("0", 64), "test", nil)
			return err
		}, ErrDigestMismatch, "digest mismatch"},
		{"garbage archive", func() error { _, err := r.Images().Import(ctx, filepath.Join(dir, "garbage.tar"), nil); return err }, ErrBadArchive, "bad image archive"},
		{"empty archive", func() error { _, err := r.Images().Import(ctx, filepath.Join(dir, "empty-tar.tar"), nil); return err }, ErrBadArchive, "neither manifest.json"},
		{"truncated archive", func() error { _, err := r.Images().Import(ctx, filepath.Join(dir, "truncated.tar"), nil); return err }, ErrBadArchive, "bad image archive"},
		{"corrupt layer", func() error { _, err := r.Images().Import(ctx, filepath.Join(dir, "flipped.tar"), nil); return err }, ErrBadArchive, "layer"},
		{"start with a missing image", func() error {
			if err := r.StartPod(ctx, PodConfig{Name: "noimg"}); err != nil {
				return err
			}
			_, err := r.StartContainer(ctx, "noimg", ContainerConfig{Name: "c", Image: "x.local/none:1"})
			return err
		}, ErrImageNotPresent, "image not present"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if err == nil {
				t.Fatal("want an error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			t.Logf("error: %v", err)
		})
	}
	// Nothing partial is left in the layer store.
	ents, _ := os.ReadDir(filepath.Join(cfg.Root, "layers"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("partial layer left: %s", e.Name())
		}
	}
}

type bufferWriter struct {
	header http.Header
	code   int
	buf    bytes.Buffer
}

func (b *bufferWriter) Header() http.Header         { return b.header }
func (b *bufferWriter) Write(p []byte) (int, error) { return b.buf.Write(p) }
func (b *bufferWriter) WriteHeader(c int)           { b.code = c }

func emptyTar() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.Close()
	return buf.Bytes()
}

// flipLayerByte changes one byte of file content inside the layer of a
// docker-save archive (uncompressed layers), keeping the tar well-formed.
func flipLayerByte(t *testing.T, archive []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(archive))
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if strings.HasSuffix(h.Name, ".tar.gz") || (strings.HasPrefix(h.Name, "sha256:") && h.Size > 100000) {
			b = corruptGzipLayer(t, b)
			h.Size = int64(len(b))
		}
		tw.WriteHeader(h)
		tw.Write(b)
	}
	tw.Close()
	return out.Bytes()
}

// corruptGzipLayer flips a byte deep in the compressed stream.
func corruptGzipLayer(t *testing.T, b []byte) []byte {
	c := append([]byte(nil), b...)
	c[len(c)/2] ^= 0xff
	return c
}

func TestDebianDockerRegistry(t *testing.T) {
	requireRoot(t)
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatal("docker-registry not found: install Debian's docker-registry package")
	}
	bb, _ := testImages(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "store"), addr)
	confPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", confPath)
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	eventually(t, 10*time.Second, "docker-registry listens", func() error {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	ref := addr + "/skiff/busybox:deb"
	if err := imagetest.Push(ref, bb); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	r := openRuntime(t, cfg)
	var phases []string
	if _, err := r.Images().Pull(context.Background(), ref, func(p Progress) { phases = append(phases, p.Phase) }); err != nil {
		t.Fatal(err)
	}
	t.Logf("progress phases: %v", phases)
	runToCompletion(t, r, ref, "echo from debian registry", "from debian registry")
}
