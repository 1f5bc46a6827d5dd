package images

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Whiteout markers of the OCI image layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	// whiteoutMeta starts the names AUFS kept its own metadata under
	// (.wh..wh.plnk, .wh..wh.aufs); old images still carry them, and,
	// like docker, we skip them.
	whiteoutMeta = ".wh..wh."
)

// layerStats is what unpacking a layer made.
type layerStats struct {
	bytes   int64 // file content written
	entries int   // tar entries read
	// skippedXattrs are the extended attributes that were not applied
	// (see allowedXattr), by name, sorted.
	skippedXattrs []string
}

// unpackLayer extracts one uncompressed layer tar into dir, which becomes
// an overlayfs lower directory: a whiteout ".wh.NAME" becomes the overlay
// whiteout (a 0/0 character device NAME) and an opaque marker sets
// trusted.overlay.opaque on its directory, so that overlayfs hides what the
// layers below hold. dir is made if missing; it must be the caller's alone
// while it unpacks.
//
// Nothing is ever written outside dir, nor is dir itself replaced: every
// entry's path is resolved within dir (through the symlinks the layer
// itself made, as a chroot would), names that climb out of it ("../x") are
// refused, and so are whiteouts that would name dir, its parent or their
// own directory, and whiteouts and opaque markers under a symlink. Sparse
// files are refused; only file capabilities and user.* extended attributes
// are applied. The layer is held to lim (see Limits): entries, declared and
// streamed bytes, free space. The whole stream is read, the padding past
// the tar's end included, so that a caller's digest covers it.
//
// An error names the entry it is about; a refused layer's error is
// ErrUnsafeLayer, ErrLayerTooLarge or ErrNoSpace (errors.Is). dir is then
// partial: the caller removes it.
func unpackLayer(r io.Reader, dir string, lim Limits) (layerStats, error) {
	lim = lim.withDefaults()
	u := &unpacker{root: filepath.Clean(dir), lim: lim, buf: make([]byte, 256<<10), skipped: map[string]bool{}}
	if err := os.MkdirAll(u.root, 0o755); err != nil {
		return u.stats(), err
	}
	if lim.MinFreeBytes >= 0 {
		u.space = newSpaceGuard(u.root, lim.MinFreeBytes)
	}
	cr := &capReader{r: r, max: lim.MaxLayerBytes}
	tr := tar.NewReader(cr)
	last := ""
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		// tar.ErrInsecurePath (GODEBUG=tarinsecurepath=0) comes with its
		// header: entry judges names itself.
		if err != nil && (hdr == nil || !errors.Is(err, tar.ErrInsecurePath)) {
			return u.stats(), &entryError{entry: last, after: true, err: readErr(err)}
		}
		last = hdr.Name
		if err := u.entry(tr, hdr); err != nil {
			return u.stats(), &entryError{entry: hdr.Name, err: err}
		}
	}
	if _, err := io.CopyBuffer(io.Discard, cr, u.buf); err != nil {
		return u.stats(), &entryError{entry: last, after: true, err: readErr(err)}
	}
	return u.stats(), nil
}

// readErr wraps an error of the layer stream, unless it is a refusal
// (capReader's), which says it all.
func readErr(err error) error {
	var r *refusal
	if errors.As(err, &r) {
		return err
	}
	return fmt.Errorf("read layer tar: %w", err)
}

// unpacker is one layer's unpacking.
type unpacker struct {
	root     string // the layer directory, clean
	lim      Limits // with its defaults
	space    *spaceGuard
	buf      []byte
	entries  int
	declared int64 // the data sizes that entries declared so far
	written  int64 // file content written
	skipped  map[string]bool
}

func (u *unpacker) stats() layerStats {
	s := layerStats{bytes: u.written, entries: u.entries}
	for k := range u.skipped {
		s.skippedXattrs = append(s.skippedXattrs, k)
	}
	slices.Sort(s.skippedXattrs)
	return s
}

