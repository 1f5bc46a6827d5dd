package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// storeHelperEnv makes the test binary a second process on an image
// store: it stores one image under refs PREFIX-0 .. PREFIX-(N-1), one at a
// time, and exits.
const storeHelperEnv = "SKIFF_IMAGESTORE_HELPER"

type storeHelperArgs struct {
	Root, Prefix string
	N            int
}

func runStoreHelper() {
	var a storeHelperArgs
	err := json.Unmarshal([]byte(os.Getenv(storeHelperEnv)), &a)
	var st *Store
	if err == nil {
		st, err = Open(Config{Root: a.Root, Logger: discardLogger()})
	}
	var img v1.Image
	if err == nil {
		img, err = smallImage("shared")
	}
	for i := 0; err == nil && i < a.N; i++ {
		_, err = st.store(context.Background(), img, []string{fmt.Sprintf("%s-%d", a.Prefix, i)}, "helper", nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "store helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// smallImage is a one-layer image whose content depends on tag.
func smallImage(tag string) (v1.Image, error) {
	l, err := imagetest.Layer([]imagetest.File{{Path: "etc", Dir: true}, {Path: "etc/tag", Data: []byte(tag)}})
	if err != nil {
		return nil, err
	}
	return imagetest.Image(v1.Config{Cmd: []string{"/bin/true"}}, l)
}

// assertNoTemporaries checks that no partial unpack or GC leftover is in
// the layer store.
func assertNoTemporaries(t *testing.T, root string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(root, "layers"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) || strings.HasPrefix(e.Name(), trashPrefix) {
			t.Errorf("left in the layer store: %s", e.Name())
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "content", pendingDir)); len(ents) != 0 {
		t.Errorf("%d pending markers left", len(ents))
	}
}

// TestStoreRefsAcrossProcesses: two processes store refs into one index at
// once; no write is lost.
func TestStoreRefsAcrossProcesses(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	const n = 25
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for p := range 2 {
		args, _ := json.Marshal(storeHelperArgs{Root: root, Prefix: fmt.Sprintf("localhost/p%d/img:x", p), N: n})
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), storeHelperEnv+"="+string(args))
		cmd.Stderr = os.Stderr
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = cmd.Run()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("helpers: %v", err)
	}
	st := openStore(t, Config{Root: root, Logger: discardLogger()})
	for p := range 2 {
		for i := range n {
			ref := fmt.Sprintf("localhost/p%d/img:x-%d", p, i)
			if _, err := st.Get(ref); err != nil {
				t.Errorf("lost: %v", err)
			}
		}
	}
	assertNoTemporaries(t, root)
}

