package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// entry is one tar entry of a layer that a test writes as it is, past
// imagetest's checks and cleaning: hostile names, hard links, xattrs.
type entry struct {
	hdr  tar.Header
	data string
}

func file(name, data string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}, data: data}
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target}}
}

// layerTar writes entries as an uncompressed layer tar, in PAX format.
func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarImage is a one-layer image of an uncompressed layer tar, whose
// digests are right: only unpacking can refuse it.
func tarImage(t testing.TB, layer []byte) v1.Image {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagetest.Image(v1.Config{Cmd: []string{"/x"}}, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// storeWithImage returns a store that holds the image localhost/keep:1,
// one layer with the file keep, and that layer's directory.
func storeWithImage(t *testing.T, cfg Config) (*Store, string) {
	t.Helper()
	st := openStore(t, cfg)
	img := tarImage(t, layerTar(t, dir("etc"), file("etc/keep", "keep me\n")))
	kept, err := st.store(context.Background(), img, []string{"localhost/keep:1"}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, st.LayerDir(kept.Layers[0])
}

// assertStoreIntact checks that the image of storeWithImage and its layer
// are whole, and nothing partial is left.
func assertStoreIntact(t *testing.T, st *Store, keptLayer string) {
	t.Helper()
	if fi, err := os.Lstat(filepath.Join(st.root, "layers")); err != nil {
		t.Fatalf("the layers dir is gone: %v", err)
	} else if !fi.IsDir() {
		t.Fatalf("the layers dir is no longer a directory: %v", fi.Mode())
	}
	if _, err := st.Get("localhost/keep:1"); err != nil {
		t.Errorf("the index lost localhost/keep:1: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(keptLayer, "etc", "keep")); err != nil || string(b) != "keep me\n" {
		t.Errorf("the kept layer lost etc/keep: %q, %v", b, err)
	}
	if imgs, _ := st.List(); len(imgs) != 1 {
		t.Errorf("index holds %d images, want the kept one alone", len(imgs))
	}
	assertNoTemporaries(t, st.root)
	ents, _ := os.ReadDir(filepath.Join(st.root, "layers"))
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("layers dir holds %v, want the kept layer alone", names)
	}
}

// TestUnsafeEntriesRefused: whiteouts and opaque markers that name the
// layer dir, its parent or their own directory, or sit under a symlink,
// and entries that climb out of the layer, are refused with an error that
// names the image, the layer and the entry, and the store is left as it
// was. Each hostile entry comes last, after a good one, with the layer's
// digests right: nothing but unpacking can refuse it.
func TestUnsafeEntriesRefused(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries []entry // the last one is refused
		msg     string
	}{
		{"whiteout of dot", []entry{file(".wh..", "")}, "whiteout resolves to the layer dir itself"},
		{"whiteout of dot dot", []entry{file(".wh...", "")}, "whiteout resolves outside the layer dir"},
		{"empty whiteout", []entry{file(".wh.", "")}, "whiteout resolves to the layer dir itself"},
		{"whiteout of dot, absolute", []entry{file("/.wh..", "")}, "whiteout resolves to the layer dir itself"},
		{"whiteout of dot in a dir", []entry{file("a/.wh..", "")}, `whiteout resolves to its own directory "a"`},
		{"whiteout of dot dot in a dir", []entry{file("a/.wh...", "")}, "whiteout resolves to the layer dir itself"},
		{"whiteout climbing out", []entry{file("../.wh.x", "")}, "path climbs out of the layer dir"},
		{"whiteout under a dir climbing out", []entry{file("a/../../.wh.x", "")}, "path climbs out of the layer dir"},
		{"opaque marker of the root", []entry{file(".wh..wh..opq", "")}, "opaque marker resolves to the layer dir itself"},
		{"opaque marker of the root, dotted", []entry{file("./a/../.wh..wh..opq", "")}, "opaque marker resolves to the layer dir itself"},
		{"whiteout under a symlink to the root", []entry{symlink("up", "../.."), file("up/.wh.etc", "")}, `whiteout's directory "up" goes through a symlink`},
		{"opaque marker under a symlink", []entry{dir("b"), symlink("a", "/b"), file("a/.wh..wh..opq", "")}, `whiteout's directory "a" goes through a symlink`},
		{"file climbing out", []entry{file("../escaped", "")}, "path climbs out of the layer dir"},
		{"hard link out of the layer", []entry{hardlink("x", "../../content/images.json")}, `hard link to "../../content/images.json", outside the layer dir`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			st, kept := storeWithImage(t, cfg)
			bad := tt.entries[len(tt.entries)-1].hdr.Name
			entries := append([]entry{file("ok", "ok\n")}, tt.entries...)
			img := tarImage(t, layerTar(t, entries...))
			_, err := st.store(context.Background(), img, []string{"localhost/x:1"}, "test", nil)
			if err == nil {
				t.Fatal("stored; want the layer refused")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrUnsafeLayer) {
				t.Errorf("error is not ErrUnsafeLayer")
			}
			want := fmt.Sprintf("entry %q: %s", bad, tt.msg)
			if !strings.HasPrefix(err.Error(), "image localhost/x:1: layer sha256:") || !strings.Contains(err.Error(), want) {
				t.Errorf("error does not name the image, the layer and %s", want)
			}
			assertStoreIntact(t, st, kept)
		})
	}
}

// TestWhiteoutsAndOpaqueDirs: the whiteouts and opaque markers of real
// layers become overlayfs ones; AUFS metadata is skipped.
func TestWhiteoutsAndOpaqueDirs(t *testing.T) {
	requireRoot(t)
	st := openStore(t, testConfig(t))
	img := tarImage(t, layerTar(t,
		dir("a"), file("a/keep", "k"),
		file("a/.wh.gone", ""),
		file("b/.wh..wh..opq", ""),
		file("/abs/.wh.x", ""),
		file(".wh..wh.plnk/123", "aufs"),
		file("c/.wh..wh.aufs", ""),
		file("a/.wh.keep", ""), // replaces a/keep, an entry of this layer
	))
	stored, err := st.store(context.Background(), img, []string{"localhost/wh:1"}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	root := st.LayerDir(stored.Layers[0])
	for _, p := range []string{"a/gone", "abs/x", "a/keep"} {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &s); err != nil || s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
			t.Errorf("%s is not a 0/0 character device: %v %+v", p, err, s)
		}
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(root, "b"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("b is not opaque: %q, %v", buf[:n], err)
	}
	for _, p := range []string{".wh..wh.plnk", "c/.wh..wh.aufs"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("AUFS metadata %s unpacked: %v", p, err)
		}
	}
}

