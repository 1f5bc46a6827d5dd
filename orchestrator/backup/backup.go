// Package backup writes and restores a server's backup, the file of
// `skiff snapshot save` (GET /v1/snapshot) and `skiff snapshot restore`.
//
// A backup is a gzip-compressed tar of what a server needs so that, started
// from it, its nodes come back: the store (a consistent copy of state.db),
// the cluster's PKI (CA certificate and key, join secret, gossip key: the
// nodes' certificates were issued by that CA and stay valid) and the keys
// that seal the secrets in the store (secret-keys), and the serf keyring if
// the gossip keys were rotated. It therefore holds
// every credential of the cluster: keep it like the CA key (mode 0600,
// never on a shared disk). The manifest skiff-backup.json comes last.
//
// Restore writes it into a fresh data dir (it refuses one that holds a
// store, raft state, a CA key or secret keys). A server started there
// forms a new cluster of one voter from the restored store; other servers
// then join it afresh.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Names in the data dir (the layout of DESIGN.md: orchestrator.StoreFile,
// orchestrator.PKIDir, apiserver.SecretKeyFile; the tests check they
// agree).
const (
	StoreFile     = "state.db"
	RaftDir       = "raft"
	PKIDir        = "pki"
	SecretKeyFile = "secret-keys"
	// ManifestFile is the backup's last entry.
	ManifestFile = "skiff-backup.json"
)

// Format is the version of the backup layout this package writes.
const Format = 1

// Files are the data dir's files a backup carries besides the store,
// relative to the data dir. Those of the PKI are required: without the CA
// the restored server could not recognise its nodes.
var Files = []string{
	PKIDir + "/" + pki.CACertFile,
	PKIDir + "/" + pki.CAKeyFile,
	PKIDir + "/" + pki.SecretFile,
	PKIDir + "/" + pki.GossipKeyFile,
	SecretKeyFile,
}

// OptionalFiles are carried when the data dir has them: the serf keyring
// (orchestrator.SerfDir/KeyringFile), which holds the gossip keys in use
// once they were rotated (pki/gossip.key is only the first one).
var OptionalFiles = []string{
	SerfDir + "/" + KeyringFile,
}

// Names of the serf keyring (orchestrator.SerfDir, orchestrator.KeyringFile).
const (
	SerfDir     = "serf"
	KeyringFile = "keyring"
)

// known tells whether name may be an entry of a backup besides the store
// and the manifest.
func known(name string) bool {
	return slices.Contains(Files, name) || slices.Contains(OptionalFiles, name)
}

// Manifest describes a backup.
type Manifest struct {
	Format   int       `json:"format"`
	Created  time.Time `json:"created"`
	Revision int64     `json:"revision"`
	// Files are the entries before the manifest.
	Files []string `json:"files"`
}

// maxFile bounds a PKI or key file read into memory (they are a few
// hundred bytes).
const maxFile = 1 << 20

// Prepared is a backup ready to be written: the store copied to a
// temporary file and the other files read, so that a missing file fails
// before anything is sent. Close it.
type Prepared struct {
	Manifest Manifest
	store    *os.File
	files    map[string][]byte
}

// Prepare copies st and reads Files from dataDir. A file that is missing
// is an error, except the PKI of a server that never ran in cluster mode
// (local-only: it has no CA; the backup then holds the store and secret
// keys only).
func Prepare(st *store.Store, dataDir string) (*Prepared, error) {
	p := &Prepared{files: map[string][]byte{}}
	_, err := os.Stat(filepath.Join(dataDir, PKIDir, pki.CAKeyFile))
	hasPKI := err == nil
	for _, name := range Files {
		if !hasPKI && filepath.Dir(name) == PKIDir {
			continue
		}
		b, err := readSmall(filepath.Join(dataDir, filepath.FromSlash(name)))
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		p.files[name] = b
	}
	for _, name := range OptionalFiles {
		b, err := readSmall(filepath.Join(dataDir, filepath.FromSlash(name)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("backup: %w", err)
		default:
			p.files[name] = b
		}
	}
	f, err := os.CreateTemp("", "skiff-backup-*.db")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	os.Remove(f.Name()) // unnamed: gone when closed
	p.store = f
	rev, err := st.Backup(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	p.Manifest = Manifest{Format: Format, Created: time.Now().UTC(), Revision: rev, Files: []string{StoreFile}}
	for _, name := range append(slices.Clone(Files), OptionalFiles...) {
		if _, ok := p.files[name]; ok {
			p.Manifest.Files = append(p.Manifest.Files, name)
		}
	}
	return p, nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFile)
	}
	return b, nil
}

// Close drops the store copy.
func (p *Prepared) Close() error { return p.store.Close() }

// WriteTo writes the backup (gzip'd tar) to w.
func (p *Prepared) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	zw := gzip.NewWriter(cw)
	tw := tar.NewWriter(zw)
	size, err := p.store.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = p.store.Seek(0, io.SeekStart)
	}
	if err != nil {
		return cw.n, err
	}
	mod := p.Manifest.Created
	if err := tw.WriteHeader(&tar.Header{Name: StoreFile, Mode: 0o600, Size: size, ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
		return cw.n, err
	}
	if _, err := io.Copy(tw, p.store); err != nil {
		return cw.n, err
	}
	for _, name := range p.Manifest.Files[1:] {
		if err := writeEntry(tw, name, p.files[name], mod); err != nil {
			return cw.n, err
		}
	}
	m, err := json.MarshalIndent(p.Manifest, "", "  ")
	if err != nil {
		return cw.n, err
	}
	if err := writeEntry(tw, ManifestFile, append(m, '\n'), mod); err != nil {
		return cw.n, err
	}
	if err := tw.Close(); err != nil {
		return cw.n, err
	}
	err = zw.Close()
	return cw.n, err
}

