// Package imagetest builds OCI images from files a test has (a static Go
// program, Debian's busybox-static binary), writes them as `docker save` and
// OCI-layout archives, and serves them from a registry on loopback. It needs
// no testing.T, so a small `go run` program can use it too (packaging the
// demo image for examples/).
package imagetest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where Debian's busybox-static package puts its binary.
const BusyboxPath = "/bin/busybox"

// File is one entry of a layer.
type File struct {
	// Path in the image, absolute or relative to /.
	Path string
	// Mode bits; 0 means 0644 for files and 0755 for directories.
	Mode int64
	// Data of a regular file.
	Data []byte
	// Dir makes a directory.
	Dir bool
	// Symlink makes a symbolic link to this target.
	Symlink string
	// UID and GID of the entry.
	UID, GID int
	// Xattrs are extended attributes (name to value), written as PAX
	// SCHILY.xattr records.
	Xattrs map[string]string
}

// Whiteout returns the entry that deletes path of lower layers.
func Whiteout(path string) File {
	return File{Path: filepath.Join(filepath.Dir(path), ".wh."+filepath.Base(path))}
}

// Opaque returns the entry that hides everything lower layers have in dir.
func Opaque(dir string) File {
	return File{Path: filepath.Join(dir, ".wh..wh..opq")}
}

// LayerTar returns the uncompressed tar of files, in order.
func LayerTar(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 0)
	for _, f := range files {
		p := filepath.Clean("/" + f.Path)[1:]
		h := &tar.Header{Name: p, Mode: f.Mode, Uid: f.UID, Gid: f.GID, ModTime: mt, Format: tar.FormatPAX}
		for k, v := range f.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, p+"/"
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Symlink != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Symlink, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layer returns a gzip-compressed layer of files.
func Layer(files []File) (v1.Layer, error) {
	b, err := LayerTar(files)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}

// Image stacks layers (bottom first) under a run config.
func Image(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}

// BusyboxFiles returns busybox-static as /bin/busybox with links for the
// applets tests use, and the usual top-level directories.
func BusyboxFiles() ([]File, error) {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read %s (install Debian's busybox-static): %w", BusyboxPath, err)
	}
	files := []File{{Path: "bin", Dir: true}, {Path: "bin/busybox", Data: bb, Mode: 0o755}}
	for _, a := range []string{"sh", "ls", "cat", "echo", "sleep", "dd", "head", "tail", "id", "hostname", "wget", "touch", "mkdir", "rm", "true", "false", "env", "pwd", "yes", "seq", "wc", "kill", "ps", "grep", "test", "nc"} {
		files = append(files, File{Path: "bin/" + a, Symlink: "busybox"})
	}
	for _, d := range []string{"etc", "tmp", "proc", "sys", "dev", "root", "var"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		files = append(files, File{Path: d, Dir: true, Mode: mode})
	}
	files = append(files,
		File{Path: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")},
		File{Path: "etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
	)
	return files, nil
}

// BusyboxImage is an image of busybox-static whose cmd is sh.
func BusyboxImage() (v1.Image, error) {
	files, err := BusyboxFiles()
	if err != nil {
		return nil, err
	}
	l, err := Layer(files)
	if err != nil {
		return nil, err
	}
	return Image(v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}, l)
}

// BuildGo builds a Go main package as a static binary (CGO_ENABLED=0) into
// out. pkg is a package path or directory as `go build` takes it; dir is the
// directory to run go build in (a directory of the module).
func BuildGo(dir, pkg, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, b)
	}
	return nil
}

// BinaryImage is an image of one static binary at /app plus busybox
// (three layers: busybox, the binary, a config layer), whose entrypoint is
// the binary.
func BinaryImage(binary string, args ...string) (v1.Image, error) {
	b, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	bbFiles, err := BusyboxFiles()
	if err != nil {
		return nil, err
	}
	bb, err := Layer(bbFiles)
	if err != nil {
		return nil, err
	}
	app, err := Layer([]File{{Path: "app", Data: b, Mode: 0o755}})
	if err != nil {
		return nil, err
	}
	etc, err := Layer([]File{{Path: "etc/skiff-image", Data: []byte(filepath.Base(binary) + "\n")}})
	if err != nil {
		return nil, err
	}
	return Image(v1.Config{Entrypoint: []string{"/app"}, Cmd: args, Env: []string{"PATH=/bin"}, WorkingDir: "/"}, bb, app, etc)
}

// WriteDockerArchive writes img as a `docker save` tarball tagged ref.
func WriteDockerArchive(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, tag, img)
}

// WriteOCIArchive writes img as an OCI image layout packed in a tar, with
// ref in the org.opencontainers.image.ref.name annotation.
func WriteOCIArchive(path, ref string, img v1.Image) error {
	dir, err := os.MkdirTemp("", "oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return err
	}
	return tarDir(dir, path)
}

func tarDir(dir, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	var paths []string
	if err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	}); err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths[1:] {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = rel
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if _, err := tw.Write(b); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// Registry is an in-process registry (go-containerregistry's) on loopback.
type Registry struct {
	// Addr is host:port, to put in front of image names.
	Addr string
	srv  *http.Server
}

// StartRegistry serves an empty in-memory registry on 127.0.0.1. wrap, if
// not nil, wraps its handler (to fail or cut requests in tests).
func StartRegistry(wrap func(http.Handler) http.Handler) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var h http.Handler = registry.New(registry.Logger(nilLogger()))
	if wrap != nil {
		h = wrap(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return &Registry{Addr: ln.Addr().String(), srv: srv}, nil
}

// Close stops the registry at once, cutting open connections.
func (r *Registry) Close() error { return r.srv.Close() }

// Push writes img to ref (host:port/repo:tag) over plain HTTP.
func Push(ref string, img v1.Image) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img)
}
