package imagetest

import (
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Demo is the pair of images most tests run: busybox (one layer) and the
// demo server of examples/demo on top of busybox (three layers), whose
// entrypoint listens on :8080.
type Demo struct {
	Busybox, Demo v1.Image
	// Bin is the demo server binary the Demo image holds.
	Bin string
	dir string
}

// BuildDemo builds the demo server from root, the module's root directory,
// into a new temporary directory and makes both images. Close removes the
// directory.
func BuildDemo(root string) (*Demo, error) {
	dir, err := os.MkdirTemp("", "skiff-images-")
	if err != nil {
		return nil, err
	}
	d := &Demo{Bin: filepath.Join(dir, "demo"), dir: dir}
	if d.Busybox, err = BusyboxImage(); err == nil {
		if err = BuildGo(root, "./examples/demo", d.Bin); err == nil {
			d.Demo, err = BinaryImage(d.Bin, "-listen", ":8080")
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return d, nil
}

// Push pushes both images to the registry at addr as ADDR/busybox:1 and
// ADDR/demo:1.
func (d *Demo) Push(addr string) error {
	for ref, img := range map[string]v1.Image{addr + "/busybox:1": d.Busybox, addr + "/demo:1": d.Demo} {
		if err := Push(ref, img); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
	}
	return nil
}

// Close removes the directory that holds the demo binary.
func (d *Demo) Close() error { return os.RemoveAll(d.dir) }

// DemoRef is the name DemoArchive gives the demo server image.
const DemoRef = "localhost/skiff-demo:1"

// DemoArchive builds the demo server of examples/demo from root, the
// module's root directory, and writes its image (busybox below it, no
// arguments: it listens on its default address) as an OCI archive named
// DemoRef at path, for `skiff images import`. It returns the path of the
// demo server binary, left beside the archive.
func DemoArchive(root, path string) (bin string, err error) {
	bin = path + ".bin"
	if err := BuildGo(root, "./examples/demo", bin); err != nil {
		return "", err
	}
	img, err := BinaryImage(bin)
	if err != nil {
		return "", err
	}
	return bin, WriteOCIArchive(path, DemoRef, img)
}
