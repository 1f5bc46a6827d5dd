package images

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// bombLayer is a gzip layer made as it is read, by gen writing its
// uncompressed tar, up to bombMax bytes. Its digests are made up: a bomb
// has to be stopped before any digest can be checked.
type bombLayer struct {
	gen      func(w io.Writer) error
	produced atomic.Int64 // uncompressed bytes gen wrote
}

// bombMax ends a bomb that no cap stopped, so that the test ends.
const bombMax = 1 << 30

func (b *bombLayer) Digest() (v1.Hash, error) {
	return v1.NewHash("sha256:" + strings.Repeat("b", 64))
}
func (b *bombLayer) DiffID() (v1.Hash, error) {
	return v1.NewHash("sha256:" + strings.Repeat("d", 64))
}
func (b *bombLayer) Size() (int64, error)                { return 4096, nil }
func (b *bombLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
func (b *bombLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("a bomb is only read compressed")
}

func (b *bombLayer) Compressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		gz, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		err := b.gen(&countWriter{w: gz, n: &b.produced, max: bombMax})
		if err == nil {
			err = gz.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// countWriter counts what goes through it and ends the stream at max.
type countWriter struct {
	w   io.Writer
	n   *atomic.Int64
	max int64
}

var errBombEnd = errors.New("bomb ended: nothing stopped it")

func (c *countWriter) Write(p []byte) (int, error) {
	if c.n.Load()+int64(len(p)) > c.max {
		return 0, errBombEnd
	}
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// zeros writes n zero bytes.
func zeros(w io.Writer, n int64) error {
	_, err := io.CopyN(w, zeroReader{}, n)
	return err
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestLayerBombsStopAtTheCap: gzip bombs in every part of a layer's tar
// (one huge file, many files, tar headers, padding after the tar's end,
// many entries) are cut at the cap, having read little more than it, and
// the store is left as it was.
func TestLayerBombsStopAtTheCap(t *testing.T) {
	requireRoot(t)
	const capBytes = 32 << 20
	tests := []struct {
		name string
		gen  func(w io.Writer) error
		msg  string
	}{
		{"one file of 1 TiB", func(w io.Writer) error {
			tw := tar.NewWriter(w)
			if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}); err != nil {
				return err
			}
			return zeros(tw, 1<<40)
		}, `entry "big": 1 TiB more would take the layer past the 32 MiB cap`},
		{"files of 1 MiB without end", func(w io.Writer) error {
			tw := tar.NewWriter(w)
			for i := 0; ; i++ {
				if err := tw.WriteHeader(&tar.Header{Name: "f" + strings.Repeat("x", i%50) + string(rune('a'+i%26)), Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 20}); err != nil {
					return err
				}
				if err := zeros(tw, 1<<20); err != nil {
					return err
				}
			}
		}, "the 32 MiB cap"}, // the headers take the stream past it first
		{"headers without end", func(w io.Writer) error {
			tw := tar.NewWriter(w)
			big := strings.Repeat("p", 900<<10)
			for i := 0; ; i++ {
				h := &tar.Header{Name: "h", Typeflag: tar.TypeReg, Mode: 0o644, PAXRecords: map[string]string{"comment": big}}
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
			}
		}, "uncompressed layer passes the 32 MiB cap"},
		{"padding without end", func(w io.Writer) error {
			tw := tar.NewWriter(w)
			if err := tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return err
			}
			if err := tw.Close(); err != nil {
				return err
			}
			return zeros(w, 1<<40)
		}, `after entry "d/": uncompressed layer passes the 32 MiB cap`},
		{"entries without end", func(w io.Writer) error {
			tw := tar.NewWriter(w)
			for {
				if err := tw.WriteHeader(&tar.Header{Name: "e", Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
					return err
				}
			}
		}, "more than the 1000 entries a layer may have"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Limits = Limits{MaxLayerBytes: capBytes, MaxLayerEntries: 1000}
			st, kept := storeWithImage(t, cfg)
			bomb := &bombLayer{gen: tt.gen}
			img, err := imagetest.Image(v1.Config{}, bomb)
			if err != nil {
				t.Fatal(err)
			}
			_, err = st.store(context.Background(), img, []string{"localhost/bomb:1"}, "test", nil)
			if err == nil {
				t.Fatal("stored; want the layer refused")
			}
			t.Logf("error: %v (the bomb made %d bytes)", err, bomb.produced.Load())
			if !errors.Is(err, ErrLayerTooLarge) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error is not ErrLayerTooLarge saying %q", tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "image localhost/bomb:1: layer sha256:bbbb") {
				t.Errorf("error does not name the image and the layer")
			}
			// What was read past the cap: the pipe, gzip's and bufio's
			// buffers, one tar header.
			if n := bomb.produced.Load(); n > capBytes+8<<20 {
				t.Errorf("the bomb made %d bytes before it was stopped; want at most the %d-byte cap and a little", n, capBytes)
			}
			assertStoreIntact(t, st, kept)
		})
	}
}