// TestEntriesStayInside: symlinks the layer makes, absolute or climbing,
// are followed as in a chroot of the layer; nothing lands outside it.
func TestEntriesStayInside(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(t.TempDir(), "layer")
	out := filepath.Dir(root)
	_, err := unpackLayer(bytes.NewReader(layerTar(t,
		symlink("up", "../.."), file("up/escaped", "x"),
		symlink("abs", out), file("abs/escaped2", "x"),
		symlink("hostetc", "/etc"), file("hostetc/skiff-unpack-test", "x"),
		file("f", "data"), hardlink("l", "/up/../f"),
		symlink("s", "/f"), file("s", "replaces the link, not its target"),
	)), root, Limits{MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(out, "escaped"), filepath.Join(out, "escaped2"), "/etc/skiff-unpack-test"} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s written outside the layer: %v", p, err)
		}
	}
	for p, want := range map[string]string{"escaped": "x", filepath.Join(out, "escaped2"): "x", "etc/skiff-unpack-test": "x", "l": "data", "f": "data", "s": "replaces the link, not its target"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
			t.Errorf("%s in the layer: %q, %v; want %q", p, b, err, want)
		}
	}
}

// rawHeader is a tar header block written by hand, for what archive/tar
// will not write: sparse files. gnu makes a GNU header (magic "ustar  ").
func rawHeader(name string, typeflag byte, size int64, gnu bool) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	octal(b[100:108], 0o644)
	octal(b[108:116], 0)
	octal(b[116:124], 0)
	octal(b[124:136], size)
	octal(b[136:148], 1700000000)
	b[156] = typeflag
	if gnu {
		copy(b[257:265], "ustar  \x00")
	} else {
		copy(b[257:265], "ustar\x0000")
	}
	return b
}

// octal writes v into a numeric field: octal digits, or GNU's base-256
// when they do not fit.
func octal(f []byte, v int64) {
	if s := fmt.Sprintf("%0*o", len(f)-1, v); len(s) < len(f) {
		copy(f, s)
		return
	}
	for i := len(f) - 1; i > 0; i-- {
		f[i] = byte(v)
		v >>= 8
	}
	f[0] = 0x80
}

func checksum(b []byte) {
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

func pad(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }

// paxSparseTar is a layer of one GNU PAX 1.0 sparse file "big" of size
// bytes, a hole but for its last 512 (a few KiB of tar).
func paxSparseTar(size int64) []byte {
	var recs string
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "big"}, {"GNU.sparse.realsize", fmt.Sprint(size)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		recs += fmt.Sprint(n) + rec
	}
	x := rawHeader("PaxHeaders/big", 'x', int64(len(recs)), false)
	checksum(x)
	sparseMap := pad([]byte(fmt.Sprintf("1\n%d\n512\n", size-512)))
	h := rawHeader("GNUSparseFile.0/big", '0', int64(len(sparseMap)+512), false)
	checksum(h)
	out := append(x, pad([]byte(recs))...)
	out = append(out, h...)
	out = append(out, sparseMap...)
	out = append(out, bytes.Repeat([]byte("x"), 512)...)
	return append(out, make([]byte, 1024)...)
}

