package images

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

func TestMain(m *testing.M) {
	if os.Getenv(storeHelperEnv) != "" {
		runStoreHelper()
		return
	}
	code := m.Run()
	if demoImages != nil {
		demoImages.Close()
	}
	os.Exit(code)
}

// requireRoot skips a test that needs root (unpacking chowns files and
// makes whiteout devices), and fails it in CI, which runs as root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (CI runs as root)")
	}
	t.Skip("needs root")
}

func randSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig returns a config with its own temp root.
func testConfig(t testing.TB) Config {
	cfg := Config{Root: filepath.Join(t.TempDir(), "data"), Logger: discardLogger()}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// openStore opens an image store on cfg for a test.
func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var (
	imgOnce    sync.Once
	demoImages *imagetest.Demo
	imgErr     error
)

// testImages builds the busybox image (one layer) and the demo image
// (busybox below the demo server: three layers) once per test binary;
// TestMain removes them.
func testImages(t testing.TB) (bb, dm v1.Image) {
	t.Helper()
	imgOnce.Do(func() { demoImages, imgErr = imagetest.BuildDemo("../..") })
	if imgErr != nil {
		t.Fatalf("build test images: %v", imgErr)
	}
	return demoImages.Busybox, demoImages.Demo
}

// startRegistry starts an in-process registry with the test images pushed
// as REG/busybox:1 and REG/demo:1.
func startRegistry(t testing.TB) *imagetest.Registry {
	t.Helper()
	testImages(t)
	reg, err := imagetest.StartRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if err := demoImages.Push(reg.Addr); err != nil {
		t.Fatal(err)
	}
	return reg
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		<-tick.C
	}
}
