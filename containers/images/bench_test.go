package images

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// BenchmarkPull3Layers pulls the 3-layer demo image from the in-process
// loopback registry into an empty store, unpacking included.
func BenchmarkPull3Layers(b *testing.B) {
	requireRoot(b)
	reg := startRegistry(b)
	ref := reg.Addr + "/demo:1"
	var size int64
	for range b.N {
		b.StopTimer()
		cfg := testConfig(b)
		s, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		img, err := s.Pull(context.Background(), ref, nil)
		if err != nil {
			b.Fatal(err)
		}
		size = img.Size
	}
	b.SetBytes(size)
}

// BenchmarkUnpack unpacks an uncompressed 64 MiB layer (64 files of 1 MiB
// of random bytes and 2048 small files) into a fresh directory.
func BenchmarkUnpack(b *testing.B) {
	requireRoot(b)
	var files []imagetest.File
	for i := range 64 {
		data := make([]byte, 1<<20)
		rand.Read(data)
		files = append(files, imagetest.File{Path: fmt.Sprintf("big/%02d", i), Data: data})
	}
	for i := range 2048 {
		files = append(files, imagetest.File{Path: fmt.Sprintf("small/%d/%d", i/64, i), Data: []byte("small file\n")})
	}
	tarball, err := imagetest.LayerTar(files)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(tarball)))
	root := b.TempDir()
	b.ResetTimer()
	for i := range b.N {
		dir := filepath.Join(root, fmt.Sprint(i))
		if _, err := unpackLayer(bytes.NewReader(tarball), dir, Limits{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}

// BenchmarkStoreIndexed stores an image whose layers are unpacked already
// under a new ref: the index update alone (with its locks).
func BenchmarkStoreIndexed(b *testing.B) {
	requireRoot(b)
	bb, _ := testImages(b)
	s, err := Open(testConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.store(ctx, bb, []string{"localhost/bench:0"}, "bench", nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.store(ctx, bb, []string{fmt.Sprintf("localhost/bench:%d", i%8)}, "bench", nil); err != nil {
			b.Fatal(err)
		}
	}
}
