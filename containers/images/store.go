package images

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
	"github.com/skiff-edge/skiff/containers/internal/atomicfile"
	"golang.org/x/sys/unix"
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

// Store keeps images: their configs in one index file, their layers
// unpacked once per diff ID into Root/layers and shared by all images and
// containers. Any number of stores, in one process or several (a node's
// agent and `skiff images`), may work on one Root at once: see storelock.go.
type Store struct {
	root     string // Config.Root
	insecure []string
	log      *slog.Logger
	gcGrace  time.Duration
	// inUse returns the layers (hex diff IDs) under containers, which GC
	// spares even when their image was removed (Config.InUse).
	inUse  func() (map[string]bool, error)
	limits Limits     // Config.Limits, with their defaults
	mu     sync.Mutex // serialises this store's index locks (see lockIndex)
}

// Open opens (or creates) the store of cfg.Root. It imports nothing by
// itself: ImportDir imports the archives dropped into Root/images when the
// caller asks.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("image store config: %w", err)
	}
	for _, d := range []string{"images", "content", "layers", filepath.Join("content", layerLocksDir), filepath.Join("content", pendingDir)} {
		if err := os.MkdirAll(filepath.Join(cfg.Root, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	return &Store{root: cfg.Root, insecure: cfg.InsecureRegistries, log: cfg.Logger, gcGrace: cfg.LayerGCGrace, inUse: cfg.InUse, limits: cfg.Limits}, nil
}

func (s *Store) indexPath() string { return filepath.Join(s.root, "content", "images.json") }

// LayerDir is where the layer with a diff ID is unpacked.
func (s *Store) LayerDir(diffID string) string {
	return filepath.Join(s.root, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

func (s *Store) load() ([]Image, error) {
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

func (s *Store) save(imgs []Image) error {
	b, err := json.MarshalIndent(imgs, "", " ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.indexPath(), b)
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

// List returns every image, sorted by first ref. Reads take no lock: the
// index is only ever replaced whole, by a rename.
func (s *Store) List() ([]Image, error) {
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
func (s *Store) Get(ref string) (Image, error) {
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
func (s *Store) Remove(ref string) error {
	unlock, err := s.lockIndex()
	if err != nil {
		return err
	}
	defer unlock()
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

// Ensure returns the image if the store has it and pulls it otherwise.
func (s *Store) Ensure(ctx context.Context, ref string, progress func(Progress)) (Image, error) {
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
func (s *Store) Pull(ctx context.Context, ref string, progress func(Progress)) (Image, error) {
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
		return Image{}, err // it names the image
	}
	return out, nil
}

func (s *Store) allowPlain(reg name.Registry) bool {
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

// store unpacks an image's missing layers and records it under refs. Its
// errors name the image: by its first ref, or by its manifest's digest.
func (s *Store) store(ctx context.Context, img v1.Image, refs []string, label string, progress func(Progress)) (Image, error) {
	out, err := s.storeImage(ctx, img, refs, label, progress)
	if err != nil {
		name := "(unnamed)"
		if len(refs) > 0 {
			name = refs[0]
		} else if d, derr := img.Digest(); derr == nil {
			name = d.String()
		}
		return Image{}, fmt.Errorf("image %s: %w", name, err)
	}
	return out, nil
}

func (s *Store) storeImage(ctx context.Context, img v1.Image, refs []string, label string, progress func(Progress)) (Image, error) {
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
	var diffIDs []string
	for _, d := range cfg.RootFS.DiffIDs {
		if d.Algorithm != "sha256" || !isLayerName(d.Hex) {
			return Image{}, fmt.Errorf("diff id %q: %w", d, ErrBadArchive)
		}
		diffIDs = append(diffIDs, d.String())
	}
	// From here until the image is in the index, GC spares its layers.
	release, err := s.markPending(diffIDs)
	if err != nil {
		return Image{}, err
	}
	defer release()
	var size int64
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return Image{}, err
		}
		n, err := s.ensureLayer(ctx, l, diffIDs[i], label, progress)
		if err != nil {
			return Image{}, err
		}
		size += n
	}
	digest, _ := img.Digest()
	out := Image{ID: id, ManifestDigest: digest.String(), Config: cfg.Config, Size: size, Created: time.Now().UTC(), Layers: diffIDs}
	// Re-read under the lock: another process may have written it since.
	unlock, err := s.lockIndex()
	if err != nil {
		return Image{}, err
	}
	defer unlock()
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

// ensureLayer unpacks a layer unless its directory exists. The content is
// unpacked into a temporary directory and renamed into place only once its
// diff ID (and, through go-containerregistry, its compressed digest) are
// verified, so a layer directory is always whole. The layer's lock makes a
// second store (or process) wait and then find the layer; should two unpack
// it anyway, the second rename finds the directory there, which, being
// addressed by its content and only ever made whole, is the same layer.
// The caller holds a pending marker that lists the layer.
func (s *Store) ensureLayer(ctx context.Context, l v1.Layer, diffID, label string, progress func(Progress)) (int64, error) {
	digest, _ := l.Digest()
	unlock, err := s.lockLayer(ctx, diffID)
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", digest, err)
	}
	defer unlock()
	dir := s.LayerDir(diffID)
	if layerPresent(dir) {
		emit(progress, Progress{Ref: label, Layer: digest.String(), Phase: "exists"})
		return dirSize(dir), nil
	}
	total, _ := l.Size()
	// The declared (compressed) size is checked against the cap and the
	// free space before a byte is read; the streams are held to the cap
	// as they are read (countingReader, then unpackLayer).
	maxCompressed := compressedCap(s.limits.MaxLayerBytes)
	if total > maxCompressed {
		return 0, fmt.Errorf("layer %s: %w", digest, refuse(ErrLayerTooLarge, "declares %s compressed, past the %s cap", humanBytes(total), humanBytes(s.limits.MaxLayerBytes)))
	}
	layers := filepath.Join(s.root, "layers")
	if err := checkFree(layers, total, s.limits.MinFreeBytes); err != nil {
		return 0, fmt.Errorf("layer %s: %w", digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", digest, err)
	}
	defer rc.Close()
	cr := &countingReader{r: rc, max: maxCompressed, report: func(n int64) {
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
	// The name carries the diff ID: GC tells a live unpack from a dead
	// one's leftovers by the pending markers.
	tmp, err := os.MkdirTemp(layers, tmpPrefix+strings.TrimPrefix(diffID, "sha256:")+"-")
	if err != nil {
		return 0, err
	}
	// unpackLayer reads the uncompressed stream to its end (the tar's
	// padding included); read the compressed one to its end too, which is
	// where its digest is checked.
	stats, err := unpackLayer(io.TeeReader(ur, h), tmp, s.limits)
	if err == nil {
		_, err = io.Copy(io.Discard, br)
	}
	if len(stats.skippedXattrs) > 0 {
		s.log.Debug("layer xattrs not applied", "layer", digest.String(), "xattrs", stats.skippedXattrs)
	}
	n := stats.bytes
	if err != nil {
		os.RemoveAll(tmp)
		return 0, fmt.Errorf("layer %s: %w", digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		os.RemoveAll(tmp)
		return 0, fmt.Errorf("layer %s: diff id %s: %w (content is %s)", digest, diffID, ErrDigestMismatch, got)
	}
	// The mtime says when the layer was unpacked; GC's grace counts from it.
	now := time.Now()
	err = os.Chmod(tmp, 0o755)
	if err == nil {
		err = os.Chtimes(tmp, now, now)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return 0, fmt.Errorf("layer %s: %w", digest, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if (errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY)) && layerPresent(dir) {
			emit(progress, Progress{Ref: label, Layer: digest.String(), Phase: "exists"})
			return n, nil
		}
		return 0, fmt.Errorf("layer %s: %w", digest, err)
	}
	emit(progress, Progress{Ref: label, Layer: digest.String(), Phase: "download", Done: cr.n, Total: total})
	return n, nil
}

// layerPresent reports whether a layer's directory is there. Being there
// is being whole: see ensureLayer and GC.
func layerPresent(dir string) bool {
	fi, err := os.Lstat(dir)
	return err == nil && fi.IsDir()
}

// countingReader reports a compressed layer stream's progress and fails
// once more than max bytes came through.
type countingReader struct {
	r      io.Reader
	n      int64
	max    int64
	last   int64
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, refuse(ErrLayerTooLarge, "compressed layer passes %s, more than any layer within the cap takes", humanBytes(c.max))
	}
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