// TestCompressedSizeCapped: a layer whose declared compressed size is past
// the cap is refused before it is read.
func TestCompressedSizeCapped(t *testing.T) {
	requireRoot(t)
	cfg := testConfig(t)
	cfg.Limits.MaxLayerBytes = 1024
	st := openStore(t, cfg)
	// 2 MiB of random bytes: past the cap and the 1 MiB of slack that
	// compressedCap gives, compressed.
	data := make([]byte, 2<<20)
	rand.Read(data)
	l, err := imagetest.Layer([]imagetest.File{{Path: "r", Data: data}})
	if err != nil {
		t.Fatal(err)
	}
	size, _ := l.Size()
	_, err = st.ensureLayer(context.Background(), l, "sha256:"+strings.Repeat("0", 64), "test", nil)
	if !errors.Is(err, ErrLayerTooLarge) || !strings.Contains(err.Error(), "compressed, past the") {
		t.Fatalf("layer of %d bytes compressed: %v, want ErrLayerTooLarge", size, err)
	}
}

// TestFreeSpaceReserve: a layer that would leave less than MinFreeBytes
// free is refused, before (its declared size) and while (its files) it is
// unpacked; the store is left as it was. The store is on a tmpfs of its
// own, whose free space nothing else changes.
func TestFreeSpaceReserve(t *testing.T) {
	requireRoot(t)
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", cfg.Root, "tmpfs", 0, "size=24m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(cfg.Root, unix.MNT_DETACH) })
	cfg.Limits.MinFreeBytes = -1
	st, kept := storeWithImage(t, cfg)
	t.Run("declared", func(t *testing.T) {
		st.limits.MinFreeBytes = 24 << 20 // nothing may be written
		img := tarImage(t, layerTar(t, file("f", "data")))
		_, err := st.store(context.Background(), img, []string{"localhost/x:1"}, "test", nil)
		t.Logf("error: %v", err)
		if !errors.Is(err, ErrNoSpace) {
			t.Errorf("error is not ErrNoSpace")
		}
		assertStoreIntact(t, st, kept)
	})
	t.Run("while unpacking", func(t *testing.T) {
		// The declared size (compressed zeros) passes, the file does not.
		st.limits.MinFreeBytes = 8 << 20
		img := tarImage(t, layerTar(t, file("small", "data"), entry{hdr: tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 20 << 20}, data: string(make([]byte, 20<<20))}))
		_, err := st.store(context.Background(), img, []string{"localhost/x:1"}, "test", nil)
		t.Logf("error: %v", err)
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), `entry "big": 20 MiB more would leave less than 8 MiB free`) {
			t.Errorf("error is not ErrNoSpace naming the entry big")
		}
		assertStoreIntact(t, st, kept)
	})
}

// TestLimitsConfig: zero limits take their defaults, negative caps are
// refused.
func TestLimitsConfig(t *testing.T) {
	root := t.TempDir()
	c := Config{Root: root}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Limits != (Limits{MaxLayerBytes: 4 << 30, MaxLayerEntries: 500000, MinFreeBytes: 1 << 30}) {
		t.Errorf("default limits %+v", c.Limits)
	}
	for _, l := range []Limits{{MaxLayerBytes: -1}, {MaxLayerEntries: -1}} {
		c := Config{Root: root, Limits: l}
		if err := c.Validate(); err == nil {
			t.Errorf("limits %+v: no error", l)
		}
	}
	c = Config{Root: root, Limits: Limits{MinFreeBytes: -1}}
	if err := c.Validate(); err != nil || c.Limits.MinFreeBytes != -1 {
		t.Errorf("a negative reserve (none): %v, %+v", err, c.Limits)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 512: "512 B", 1024: "1 KiB", 1536: "1.5 KiB", 32 << 20: "32 MiB", 4 << 30: "4 GiB", 1 << 40: "1 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

var _ v1.Layer = (*bombLayer)(nil)
