package images

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// fuzzCanary is where the seeds' absolute symlinks point: a path outside
// the layer that unpacking must never make.
const fuzzCanary = "/tmp/skiff-fuzz-unpack-canary"

// FuzzUnpack feeds arbitrary bytes, as a layer tar, to the unpacker. The
// layer dir is outer/layers/l, beside files of the test (outer/sentinel,
// outer/sib/file) that the seeds aim at through "..", symlinks, hard links
// and whiteouts, and the seeds' absolute symlinks point at fuzzCanary.
// Whatever the unpacker makes of its input, nothing outside the layer dir
// changes, the layer dir stays a directory, and nothing panics. The
// input's header checksums are mended first (withChecksums): else nearly
// every mutation of a header would only meet archive/tar's checksum check.
//
//	go test -run='^$' -fuzz=FuzzUnpack -fuzztime=60s ./containers/images
func FuzzUnpack(f *testing.F) {
	requireRoot(f)
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	// One tree for all the inputs of a process, planted afresh for each
	// (so that an input that broke it does not fail the next ones): each
	// input unpacks into outer/layers/l, removed after it.
	outer := f.TempDir()
	plant := func(t testing.TB) {
		for p, content := range map[string]string{"sentinel": "sentinel", "sib/file": "sibling", "layers/other/f": "another layer"} {
			os.RemoveAll(filepath.Join(outer, p))
			if err := os.MkdirAll(filepath.Join(outer, filepath.Dir(p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outer, p), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	plant(f)
	layer := filepath.Join(outer, "layers", "l")
	before := snapshot(f, outer, layer)
	f.Fuzz(func(t *testing.T, data []byte) {
		plant(t)
		defer os.RemoveAll(layer)
		_, err := unpackLayer(bytes.NewReader(withChecksums(data)), layer, Limits{MaxLayerBytes: 4 << 20, MaxLayerEntries: 512, MinFreeBytes: -1})
		if fi, lerr := os.Lstat(layer); lerr != nil {
			t.Fatalf("the layer dir is gone: %v (unpack: %v)", lerr, err)
		} else if !fi.IsDir() {
			t.Fatalf("the layer dir is no longer a directory: %v (unpack: %v)", fi.Mode(), err)
		}
		after := snapshot(t, outer, layer)
		for p, was := range before {
			if now, ok := after[p]; !ok {
				t.Errorf("%s removed (unpack: %v)", p, err)
			} else if now != was {
				t.Errorf("%s changed: %q, was %q (unpack: %v)", p, now, was, err)
			}
		}
		for p, now := range after {
			if _, ok := before[p]; !ok {
				t.Errorf("%s made outside the layer: %q (unpack: %v)", p, now, err)
			}
		}
		if _, err := os.Lstat(fuzzCanary); !errors.Is(err, fs.ErrNotExist) {
			os.RemoveAll(fuzzCanary)
			t.Errorf("%s made: %v", fuzzCanary, err)
		}
	})
}

// snapshot describes every file under root but those under skip: type,
// mode, owner, links and content or link target.
func snapshot(t testing.TB, root, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v links %d owner %d:%d", fi.Mode(), st.Nlink, st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		if fi.IsDir() {
			// A directory's times change as its entries do; those are
			// compared one by one.
			desc = fmt.Sprintf("%v owner %d:%d", fi.Mode(), st.Uid, st.Gid)
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fuzzSeeds are layers real and hostile: whiteouts and opaque markers,
// escapes through "..", symlinks (relative, absolute, chained), hard
// links, sparse files, devices, xattrs.
func fuzzSeeds(f *testing.F) [][]byte {
	good, err := imagetest.LayerTar([]imagetest.File{
		{Path: "bin", Dir: true}, {Path: "bin/sh", Data: []byte("#!"), Mode: 0o755},
		{Path: "bin/ls", Symlink: "sh"}, {Path: "etc/passwd", Data: []byte("root:x:0:0::/:/bin/sh\n")},
		imagetest.Whiteout("var/gone"), imagetest.Opaque("opt"),
		{Path: "d", Dir: true, Xattrs: map[string]string{"user.a": "1", "trusted.overlay.opaque": "y"}},
	})
	if err != nil {
		f.Fatal(err)
	}
	dev := entry{hdr: tarHeader("dev/null", '3', 0o666)}
	dev.hdr.Devmajor, dev.hdr.Devminor = 1, 3
	seeds := [][]byte{
		good,
		layerTar(f, file(".wh..", "")),
		layerTar(f, file(".wh...", "")),
		layerTar(f, file("a/.wh...", "")),
		layerTar(f, file("../.wh.l", "")),
		layerTar(f, file("../../sentinel", "overwritten")),
		layerTar(f, symlink("up", "../.."), file("up/sentinel", "overwritten"), file("up/.wh.sentinel", ""), file("up/sib/.wh..wh..opq", "")),
		layerTar(f, symlink("up", "../../sib"), symlink("up2", "up"), file("up2/file", "overwritten"), dir("up2/x")),
		layerTar(f, hardlink("h", "../../sentinel"), hardlink("h2", "/../../sib/file")),
		layerTar(f, symlink("c", fuzzCanary), file("c/x", "canary"), symlink("d", fuzzCanary+"/x"), file("d", "over the link")),
		layerTar(f, file("f", "data"), hardlink("l", "f"), symlink("s", "f"), file("s", "replaces the link")),
		layerTar(f, dir("a"), file("a/f", "x"), file("a/.wh.f", ""), file(".wh.a", ""), file("a", "file over whiteout")),
		layerTar(f, dev, entry{hdr: tarHeader("fifo", '6', 0o644)}),
		paxSparseTar(1 << 20),
		gnuSparseTar(1 << 20),
	}
	// archive/tar takes a stream that ends without the two zero blocks
	// of the end marker: the smaller the input, the faster the fuzzer
	// minimizes what it finds.
	for i, s := range seeds {
		seeds[i] = bytes.TrimRight(s, "\x00")
		seeds[i] = seeds[i][:(len(seeds[i])+511)/512*512]
	}
	return seeds
}

func tarHeader(name string, typeflag byte, mode int64) tar.Header {
	return tar.Header{Name: name, Typeflag: typeflag, Mode: mode}
}

// withChecksums returns a copy of data, read as tar blocks, with the
// checksum of every header (each block where a header is due) set right.
func withChecksums(data []byte) []byte {
	b := bytes.Clone(data)
	for off := 0; off+512 <= len(b); {
		blk := b[off : off+512]
		off += 512
		if bytes.Equal(blk, make([]byte, 512)) {
			continue
		}
		checksum(blk)
		var size int64
		switch blk[156] {
		case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		default:
			size = headerSize(blk[124:136])
		}
		if size < 0 || size > int64(len(b)) {
			break
		}
		off += int((size + 511) / 512 * 512)
	}
	return b
}

// headerSize parses a tar size field: octal, or GNU's base-256; -1 if it
// is neither.
func headerSize(f []byte) int64 {
	if f[0]&0x80 != 0 {
		var n int64
		for _, c := range f[1:] {
			if n > 1<<48 {
				return -1
			}
			n = n<<8 | int64(c)
		}
		return n
	}
	s := strings.Trim(string(f), " \x00")
	n, err := strconv.ParseInt(s, 8, 64)
	if err != nil {
		return -1
	}
	return n
}
