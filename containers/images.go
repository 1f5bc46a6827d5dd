package containers

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Image is an image in the store.
type Image struct {
	// ID is the digest of the image config ("sha256:...").
	ID string `json:"id"`
	// Refs are the normalized references that name it.
	Refs []string `json:"refs"`
	// ManifestDigest is the digest of the manifest it came with.
	ManifestDigest string `json:"manifest_digest,omitempty"`
	// Layers are the diff IDs, bottom first.
	Layers []string `json:"layers"`
	// Size is the total uncompressed size of the layers in bytes.
	Size int64 `json:"size"`
	// Config is the image's run config (entrypoint, cmd, env, ...).
	Config v1.Config `json:"config"`
	// Created is when the image entered the store.
	Created time.Time `json:"created"`
}

// Progress reports a pull or import as it goes.
type Progress struct {
	// Ref is the image reference pulled, or the archive's file name.
	Ref string
	// Layer is the layer's digest; empty for image-level phases.
	Layer string
	// Phase: "resolve", "download", "exists", "done".
	Phase string
	// Done and Total bytes of the layer (compressed). Total is 0 if unknown.
	Done, Total int64
}

// ImageStore keeps images: their configs in one index file, their layers
// unpacked once per diff ID into Root/layers and shared by all images and
// containers.
type ImageStore struct {
	root      string // Root
	insecure  []string
	log       *slog.Logger
	inUse     func() map[string]bool // layers used by containers
	mu        sync.Mutex             // guards index file reads and writes
	layerMu   sync.Mutex             // guards layerLock
	layerLock map[string]*sync.Mutex // per diff ID, so one unpack at a time
}