// entry checks and makes one entry of the layer.
func (u *unpacker) entry(tr *tar.Reader, hdr *tar.Header) error {
	u.entries++
	if u.entries > u.lim.MaxLayerEntries {
		return refuse(ErrLayerTooLarge, "more than the %d entries a layer may have", u.lim.MaxLayerEntries)
	}
	if isSparse(hdr) {
		return refuse(ErrUnsafeLayer, "sparse file (image layers have none; its holes would be written out whole)")
	}
	// Count what the entry declares before any of it is read or written:
	// a 1 TiB file is refused at its header.
	if size := dataSize(hdr); size > u.lim.MaxLayerBytes-u.declared {
		return refuse(ErrLayerTooLarge, "%s more would take the layer past the %s cap", humanBytes(size), humanBytes(u.lim.MaxLayerBytes))
	} else if size > 0 {
		u.declared += size
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return nil // pax global headers and the like make no file
	}
	rel, ok := localName(hdr.Name)
	if !ok {
		return refuse(ErrUnsafeLayer, "path climbs out of the layer dir")
	}
	if rel == "." {
		if hdr.Typeflag == tar.TypeDir {
			return nil // the root: overlayfs takes its attributes from the upper dir
		}
		return refuse(ErrUnsafeLayer, "names the layer dir itself")
	}
	dir, base := filepath.Dir(rel), filepath.Base(rel)
	if isAUFSMeta(dir) || (strings.HasPrefix(base, whiteoutMeta) && base != whiteoutOpaque) {
		return nil
	}
	switch {
	case base == whiteoutOpaque:
		return u.opaque(dir)
	case strings.HasPrefix(base, whiteoutPrefix):
		return u.whiteout(dir, strings.TrimPrefix(base, whiteoutPrefix))
	}
	parent, err := securejoin.SecureJoin(u.root, dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	return u.create(tr, hdr, filepath.Join(parent, base))
}

// localName returns an entry's path relative to the layer root, clean.
// Absolute names are taken from the root, as tar and docker take them;
// names that climb out of it ("../x", "a/../../x") are refused (!ok).
func localName(name string) (rel string, ok bool) {
	rel = strings.TrimLeft(name, "/")
	if rel == "" {
		return ".", true
	}
	if !filepath.IsLocal(rel) {
		return "", false
	}
	return filepath.Clean(rel), true
}

// isAUFSMeta reports whether a directory is, or is under, AUFS metadata.
func isAUFSMeta(dir string) bool {
	for c := range strings.SplitSeq(dir, "/") {
		if strings.HasPrefix(c, whiteoutMeta) {
			return true
		}
	}
	return false
}

// isSparse reports whether an entry is a sparse file, in the old GNU
// format or in GNU's PAX formats (archive/tar expands both on read).
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// dataSize is the size of an entry's data as the tar reader reads it: none
// for the types that only have a header.
func dataSize(hdr *tar.Header) int64 {
	switch hdr.Typeflag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return 0
	}
	return hdr.Size
}

// whiteout makes the overlay whiteout of name in dir (relative to the
// root). name must be an entry's: "", "." and ".." would make the
// whiteout's target its own directory, the layer dir or what is outside.
func (u *unpacker) whiteout(dir, name string) error {
	if name == "" || name == "." || name == ".." {
		switch target := filepath.Join(dir, name); {
		case target == ".":
			return refuse(ErrUnsafeLayer, "whiteout resolves to the layer dir itself")
		case !filepath.IsLocal(target):
			return refuse(ErrUnsafeLayer, "whiteout resolves outside the layer dir")
		default:
			return refuse(ErrUnsafeLayer, "whiteout resolves to its own directory %q, not to an entry of it", target)
		}
	}
	parent, err := u.whiteoutDir(dir)
	if err != nil {
		return err
	}
	target := filepath.Join(parent, name)
	if _, err := os.Lstat(target); err == nil {
		// An entry of this layer: the whiteout takes its place.
		if err := os.RemoveAll(target); err != nil {
			return fmt.Errorf("whiteout: %w", err)
		}
	}
	if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("whiteout: mknod: %w", err)
	}
	return nil
}

// opaque marks dir (relative to the root) opaque.
func (u *unpacker) opaque(dir string) error {
	if dir == "." {
		// Overlayfs never reads the opaque mark of a layer's root.
		return refuse(ErrUnsafeLayer, "opaque marker resolves to the layer dir itself")
	}
	parent, err := u.whiteoutDir(dir)
	if err != nil {
		return err
	}
	if err := unix.Lsetxattr(parent, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return fmt.Errorf("opaque dir: %w", err)
	}
	return nil
}