func writeEntry(tw *tar.Writer, name string, b []byte, mod time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ErrHasState: Restore was given a data dir that already holds a server's
// state.
var ErrHasState = errors.New("the data dir already holds a server's state")

// CheckFresh returns an error naming what dataDir already holds of a
// server's state (store, raft state, CA key, secret keys, gossip keyring),
// nil if none.
func CheckFresh(dataDir string) error {
	var found []string
	for _, name := range []string{StoreFile, PKIDir + "/" + pki.CAKeyFile, SecretKeyFile, SerfDir + "/" + KeyringFile} {
		if _, err := os.Lstat(filepath.Join(dataDir, filepath.FromSlash(name))); err == nil {
			found = append(found, name)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dataDir, RaftDir)); err == nil && len(ents) > 0 {
		found = append(found, RaftDir+"/")
	}
	if len(found) > 0 {
		return fmt.Errorf("%s has %v: %w; restore into a new, empty data dir", dataDir, found, ErrHasState)
	}
	return nil
}

// Restore writes the backup read from r into dataDir, which must be fresh
// (CheckFresh). Nothing lands in dataDir unless the whole backup reads
// back intact (every entry known, the store a store file, the manifest
// last and naming every entry). Files are written mode 0600, directories
// 0700.
func Restore(r io.Reader, dataDir string) (Manifest, error) {
	var m Manifest
	if err := CheckFresh(dataDir); err != nil {
		return m, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return m, err
	}
	stage, err := os.MkdirTemp(dataDir, ".restore-*")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(stage)
	var storeErr error // says "restore: ..." itself
	m, err = walk(r, func(h *tar.Header, r io.Reader) error {
		if h.Name == StoreFile {
			storeErr = store.RestoreBackup(filepath.Join(stage, StoreFile), "", r)
			return storeErr
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("read %s: %w", h.Name, err)
		}
		dst := filepath.Join(stage, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		return writeFileSync(dst, b)
	})
	if err != nil {
		if err == storeErr {
			return m, err
		}
		return m, fmt.Errorf("restore: %w", err)
	}
	// Move into place, the store last: a data dir with a store is one a
	// second restore refuses.
	for _, name := range append(slices.DeleteFunc(slices.Clone(m.Files), func(n string) bool { return n == StoreFile }), StoreFile) {
		src, dst := filepath.Join(stage, filepath.FromSlash(name)), filepath.Join(dataDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return m, err
		}
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			return m, fmt.Errorf("restore: %s appeared during the restore: %w", dst, ErrHasState)
		}
		if err := os.Rename(src, dst); err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
	}
	for _, d := range []string{dataDir, filepath.Join(dataDir, PKIDir), filepath.Join(dataDir, SerfDir)} {
		if f, err := os.Open(d); err == nil {
			f.Sync()
			f.Close()
		}
	}
	return m, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Verify reads a whole backup from r and checks its layout (known entries,
// the manifest last and naming them all, gzip and tar intact): a download
// cut short fails here. It does not open the store copy (Restore does).
func Verify(r io.Reader) (Manifest, error) {
	return walk(r, func(h *tar.Header, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
}

// walk reads a backup from r and hands each entry before the manifest to
// entry, in order, then checks the layout: every entry a regular file
// that a backup may hold (the store, Files, OptionalFiles; those at most
// maxFile bytes), the manifest last, of this Format and naming exactly
// the entries seen, the store among them, and the gzip stream intact to
// its end. It returns the manifest.
func walk(r io.Reader, entry func(h *tar.Header, r io.Reader) error) (Manifest, error) {
	var m Manifest
	zr, err := gzip.NewReader(r)
	if err != nil {
		return m, fmt.Errorf("not a skiff backup (gzip): %w", err)
	}
	tr := tar.NewReader(zr)
	var got []string
	sawManifest := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("read backup: %w", err)
		}
		switch {
		case sawManifest:
			return m, fmt.Errorf("entry %q after the manifest", h.Name)
		case h.Typeflag != tar.TypeReg:
			return m, fmt.Errorf("entry %q is not a regular file", h.Name)
		case h.Name == ManifestFile:
			b, err := io.ReadAll(io.LimitReader(tr, maxFile))
			if err != nil {
				return m, fmt.Errorf("read manifest: %w", err)
			}
			if err := json.Unmarshal(b, &m); err != nil {
				return m, fmt.Errorf("manifest: %w", err)
			}
			sawManifest = true
			continue
		case h.Name != StoreFile && !known(h.Name):
			return m, fmt.Errorf("unknown entry %q in the backup", h.Name)
		case h.Name != StoreFile && h.Size > maxFile:
			return m, fmt.Errorf("entry %q is larger than %d bytes", h.Name, maxFile)
		}
		if err := entry(h, tr); err != nil {
			return m, err
		}
		got = append(got, h.Name)
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return m, fmt.Errorf("read backup: %w", err)
	}
	switch {
	case !sawManifest:
		return m, fmt.Errorf("the backup has no %s (cut short?)", ManifestFile)
	case m.Format != Format:
		return m, fmt.Errorf("backup format %d, this skiff reads %d", m.Format, Format)
	case !slices.Equal(got, m.Files):
		return m, fmt.Errorf("the backup holds %v, its manifest names %v", got, m.Files)
	case !slices.Contains(got, StoreFile):
		return m, fmt.Errorf("the backup has no %s", StoreFile)
	}
	return m, nil
}