func newImageStore(root string, insecure []string, log *slog.Logger, inUse func() map[string]bool) (*ImageStore, error) {
	for _, d := range []string{"images", "content", "layers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	return &ImageStore{root: root, insecure: insecure, log: log, inUse: inUse, layerLock: map[string]*sync.Mutex{}}, nil
}

func (s *ImageStore) indexPath() string { return filepath.Join(s.root, "content", "images.json") }

// LayerDir is where the layer with a diff ID is unpacked.
func (s *ImageStore) LayerDir(diffID string) string {
	return filepath.Join(s.root, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

func (s *ImageStore) load() ([]Image, error) {
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	var imgs []Image
	if err := json.Unmarshal(b, &imgs); err != nil {
		return nil, fmt.Errorf("parse image index: %w", err)
	}
	return imgs, nil
}

func (s *ImageStore) save(imgs []Image) error {
	b, err := json.MarshalIndent(imgs, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.indexPath(), b)
}

// NormalizeRef returns the canonical form of an image reference
// ("busybox" -> "index.docker.io/library/busybox:latest").
func NormalizeRef(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("%q: %w: %v", ref, ErrBadReference, err)
	}
	return r.Name(), nil
}

// List returns every image, sorted by first ref.
func (s *ImageStore) List() ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.load()
	sort.Slice(imgs, func(i, j int) bool { return firstRef(imgs[i]) < firstRef(imgs[j]) })
	return imgs, err
}

func firstRef(i Image) string {
	if len(i.Refs) > 0 {
		return i.Refs[0]
	}
	return i.ID
}

// Get finds an image by reference or ID. It returns ErrImageNotPresent if
// there is none.
func (s *ImageStore) Get(ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.load()
	if err != nil {
		return Image{}, err
	}
	i, err := findImage(imgs, ref)
	if err != nil {
		return Image{}, err
	}
	return imgs[i], nil
}

func findImage(imgs []Image, ref string) (int, error) {
	if strings.HasPrefix(ref, "sha256:") {
		for i, img := range imgs {
			if img.ID == ref {
				return i, nil
			}
		}
		return -1, fmt.Errorf("image %s: %w", ref, ErrImageNotPresent)
	}
	norm, err := NormalizeRef(ref)
	if err != nil {
		return -1, err
	}
	for i, img := range imgs {
		if slices.Contains(img.Refs, norm) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("image %s: %w", ref, ErrImageNotPresent)
}

// Remove drops a reference; an image left without references is removed
// from the index (its layers go at the next GC).
func (s *ImageStore) Remove(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.load()
	if err != nil {
		return err
	}
	i, err := findImage(imgs, ref)
	if err != nil {
		return err
	}
	if strings.HasPrefix(ref, "sha256:") {
		imgs[i].Refs = nil
	} else {
		norm, _ := NormalizeRef(ref)
		imgs[i].Refs = slices.DeleteFunc(imgs[i].Refs, func(r string) bool { return r == norm })
	}
	if len(imgs[i].Refs) == 0 {
		imgs = slices.Delete(imgs, i, i+1)
	}
	return s.save(imgs)
}

// GC removes unpacked layers that no image and no container uses and
// returns their diff IDs.
func (s *ImageStore) GC() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.load()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	if s.inUse != nil {
		keep = s.inUse()
	}
	for _, img := range imgs {
		for _, l := range img.Layers {
			keep[strings.TrimPrefix(l, "sha256:")] = true
		}
	}
	ents, err := os.ReadDir(filepath.Join(s.root, "layers"))
	if err != nil {
		return nil, fmt.Errorf("gc layers: %w", err)
	}
	var removed []string
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		if strings.HasPrefix(e.Name(), ".tmp-") {
			// A stale partial unpack; a live one holds the layer lock,
			// which we cannot see here, so spare recent ones.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		}
		if err := os.RemoveAll(filepath.Join(s.root, "layers", e.Name())); err != nil {
			return removed, fmt.Errorf("gc layer %s: %w", e.Name(), err)
		}
		removed = append(removed, "sha256:"+e.Name())
	}
	return removed, nil
}

// Ensure returns the image if the store has it and pulls it otherwise.
func (s *ImageStore) Ensure(ctx context.Context, ref string, progress func(Progress)) (Image, error) {
	if img, err := s.Get(ref); err == nil {
		return img, nil
	} else if !errors.Is(err, ErrImageNotPresent) {
		return Image{}, err
	}
	return s.Pull(ctx, ref, progress)
}

// Pull fetches an image from its registry, verifies every blob against its
// digest and unpacks the layers the store lacks. Plain HTTP is used for
// loopback registries and those named in InsecureRegistries only. A failed
// pull leaves no partial layer behind; the caller retries.
func (s *ImageStore) Pull(ctx context.Context, ref string, progress func(Progress)) (Image, error) {
	var opts []name.Option
	if r, err := name.ParseReference(ref); err == nil && slices.Contains(s.insecure, r.Context().RegistryStr()) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return Image{}, fmt.Errorf("pull %q: %w: %v", ref, ErrBadReference, err)
	}
	emit(progress, Progress{Ref: ref, Phase: "resolve"})
	tr := &plainHTTPGuard{allowed: s.allowPlain(r.Context().Registry), next: remote.DefaultTransport}
	img, err := remote.Image(r,
		remote.WithContext(ctx),
		remote.WithTransport(tr),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 2}),
	)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return Image{}, fmt.Errorf("pull %s: %w: %w", ref, ErrNotFound, err)
		}
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	out, err := s.store(ctx, img, []string{r.Name()}, ref, progress)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	return out, nil
}

