package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/sys/mountinfo"
	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

func TestMain(m *testing.M) {
	Init()
	if os.Getenv(helperEnv) != "" {
		runHelper()
		return
	}
	code := m.Run()
	if demoImages != nil {
		demoImages.Close()
	}
	os.Exit(code)
}

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

// testConfig returns a config with its own temp dirs and cgroup parent.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	dir := t.TempDir()
	cfg.Root = filepath.Join(dir, "data")
	cfg.StateDir = filepath.Join(dir, "run")
	cfg.CgroupParent = "skiff-test-" + randSuffix()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openRuntime opens a runtime and, at cleanup, removes everything it made
// and checks that nothing is left.
func openRuntime(t testing.TB, cfg Config) *Runtime {
	t.Helper()
	r, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open runtime: %v", err)
	}
	t.Cleanup(func() {
		r.Close()
		if err := Cleanup(cfg); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		assertNothingLeft(t, cfg)
	})
	return r
}

func assertNothingLeft(t testing.TB, cfg Config) {
	t.Helper()
	mnts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return !strings.HasPrefix(m.Mountpoint, cfg.Root) && !strings.HasPrefix(m.Mountpoint, cfg.StateDir), false
	})
	if err != nil {
		t.Errorf("read mounts: %v", err)
	}
	for _, m := range mnts {
		t.Errorf("mount left behind: %s", m.Mountpoint)
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/" + cfg.CgroupParent)
	for _, c := range cg {
		t.Errorf("cgroup left behind: %s", c)
	}
	if _, err := os.Stat(cfg.StateDir); err == nil {
		t.Errorf("state dir left behind: %s", cfg.StateDir)
	}
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
	imgOnce.Do(func() { demoImages, imgErr = imagetest.BuildDemo("..") })
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

// waitEvent waits for an event of pod/name.
func waitEvent(t testing.TB, r *Runtime, pod, name string, timeout time.Duration) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-r.Events():
			if ev.Status.Pod == pod && ev.Status.Name == name {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event of %s/%s within %s", pod, name, timeout)
		}
	}
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

func readLog(t testing.TB, r *Runtime, pod, name string, opts LogOptions) string {
	t.Helper()
	rc, err := r.Logs(context.Background(), pod, name, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return string(b)
}
