// Command mkimage packages the demo server (examples/demo) into an image
// archive that skiff imports: it builds the server as a static binary
// (CGO_ENABLED=0), stacks it on busybox-static (so that `skiff exec` has a
// shell) and writes an OCI-layout archive (or, with -format docker, a
// `docker save` tarball) tagged localhost/skiff-demo:1, the image
// examples/web.toml runs.
//
// Run it from the repository:
//
//	go run ./examples/mkimage -o /var/lib/skiff/images/skiff-demo.tar
//
// A node imports every <data-dir>/images/*.tar when skiff starts; `skiff
// images import FILE` imports one at any time.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// demoPkg is the demo server's package, built from the module mkimage runs in.
const demoPkg = "github.com/skiff-edge/skiff/examples/demo"

func main() {
	out := flag.String("o", "skiff-demo.tar", "archive to write")
	ref := flag.String("ref", "localhost/skiff-demo:1", "image reference to tag the archive with")
	format := flag.String("format", "oci", "archive format: oci (OCI image layout in a tar) or docker (docker save)")
	flag.Parse()
	if err := run(*out, *ref, *format); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func run(out, ref, format string) error {
	if format != "oci" && format != "docker" {
		return fmt.Errorf("format %q: want oci or docker", format)
	}
	dir, err := os.MkdirTemp("", "skiff-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "demo")
	if err := imagetest.BuildGo("", demoPkg, bin); err != nil {
		return err
	}
	img, err := imagetest.BinaryImage(bin, "-listen", ":8080")
	if err != nil {
		return fmt.Errorf("build image: %w", err)
	}
	// Write next to the target and rename, so that a node never imports a
	// half-written archive.
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(out), ".tmp-"+filepath.Base(out))
	if format == "docker" {
		err = imagetest.WriteDockerArchive(tmp, ref, img)
	} else {
		err = imagetest.WriteOCIArchive(tmp, ref, img)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s (%s archive of %s, manifest %s)\n", out, format, ref, d)
	return nil
}