func (s *ImageStore) allowPlain(reg name.Registry) bool {
	if slices.Contains(s.insecure, reg.Name()) {
		return true
	}
	host := reg.RegistryStr()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// plainHTTPGuard refuses plain HTTP to registries that are neither loopback
// nor insecure: go-containerregistry would fall back to HTTP for private
// (RFC 1918) addresses too.
type plainHTTPGuard struct {
	allowed bool
	next    http.RoundTripper
}

func (g *plainHTTPGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.allowed {
		return nil, fmt.Errorf("plain http to %s refused: add it to insecure_registries", req.URL.Host)
	}
	return g.next.RoundTrip(req)
}

func emit(p func(Progress), ev Progress) {
	if p != nil {
		p(ev)
	}
}

// store unpacks an image's missing layers and records it under refs.
func (s *ImageStore) store(ctx context.Context, img v1.Image, refs []string, label string, progress func(Progress)) (Image, error) {
	m, err := img.Manifest()
	if err != nil {
		return Image{}, fmt.Errorf("manifest: %w", err)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("config: %w", err)
	}
	sum := sha256.Sum256(rawCfg)
	id := "sha256:" + hex.EncodeToString(sum[:])
	if m.Config.Digest.String() != id {
		return Image{}, fmt.Errorf("config %s: %w (content is %s)", m.Config.Digest, ErrDigestMismatch, id)
	}
	cfg, err := v1.ParseConfigFile(strings.NewReader(string(rawCfg)))
	if err != nil {
		return Image{}, fmt.Errorf("parse config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, fmt.Errorf("layers: %w", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return Image{}, fmt.Errorf("%d layers but %d diff ids in config: %w", len(layers), len(cfg.RootFS.DiffIDs), ErrBadArchive)
	}
	var size int64
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return Image{}, err
		}
		diffID := cfg.RootFS.DiffIDs[i].String()
		n, err := s.ensureLayer(l, diffID, label, progress)
		if err != nil {
			return Image{}, err
		}
		size += n
	}
	digest, _ := img.Digest()
	out := Image{ID: id, ManifestDigest: digest.String(), Config: cfg.Config, Size: size, Created: time.Now().UTC()}
	for _, d := range cfg.RootFS.DiffIDs {
		out.Layers = append(out.Layers, d.String())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.load()
	if err != nil {
		return Image{}, err
	}
	// A ref names one image: move it from any other image, and drop an
	// image that loses its last ref (its layers go at the next GC).
	// Images stored without a ref (an unnamed archive entry) stay by ID.
	kept := imgs[:0]
	for _, img := range imgs {
		had := len(img.Refs)
		img.Refs = slices.DeleteFunc(img.Refs, func(r string) bool { return slices.Contains(refs, r) })
		if img.ID == id {
			out.Refs, out.Created = img.Refs, img.Created
			continue // replaced by out below
		}
		if had > 0 && len(img.Refs) == 0 {
			continue
		}
		kept = append(kept, img)
	}
	for _, r := range refs {
		if !slices.Contains(out.Refs, r) {
			out.Refs = append(out.Refs, r)
		}
	}
	imgs = append(kept, out)
	if err := s.save(imgs); err != nil {
		return Image{}, err
	}
	emit(progress, Progress{Ref: label, Phase: "done"})
	return out, nil
}

func (s *ImageStore) lockLayer(diffID string) func() {
	s.layerMu.Lock()
	mu, ok := s.layerLock[diffID]
	if !ok {
		mu = &sync.Mutex{}
		s.layerLock[diffID] = mu
	}
	s.layerMu.Unlock()
	mu.Lock()
	return mu.Unlock
}

// ensureLayer unpacks a layer unless its directory exists. The content is
// unpacked into a temporary directory and renamed into place only once its
// diff ID (and, through go-containerregistry, its compressed digest) are
// verified, so a layer directory is always whole.
func (s *ImageStore) ensureLayer(l v1.Layer, diffID, label string, progress func(Progress)) (int64, error) {
	unlock := s.lockLayer(diffID)
	defer unlock()
	dir := s.LayerDir(diffID)
	digest, _ := l.Digest()
	if _, err := os.Stat(dir); err == nil {
		emit(progress, Progress{Ref: label, Layer: digest.String(), Phase: "exists"})
		return dirSize(dir), nil
	}
	total, _ := l.Size()
	rc, err := l.Compressed()
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", digest, err)
	}
	defer rc.Close()
	cr := &countingReader{r: rc, report: func(n int64) {
		emit(progress, Progress{Ref: label, Layer: digest.String(), Phase: "download", Done: n, Total: total})
	}}
	br := bufio.NewReaderSize(cr, 64<<10)
	var ur io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return 0, fmt.Errorf("layer %s: gunzip: %w", digest, err)
		}
		defer gz.Close()
		ur = gz
	}
	h := sha256.New()
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "layers"), ".tmp-")
	if err != nil {
		return 0, err
	}
	n, err := unpackLayer(io.TeeReader(ur, h), tmp)
	if err == nil {
		// Read the tar's trailing padding and the stream's end, which is
		// where the compressed digest is checked.
		_, err = io.Copy(h, ur)
		if err == nil {
			_, err = io.Copy(io.Discard, br)
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return 0, fmt.Errorf("layer %s: %w", digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		os.RemoveAll(tmp)
		return 0, fmt.Errorf("layer %s: diff id %s: %w (content is %s)", digest, diffID, ErrDigestMismatch, got)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return 0, fmt.Errorf("layer %s: %w", digest, err)
	}
	emit(progress, Progress{Ref: label, Layer: digest.String(), Phase: "download", Done: cr.n, Total: total})
	return n, nil
}

type countingReader struct {
	r      io.Reader
	n      int64
	last   int64
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= 1<<20 {
		c.last = c.n
		c.report(c.n)
	}
	return n, err
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// writeFileAtomic writes through a temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