// gnuSparseTar is a layer of one old-GNU sparse file (type 'S') "big" of
// size bytes, a hole but for its last 512.
func gnuSparseTar(size int64) []byte {
	h := rawHeader("big", 'S', 512, true)
	octal(h[386:398], size-512) // the one sparse entry: offset, length
	octal(h[398:410], 512)
	octal(h[483:495], size) // real size
	checksum(h)
	out := append(h, bytes.Repeat([]byte("x"), 512)...)
	return append(out, make([]byte, 1024)...)
}

// TestSparseBombRefused: a few KiB of tar that archive/tar would expand
// into a 1 TiB file are refused at the entry's header, in a layer and in
// an archive (whose OCI blobs import writes out).
func TestSparseBombRefused(t *testing.T) {
	requireRoot(t)
	const tib = 1 << 40
	// The readers expand both formats: check that the tars are what they
	// say, so that the refusals below are not of broken tars.
	for name, b := range map[string][]byte{"pax": paxSparseTar(tib), "gnu": gnuSparseTar(tib)} {
		hdr, err := tar.NewReader(bytes.NewReader(b)).Next()
		if err != nil || hdr.Name != "big" || hdr.Size != tib {
			t.Fatalf("%s sparse tar of %d bytes: %v %+v", name, len(b), err, hdr)
		}
	}
	for _, tt := range []struct {
		name  string
		layer []byte
	}{{"pax sparse", paxSparseTar(tib)}, {"old gnu sparse", gnuSparseTar(tib)}} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			st, kept := storeWithImage(t, cfg)
			_, err := st.store(context.Background(), tarImage(t, tt.layer), []string{"localhost/x:1"}, "test", nil)
			if err == nil {
				t.Fatal("stored; want the layer refused")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrUnsafeLayer) || !strings.Contains(err.Error(), `entry "big": sparse file`) {
				t.Errorf("error is not ErrUnsafeLayer naming the sparse entry")
			}
			assertStoreIntact(t, st, kept)
		})
	}
	t.Run("in an oci archive", func(t *testing.T) {
		cfg := testConfig(t)
		st, kept := storeWithImage(t, cfg)
		archive := filepath.Join(t.TempDir(), "bomb.tar")
		b := append(layerTar(t, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`))[:1024], paxSparseTar(tib)...)
		if err := os.WriteFile(archive, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := st.Import(context.Background(), archive, nil)
		if err == nil {
			t.Fatal("imported; want the archive refused")
		}
		t.Logf("error: %v", err)
		if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), "sparse file") {
			t.Errorf("error is not ErrBadArchive naming the sparse entry")
		}
		assertStoreIntact(t, st, kept)
	})
}

// TestLayerXattrsAllowList: file capabilities and user.* attributes are
// applied; trusted.* (overlayfs's own), user.overlay.* and the other
// security.* are not.
func TestLayerXattrsAllowList(t *testing.T) {
	requireRoot(t)
	// A v2 file capability: cap_net_raw permitted and effective.
	fcap := string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	l, err := imagetest.Layer([]imagetest.File{
		{Path: "d", Dir: true, Xattrs: map[string]string{"trusted.overlay.opaque": "y", "user.d": "dir"}},
		{Path: "f", Data: []byte("f"), Xattrs: map[string]string{
			"user.x": "1", "trusted.x": "1", "trusted.overlay.redirect": "/etc", "user.overlay.opaque": "y",
			"security.selinux": "system_u:object_r:shadow_t:s0", "security.capability": fcap,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagetest.Image(v1.Config{}, l)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	st := openStore(t, cfg)
	stored, err := st.store(context.Background(), img, []string{"localhost/xattr:1"}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	root := st.LayerDir(stored.Layers[0])
	get := func(p, attr string) (string, error) {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(root, p), attr, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	for _, a := range []struct{ path, attr, want string }{{"d", "user.d", "dir"}, {"f", "user.x", "1"}, {"f", "security.capability", fcap}} {
		if got, err := get(a.path, a.attr); err != nil || got != a.want {
			t.Errorf("%s %s = %q, %v; want %q", a.path, a.attr, got, err, a.want)
		}
	}
	for _, a := range []struct{ path, attr string }{{"d", "trusted.overlay.opaque"}, {"f", "trusted.x"}, {"f", "trusted.overlay.redirect"}, {"f", "user.overlay.opaque"}, {"f", "security.selinux"}} {
		if got, err := get(a.path, a.attr); !errors.Is(err, unix.ENODATA) {
			t.Errorf("%s %s applied: %q, %v", a.path, a.attr, got, err)
		}
	}
}
