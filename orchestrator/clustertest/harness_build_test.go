package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// DemoRef is the image of examples/web.toml and DemoManifest.
const DemoRef = imagetest.DemoRef

// binaries are built once per test binary.
type binaries struct {
	dir     string
	skiff   string
	demoTar string
	// demoBin is the demo server binary that the demo image holds.
	demoBin string
	// listenTCPFlag: `skiff server` still has --listen-tcp (the TCP API is
	// opt-in until the cluster wiring serves it by default).
	listenTCPFlag bool
}

var (
	buildOnce sync.Once
	bin       binaries
	buildErr  error
)

// build builds skiff and the demo image archive once; the files stay in a
// temp dir until Teardown (see its doc).
func build(t testing.TB) binaries {
	t.Helper()
	buildOnce.Do(func() { buildErr = doBuild() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

func doBuild() error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "skiff-clustertest-bin-")
	if err != nil {
		return err
	}
	bin.dir = dir
	bin.skiff = filepath.Join(dir, "skiff")
	// -tags seccomp, as every skiff build: without it pods with the
	// default seccomp profile refuse to start.
	cmd := exec.Command("go", "build", "-tags", "seccomp", "-o", bin.skiff, "./cmd/skiff")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -tags seccomp ./cmd/skiff (needs libseccomp-dev): %w\n%s", err, out)
	}
	bin.demoTar = filepath.Join(dir, "skiff-demo.tar")
	if bin.demoBin, err = imagetest.DemoArchive(root, bin.demoTar); err != nil {
		return err
	}
	out, err := exec.Command(bin.skiff, "server", "--help").CombinedOutput()
	if err != nil {
		return fmt.Errorf("skiff server --help: %w\n%s", err, out)
	}
	bin.listenTCPFlag = strings.Contains(string(out), "--listen-tcp")
	return nil
}

// Teardown removes the built binaries; call it from TestMain after m.Run.
func Teardown() {
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
}

// Skiff is the path of the skiff binary the harness built.
func Skiff(t testing.TB) string { return build(t).skiff }

// moduleRoot finds the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("clustertest: no go.mod above the working directory")
		}
		dir = parent
	}
}