// whiteoutDir makes and returns the directory that a whiteout or an opaque
// marker is in. Its path may not go through a symlink: what a whiteout
// hides is in the lower layers, where this layer's symlinks are not.
func (u *unpacker) whiteoutDir(dir string) (string, error) {
	resolved, err := securejoin.SecureJoin(u.root, dir)
	if err != nil {
		return "", err
	}
	if resolved != filepath.Join(u.root, dir) {
		return "", refuse(ErrUnsafeLayer, "whiteout's directory %q goes through a symlink", dir)
	}
	if err := os.MkdirAll(resolved, 0o755); err != nil {
		return "", err
	}
	return resolved, nil
}

// create makes the entry at path (within the root, its parent there).
func (u *unpacker) create(tr *tar.Reader, hdr *tar.Header, path string) error {
	// An entry made earlier by this layer is replaced, except a directory
	// by a directory, which keeps what it holds.
	if fi, err := os.Lstat(path); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
	}
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.reserve(1); err != nil {
			return err
		}
		if err := os.Mkdir(path, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
	case tar.TypeReg:
		if err := u.reserve(hdr.Size); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		n, err := io.CopyBuffer(f, tr, u.buf)
		u.written += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return readErr(err)
		}
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, path); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := u.linkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		if err := os.Link(target, path); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := uint32(unix.S_IFCHR)
		if hdr.Typeflag == tar.TypeBlock {
			kind = unix.S_IFBLK
		} else if hdr.Typeflag == tar.TypeFifo {
			kind = unix.S_IFIFO
		}
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := unix.Mknod(path, kind|mode, dev); err != nil {
			return err
		}
	}
	return u.meta(hdr, path, mode)
}

// reserve accounts for a file of n bytes (a directory: 1) about to be
// written, in whole blocks, against the free space to keep.
func (u *unpacker) reserve(n int64) error {
	if u.space == nil {
		return nil
	}
	return u.space.take(u.space.blocks(n))
}

// linkTarget resolves a hard link's target within the root.
func (u *unpacker) linkTarget(name string) (string, error) {
	rel, ok := localName(name)
	switch {
	case !ok:
		return "", refuse(ErrUnsafeLayer, "hard link to %q, outside the layer dir", name)
	case rel == ".":
		return "", refuse(ErrUnsafeLayer, "hard link to the layer dir itself")
	}
	dir, err := securejoin.SecureJoin(u.root, filepath.Dir(rel))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(rel)), nil
}

// meta applies an entry's owner, mode, extended attributes and times. None
// of it follows a symlink.
func (u *unpacker) meta(hdr *tar.Header, path string, mode uint32) error {
	if err := os.Lchown(path, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink && hdr.Typeflag != tar.TypeLink {
		if err := unix.Chmod(path, mode); err != nil {
			return err
		}
	}
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if !allowedXattr(attr) {
			u.skipped[attr] = true
			continue
		}
		// Best effort: some file systems refuse some namespaces, and no
		// file system takes user.* on a symlink.
		_ = unix.Lsetxattr(path, attr, []byte(v), 0)
	}
	if hdr.Typeflag != tar.TypeDir && hdr.Typeflag != tar.TypeLink {
		ts := []unix.Timespec{unix.NsecToTimespec(hdr.AccessTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		if hdr.AccessTime.IsZero() {
			ts[0] = ts[1]
		}
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// allowedXattr reports whether a layer may set an extended attribute:
// file capabilities (security.capability) and user attributes. Never
// trusted.*, which would steer overlayfs from a lower layer
// (trusted.overlay.opaque, .redirect, .metacopy), nor the other security.*
// (the host's LSM labels), nor user.overlay.*, which overlayfs reads in
// its place when mounted with userxattr.
func allowedXattr(name string) bool {
	if name == "security.capability" {
		return true
	}
	return strings.HasPrefix(name, "user.") && !strings.HasPrefix(name, "user.overlay.")
}