// TestConcurrentStoresUnpackOnce: two stores on one root pull (or import)
// the same image at once; both succeed, and each layer is unpacked by one
// of them and found by the other.
func TestConcurrentStoresUnpackOnce(t *testing.T) {
	requireRoot(t)
	_, dm := testImages(t)
	reg := startRegistry(t)
	archive := filepath.Join(t.TempDir(), "demo.tar")
	if err := imagetest.WriteDockerArchive(archive, "site.local/demo:1", dm); err != nil {
		t.Fatal(err)
	}
	layers, _ := dm.Layers()
	tests := []struct {
		name string
		op   func(st *Store, progress func(Progress)) (Image, error)
	}{
		{"pull", func(st *Store, p func(Progress)) (Image, error) {
			return st.Pull(context.Background(), reg.Addr+"/demo:1", p)
		}},
		{"import", func(st *Store, p func(Progress)) (Image, error) {
			imgs, err := st.Import(context.Background(), archive, p)
			if err != nil {
				return Image{}, err
			}
			return imgs[0], nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			var wg sync.WaitGroup
			var mu sync.Mutex
			exists := map[string]int{}
			downloaders := map[string]map[int]bool{} // layer -> stores that read it
			imgs := make([]Image, 2)
			errs := make([]error, 2)
			for i := range 2 {
				st := openStore(t, cfg)
				wg.Add(1)
				go func() {
					defer wg.Done()
					imgs[i], errs[i] = tt.op(st, func(p Progress) {
						mu.Lock()
						defer mu.Unlock()
						switch p.Phase {
						case "exists":
							exists[p.Layer]++
						case "download":
							if downloaders[p.Layer] == nil {
								downloaders[p.Layer] = map[int]bool{}
							}
							downloaders[p.Layer][i] = true
						}
					})
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if imgs[0].ID != imgs[1].ID {
				t.Errorf("two images: %s, %s", imgs[0].ID, imgs[1].ID)
			}
			if len(exists) != len(layers) {
				t.Errorf("layers found present: %v, want each of the %d layers once (unpacked by the other store)", exists, len(layers))
			}
			for l, n := range exists {
				if n != 1 {
					t.Errorf("layer %s found present %d times", l, n)
				}
			}
			for l, by := range downloaders {
				if len(by) != 1 {
					t.Errorf("layer %s read by %d stores, want one", l, len(by))
				}
			}
			ents, _ := os.ReadDir(filepath.Join(cfg.Root, "layers"))
			if len(ents) != len(layers) {
				t.Errorf("%d entries in the layer store, want %d", len(ents), len(layers))
			}
			assertNoTemporaries(t, cfg.Root)
		})
	}
}

// gatedLayer is a layer whose compressed stream waits for gate before it
// gives its first byte; opened is closed when the stream is opened.
type gatedLayer struct {
	v1.Layer
	opened, gate chan struct{}
}

func (g *gatedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := g.Layer.Compressed()
	close(g.opened)
	return &gatedReader{rc: rc, gate: g.gate}, err
}

type gatedReader struct {
	rc   io.ReadCloser
	gate chan struct{}
}

func (r *gatedReader) Read(p []byte) (int, error) { <-r.gate; return r.rc.Read(p) }
func (r *gatedReader) Close() error               { return r.rc.Close() }

// TestLayerRenameFindsItThere: a layer that appears under its name while we
// unpack it (a process that does not share our lock) is taken as present.
func TestLayerRenameFindsItThere(t *testing.T) {
	requireRoot(t)
	cfg := testConfig(t)
	st := openStore(t, cfg)
	l, err := imagetest.Layer([]imagetest.File{{Path: "bin", Dir: true}, {Path: "bin/x", Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	diffID, _ := l.DiffID()
	g := &gatedLayer{Layer: l, opened: make(chan struct{}), gate: make(chan struct{})}
	done := make(chan error, 1)
	var phases []string
	go func() {
		_, err := st.ensureLayer(context.Background(), g, diffID.String(), "test", func(p Progress) { phases = append(phases, p.Phase) })
		done <- err
	}()
	<-g.opened
	// The other unpacker, done while ours waits.
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(cfg.Root, "other")
	if _, err := unpackLayer(rc, other, Limits{}); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := os.Rename(other, st.LayerDir(diffID.String())); err != nil {
		t.Fatal(err)
	}
	close(g.gate)
	if err := <-done; err != nil {
		t.Fatalf("ensure layer: %v", err)
	}
	if len(phases) == 0 || phases[len(phases)-1] != "exists" {
		t.Errorf("progress %v, want it to end with exists", phases)
	}
	if b, err := os.ReadFile(filepath.Join(st.LayerDir(diffID.String()), "bin", "x")); err != nil || string(b) != "x" {
		t.Errorf("layer content: %q, %v", b, err)
	}
	assertNoTemporaries(t, cfg.Root)
}

// TestGCConcurrentWithPulls: a store collects garbage without pause while
// another pulls, checks and removes an image, again and again: every pull
// succeeds with all its layers there, and GC takes each removed image's
// layers.
func TestGCConcurrentWithPulls(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	ref := reg.Addr + "/demo:1"
	cfg := testConfig(t)
	cfg.LayerGCGrace = -1
	puller, collector := openStore(t, cfg), openStore(t, cfg)
	stop := make(chan struct{})
	gcDone := make(chan error, 1)
	var mu sync.Mutex
	collected := 0
	go func() {
		for {
			select {
			case <-stop:
				gcDone <- nil
				return
			default:
			}
			removed, err := collector.GC()
			if err != nil {
				gcDone <- err
				return
			}
			mu.Lock()
			collected += len(removed)
			mu.Unlock()
		}
	}()
	const rounds = 6
	for i := range rounds {
		img, err := puller.Pull(context.Background(), ref, nil)
		if err != nil {
			t.Fatalf("round %d: pull: %v", i, err)
		}
		for _, l := range img.Layers {
			if !layerPresent(puller.LayerDir(l)) {
				t.Fatalf("round %d: layer %s of the pulled image is gone", i, l)
			}
		}
		if err := puller.Remove(ref); err != nil {
			t.Fatal(err)
		}
		// The next pull unpacks everything again, under the running GC.
		eventually(t, 10*time.Second, "gc takes the removed image's layers", func() error {
			for _, l := range img.Layers {
				if layerPresent(puller.LayerDir(l)) {
					return fmt.Errorf("layer %s still there", l)
				}
			}
			return nil
		})
	}
	close(stop)
	if err := <-gcDone; err != nil {
		t.Fatalf("gc: %v", err)
	}
	if collected < 3*rounds {
		t.Errorf("gc collected %d layers, want at least %d", collected, 3*rounds)
	}
	assertNoTemporaries(t, cfg.Root)
	if ents, _ := os.ReadDir(filepath.Join(cfg.Root, "content", layerLocksDir)); len(ents) != 0 {
		t.Errorf("%d layer lock files left after every layer went", len(ents))
	}
}
