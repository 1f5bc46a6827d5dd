package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/skiff-edge/skiff/containers/internal/atomicfile"
)

// Import loads every image of an archive: a `docker save` tarball or an OCI
// image layout packed in a tar. Images are named by the archive's tags
// (RepoTags, or the org.opencontainers.image.ref.name annotation); an image
// without a name is kept by ID.
func (s *Store) Import(ctx context.Context, path string, progress func(Progress)) ([]Image, error) {
	kind, err := archiveKind(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	var imgs []Image
	switch kind {
	case "docker":
		imgs, err = s.importDocker(ctx, path, progress)
	case "oci":
		imgs, err = s.importOCI(ctx, path, progress)
	}
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	return imgs, nil
}

// archiveKind looks for manifest.json (docker save) or oci-layout at the
// top of the tar. It reads every header (seeking past the content) and
// refuses sparse entries: archive/tar would expand their holes, and a few
// KiB of archive would read as a terabyte of layer (or of OCI blob, which
// importOCI writes out). The rest of an archive holds no more than its
// file's size.
func archiveKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	kind := ""
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && (hdr == nil || !errors.Is(err, tar.ErrInsecurePath)) {
			return "", fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		if isSparse(hdr) {
			return "", fmt.Errorf("%w: entry %q: sparse file", ErrBadArchive, hdr.Name)
		}
		// The first one decides (a docker save of docker 25 has both).
		switch filepath.Clean(hdr.Name) {
		case "oci-layout":
			if kind == "" {
				kind = "oci"
			}
		case "manifest.json":
			if kind == "" {
				kind = "docker"
			}
		}
	}
	if kind == "" {
		return "", fmt.Errorf("%w: neither manifest.json nor oci-layout in the archive", ErrBadArchive)
	}
	return kind, nil
}

func (s *Store) importDocker(ctx context.Context, path string, progress func(Progress)) ([]Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %v", ErrBadArchive, err)
	}
	var out []Image
	for _, d := range m {
		var tag *name.Tag
		var refs []string
		for _, rt := range d.RepoTags {
			t, err := name.NewTag(rt)
			if err != nil {
				return nil, fmt.Errorf("%w: tag %q: %v", ErrBadArchive, rt, err)
			}
			if tag == nil {
				tag = &t
			}
			refs = append(refs, t.Name())
		}
		if tag == nil && len(m) > 1 {
			return nil, fmt.Errorf("%w: untagged image among several", ErrBadArchive)
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		stored, err := s.store(ctx, img, refs, filepath.Base(path), progress)
		if err != nil {
			return nil, wrapArchive(err)
		}
		out = append(out, stored)
	}
	return out, nil
}

// wrapArchive marks content errors of an archive as ErrBadArchive; a full
// disk is not one.
func wrapArchive(err error) error {
	if errors.Is(err, ErrBadArchive) || errors.Is(err, context.Canceled) || errors.Is(err, ErrNoSpace) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrBadArchive, err)
}

func (s *Store) importOCI(ctx context.Context, path string, progress func(Progress)) ([]Image, error) {
	// The layout is unpacked whole, blobs and all: at most the archive's
	// size, since archiveKind refused sparse entries.
	content := filepath.Join(s.root, "content")
	if fi, err := os.Stat(path); err != nil {
		return nil, err
	} else if err := checkFree(content, fi.Size(), s.limits.MinFreeBytes); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(content, ".oci-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := extractPlain(path, tmp); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadArchive, err)
	}
	idx, err := layout.ImageIndexFromPath(tmp)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadArchive, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%w: index.json: %v", ErrBadArchive, err)
	}
	var out []Image
	for _, desc := range im.Manifests {
		var img v1.Image
		switch {
		case desc.MediaType.IsImage():
			img, err = ociImage(idx, desc.Digest)
		case desc.MediaType.IsIndex():
			img, err = platformImage(idx, desc.Digest)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: image %s: %w", ErrBadArchive, desc.Digest, err)
		}
		refs, err := annotatedRefs(desc)
		if err != nil {
			return nil, fmt.Errorf("%w: image %s: %w", ErrBadArchive, desc.Digest, err)
		}
		stored, err := s.store(ctx, img, refs, filepath.Base(path), progress)
		if err != nil {
			return nil, wrapArchive(err)
		}
		out = append(out, stored)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no image in index.json", ErrBadArchive)
	}
	return out, nil
}

