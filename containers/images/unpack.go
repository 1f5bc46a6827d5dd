package images

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Whiteout markers of the OCI image layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// unpackLayer extracts one uncompressed layer tar into dir, which becomes an
// overlayfs lower directory: a whiteout ".wh.NAME" becomes the overlay
// whiteout (a 0/0 character device NAME) and an opaque marker sets
// trusted.overlay.opaque on its directory, so that overlayfs hides what the
// layers below hold. Paths never escape dir, even through symlinks the layer
// itself made. It returns the number of bytes of file content written.
func unpackLayer(r io.Reader, dir string) (int64, error) {
	tr := tar.NewReader(r)
	buf := make([]byte, 256<<10)
	var total int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("read layer tar: %w", err)
		}
		name := filepath.Clean("/" + hdr.Name)
		if name == "/" {
			continue
		}
		parent, err := securejoin.SecureJoin(dir, filepath.Dir(name))
		if err != nil {
			return total, fmt.Errorf("layer entry %s: %w", hdr.Name, err)
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return total, fmt.Errorf("layer entry %s: %w", hdr.Name, err)
		}
		base := filepath.Base(name)
		if base == whiteoutOpaque {
			if err := unix.Setxattr(parent, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				return total, fmt.Errorf("opaque dir %s: %w", filepath.Dir(name), err)
			}
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			target := filepath.Join(parent, strings.TrimPrefix(base, whiteoutPrefix))
			_ = os.RemoveAll(target)
			if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
				return total, fmt.Errorf("whiteout %s: %w", name, err)
			}
			continue
		}
		path := filepath.Join(parent, base)
		if fi, err := os.Lstat(path); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(path); err != nil {
				return total, fmt.Errorf("replace %s: %w", name, err)
			}
		}
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(path, 0o755); err != nil && !os.IsExist(err) {
				return total, fmt.Errorf("mkdir %s: %w", name, err)
			}
		case tar.TypeReg, tar.TypeRegA:
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return total, fmt.Errorf("create %s: %w", name, err)
			}
			n, err := io.CopyBuffer(f, tr, buf)
			total += n
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return total, fmt.Errorf("write %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, path); err != nil {
				return total, fmt.Errorf("symlink %s: %w", name, err)
			}
		case tar.TypeLink:
			ln := filepath.Clean("/" + hdr.Linkname)
			tdir, err := securejoin.SecureJoin(dir, filepath.Dir(ln))
			if err != nil {
				return total, fmt.Errorf("hardlink %s: %w", name, err)
			}
			if err := os.Link(filepath.Join(tdir, filepath.Base(ln)), path); err != nil {
				return total, fmt.Errorf("hardlink %s: %w", name, err)
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
				return total, fmt.Errorf("mknod %s: %w", name, err)
			}
		default:
			continue // pax globals, GNU sparse and the like carry no file
		}
		if err := os.Lchown(path, hdr.Uid, hdr.Gid); err != nil {
			return total, fmt.Errorf("chown %s: %w", name, err)
		}
		if hdr.Typeflag != tar.TypeSymlink && hdr.Typeflag != tar.TypeLink {
			if err := unix.Chmod(path, mode); err != nil {
				return total, fmt.Errorf("chmod %s: %w", name, err)
			}
		}
		for k, v := range hdr.PAXRecords {
			if attr, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				// Best effort: some file systems refuse some namespaces.
				_ = unix.Lsetxattr(path, attr, []byte(v), 0)
			}
		}
		if hdr.Typeflag != tar.TypeDir && hdr.Typeflag != tar.TypeLink {
			ts := []unix.Timespec{unix.NsecToTimespec(hdr.AccessTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
			if hdr.AccessTime.IsZero() {
				ts[0] = ts[1]
			}
			_ = unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
}
