package images

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

	"github.com/skiff-edge/skiff/containers/images/imagetest"
	"golang.org/x/sys/unix"
)

func TestListRemoveGC(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	cfg := testConfig(t)
	cfg.LayerGCGrace = -1
	st := openStore(t, cfg)
	ctx := context.Background()
	bbRef, demoRef := reg.Addr+"/busybox:1", reg.Addr+"/demo:1"
	// Pulled in the reverse order of their refs: List sorts.
	for _, ref := range []string{demoRef, bbRef} {
		if _, err := st.Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	list, err := st.List()
	if err != nil || len(list) != 2 || list[0].Refs[0] != bbRef || list[1].Refs[0] != demoRef {
		t.Fatalf("list: %v %+v", err, list)
	}
	if err := st.Remove(demoRef); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(demoRef); !errors.Is(err, ErrImageNotPresent) {
		t.Fatalf("removed image: %v", err)
	}
	removed, err := st.GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("gc removed %v, want the demo image's 2 own layers", removed)
	}
	// The busybox layer, the demo image's bottom one, stays whole.
	bb, err := st.Get(bbRef)
	if err != nil {
		t.Fatal(err)
	}
	assertBusybox(t, st, bb)
	if err := st.Remove(reg.Addr + "/nope:1"); !errors.Is(err, ErrImageNotPresent) {
		t.Errorf("remove missing: %v", err)
	}
}

// assertBusybox checks that img is the one-layer busybox image with its
// layer unpacked whole: the binary and the applet links.
func assertBusybox(t *testing.T, st *Store, img Image) {
	t.Helper()
	if len(img.Layers) != 1 {
		t.Fatalf("busybox image has %d layers, want 1", len(img.Layers))
	}
	dir := st.LayerDir(img.Layers[0])
	want, err := os.ReadFile(imagetest.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "bin", "busybox")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("bin/busybox of the layer: %d bytes (%v), want %d", len(got), err, len(want))
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "sh")); err != nil {
		t.Errorf("bin/sh of the layer: %v", err)
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
	st := openStore(t, cfg)
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
		{"bad reference", func() error { _, err := st.Pull(ctx, "UPPER/Case::x", nil); return err }, ErrBadReference, "bad image reference"},
		{"missing image", func() error { _, err := st.Pull(ctx, reg.Addr+"/nothere:1", nil); return err }, ErrNotFound, "not found"},
		{"registry gone", func() error { _, err := st.Pull(ctx, gone+"/busybox:1", nil); return err }, nil, "connection refused"},
		{"registry goes away mid-pull", func() error { _, err := st.Pull(ctx, cut.Addr+"/busybox:1", nil); return err }, nil, "layer sha256:"},
		{"layer content does not match its diff id", func() error {
			l, err := imagetest.Layer([]imagetest.File{{Path: "a", Data: []byte("a")}})
			if err != nil {
				return err
			}
			_, err = st.ensureLayer(ctx, l, "sha256:"+strings.Repeat("0", 64), "test", nil)
			return err
		}, ErrDigestMismatch, "digest mismatch"},
		{"garbage archive", func() error { _, err := st.Import(ctx, filepath.Join(dir, "garbage.tar"), nil); return err }, ErrBadArchive, "bad image archive"},
		{"empty archive", func() error { _, err := st.Import(ctx, filepath.Join(dir, "empty-tar.tar"), nil); return err }, ErrBadArchive, "neither manifest.json"},
		{"truncated archive", func() error { _, err := st.Import(ctx, filepath.Join(dir, "truncated.tar"), nil); return err }, ErrBadArchive, "bad image archive"},
		{"corrupt layer", func() error { _, err := st.Import(ctx, filepath.Join(dir, "flipped.tar"), nil); return err }, ErrBadArchive, "layer"},
		{"get a missing image", func() error { _, err := st.Get("x.local/none:1"); return err }, ErrImageNotPresent, "image not present"},
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
	st := openStore(t, testConfig(t))
	var phases []string
	img, err := st.Pull(context.Background(), ref, func(p Progress) { phases = append(phases, p.Phase) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("progress phases: %v", phases)
	if len(phases) == 0 || phases[len(phases)-1] != "done" {
		t.Errorf("progress phases %v, want them to end with done", phases)
	}
	assertBusybox(t, st, img)
}