// refNameAnnotation names an image of an OCI layout's index.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// annotatedRefs returns the reference that an index entry's ref.name
// annotation gives, normalized; none if it has none or it does not parse.
// A digest reference ("repo@sha256:...") claims content: it must be the
// digest of the entry it annotates (which ociImage and platformImage
// check against the manifest's bytes), else the archive could name other
// content by a digest that deploys pin.
func annotatedRefs(desc v1.Descriptor) ([]string, error) {
	rn := desc.Annotations[refNameAnnotation]
	if rn == "" {
		return nil, nil
	}
	r, err := name.ParseReference(rn)
	if err != nil {
		return nil, nil
	}
	if d, ok := r.(name.Digest); ok && d.DigestStr() != desc.Digest.String() {
		return nil, fmt.Errorf("ref.name %q: %w: it names %s, the manifest is %s", rn, ErrDigestMismatch, d.DigestStr(), desc.Digest)
	}
	return []string{r.Name()}, nil
}

// ociImage returns the image of an index entry, whose manifest must hash
// to the entry's digest (the layout reads it by that name, unchecked).
func ociImage(idx v1.ImageIndex, d v1.Hash) (v1.Image, error) {
	img, err := idx.Image(d)
	if err != nil {
		return nil, err
	}
	if got, err := img.Digest(); err != nil {
		return nil, err
	} else if got != d {
		return nil, fmt.Errorf("manifest: %w (content is %s)", ErrDigestMismatch, got)
	}
	return img, nil
}

// platformImage picks this node's platform from a nested index, whose
// content must hash to its digest d.
func platformImage(idx v1.ImageIndex, d v1.Hash) (v1.Image, error) {
	child, err := idx.ImageIndex(d)
	if err != nil {
		return nil, err
	}
	if got, err := child.Digest(); err != nil {
		return nil, err
	} else if got != d {
		return nil, fmt.Errorf("index: %w (content is %s)", ErrDigestMismatch, got)
	}
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, m := range cm.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
			return ociImage(child, m.Digest)
		}
	}
	return nil, fmt.Errorf("no linux/%s image in index %s", runtime.GOARCH, d)
}

// extractPlain unpacks an archive of regular files and directories (an OCI
// layout) into dir. It writes no more than the archive's size: a sparse
// entry, whose holes would be written out whole, is refused.
func extractPlain(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	left := fi.Size()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil && (hdr == nil || !errors.Is(err, tar.ErrInsecurePath)) {
			return err
		}
		if isSparse(hdr) {
			return fmt.Errorf("entry %q: sparse file", hdr.Name)
		}
		if hdr.Typeflag == tar.TypeReg {
			if hdr.Size > left {
				return fmt.Errorf("entry %q: %s, more than the archive holds", hdr.Name, humanBytes(hdr.Size))
			}
			left -= hdr.Size
		}
		name := filepath.Clean("/" + hdr.Name)
		if strings.Contains(name, "..") {
			return fmt.Errorf("entry %q escapes the archive", hdr.Name)
		}
		p := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			w, err := os.Create(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			w.Close()
			if err != nil {
				return err
			}
		}
	}
}

// importState remembers which dropped archives were imported, by name, size
// and modification time, so that each is imported once.
type importState map[string]string

// ImportDir imports every *.tar archive in Root/images that changed since it
// was last imported. It returns the images and, joined, every failure; a bad
// archive does not stop the others.
func (s *Store) ImportDir(ctx context.Context) ([]Image, error) {
	dir := filepath.Join(s.root, "images")
	statePath := filepath.Join(s.root, "content", "imported.json")
	st := importState{}
	if b, err := os.ReadFile(statePath); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("import dir: %w", err)
	}
	var out []Image
	var errs []error
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".tar") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		stamp := fmt.Sprintf("%d-%d", fi.Size(), fi.ModTime().UnixNano())
		if st[e.Name()] == stamp {
			continue
		}
		imgs, err := s.Import(ctx, filepath.Join(dir, e.Name()), nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("imported image archive", "archive", e.Name(), "images", len(imgs))
		st[e.Name()] = stamp
		out = append(out, imgs...)
	}
	if err := s.saveImported(statePath, st); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// saveImported merges what this ImportDir imported into the record on
// disk, under the index lock, so that a concurrent ImportDir's entries stay.
func (s *Store) saveImported(path string, ours importState) error {
	unlock, err := s.lockIndex()
	if err != nil {
		return err
	}
	defer unlock()
	st := importState{}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	maps.Copy(st, ours)
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}
