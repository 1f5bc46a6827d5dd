package imagetest_test

import (
	"log"
	"os"
	"path/filepath"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// Build the demo server and pack it as an OCI archive that `skiff images
// import` (or a drop into <data-dir>/images/) loads on an air-gapped node.
func Example() {
	dir, err := os.MkdirTemp("", "demo-image-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "demo")
	// Run from the module root; "../../.." from this package's directory.
	if err := imagetest.BuildGo("../../..", "./examples/demo", bin); err != nil {
		log.Fatal(err)
	}
	img, err := imagetest.BinaryImage(bin, "-listen", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	if err := imagetest.WriteOCIArchive(filepath.Join(dir, "demo.tar"), "skiff.local/demo:1", img); err != nil {
		log.Fatal(err)
	}
}
