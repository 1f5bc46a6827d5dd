package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/backup"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

func TestNamesMatchTheServer(t *testing.T) {
	if backup.StoreFile != orchestrator.StoreFile || backup.PKIDir != orchestrator.PKIDir || backup.SecretKeyFile != apiserver.SecretKeyFile ||
		backup.SerfDir != orchestrator.SerfDir || backup.KeyringFile != orchestrator.KeyringFile {
		t.Fatal("backup's file names differ from the server's")
	}
}

// serverDir makes the data dir of a server in cluster mode: a store with
// objects, a PKI and secret keys, as the server makes them.
func serverDir(t *testing.T) (string, *store.Store) {
	t.Helper()
	dir := t.TempDir()
	if _, err := pki.Load(filepath.Join(dir, backup.PKIDir), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := apiserver.LoadSecretKeys(filepath.Join(dir, backup.SecretKeyFile)); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, backup.StoreFile), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, name := range []string{"a", "b", "c"} {
		if _, err := st.Update(func(tx *store.Tx) error {
			return tx.Put(api.KindNode, &api.Node{Meta: api.Meta{Name: name}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	return dir, st
}

func save(t *testing.T, st *store.Store, dir string) []byte {
	t.Helper()
	p, err := backup.Prepare(st, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var buf bytes.Buffer
	if _, err := p.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSaveRestore(t *testing.T) {
	src, st := serverDir(t)
	os.MkdirAll(filepath.Join(src, backup.SerfDir), 0o700)
	keyring := filepath.Join(backup.SerfDir, backup.KeyringFile)
	if err := os.WriteFile(filepath.Join(src, keyring), []byte(`["a2V5"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	b := save(t, st, src)
	m, err := backup.Verify(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if m.Revision != 3 || len(m.Files) != 1+len(backup.Files)+1 {
		t.Fatalf("manifest %+v", m)
	}
	dst := filepath.Join(t.TempDir(), "data")
	if _, err := backup.Restore(bytes.NewReader(b), dst); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(backup.Files, keyring) {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s restored differs (%v)", name, err)
		}
	}
	for _, name := range append([]string{backup.StoreFile}, backup.Files...) {
		if fi, err := os.Stat(filepath.Join(dst, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want mode 0600", name, fi, err)
		}
	}
	// The restored dir is a server's: its PKI loads, its store opens.
	if _, err := pki.Load(filepath.Join(dst, backup.PKIDir), nil); err != nil {
		t.Fatal(err)
	}
	if tok, _ := pki.ReadToken(filepath.Join(dst, backup.PKIDir)); tok == "" {
		t.Fatal("no join token in the restored PKI")
	}
	rst, err := store.Open(filepath.Join(dst, backup.StoreFile), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rst.Close()
	if n, _ := rst.Count(api.KindNode); n != 3 || rst.Rev() != 3 {
		t.Fatalf("restored store: %d nodes at %d", n, rst.Rev())
	}
	// A second restore into the same dir is refused.
	if _, err := backup.Restore(bytes.NewReader(b), dst); !errors.Is(err, backup.ErrHasState) {
		t.Fatalf("restore into a dir with state: %v", err)
	}
}

func TestRestoreRefusesBadBackups(t *testing.T) {
	src, st := serverDir(t)
	b := save(t, st, src)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not gzip", []byte("hello")},
		{"cut short", b[:len(b)/2]},
		{"cut before the end", b[:len(b)-30]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := backup.Verify(bytes.NewReader(tc.data)); err == nil {
				t.Fatal("verify passed")
			}
			dst := filepath.Join(t.TempDir(), "data")
			if _, err := backup.Restore(bytes.NewReader(tc.data), dst); err == nil {
				t.Fatal("restore passed")
			}
			ents, _ := os.ReadDir(dst)
			if len(ents) != 0 {
				t.Fatalf("a failed restore left %v", ents)
			}
		})
	}
	// Each piece of state makes a dir not fresh.
	for _, name := range []string{backup.StoreFile, backup.PKIDir + "/" + pki.CAKeyFile, backup.SecretKeyFile, backup.RaftDir + "/raft.db", backup.SerfDir + "/" + backup.KeyringFile} {
		dst := t.TempDir()
		os.MkdirAll(filepath.Dir(filepath.Join(dst, name)), 0o700)
		os.WriteFile(filepath.Join(dst, name), []byte("x"), 0o600)
		if _, err := backup.Restore(bytes.NewReader(b), dst); !errors.Is(err, backup.ErrHasState) {
			t.Fatalf("restore into a dir with %s: %v", name, err)
		}
	}
}

// A server that never ran in cluster mode has no PKI: its backup holds the
// store and the secret keys.
func TestSaveLocalOnly(t *testing.T) {
	dir := t.TempDir()
	if _, err := apiserver.LoadSecretKeys(filepath.Join(dir, backup.SecretKeyFile)); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, backup.StoreFile), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := backup.Verify(bytes.NewReader(save(t, st, dir)))
	if err != nil || len(m.Files) != 2 {
		t.Fatalf("local-only backup: %+v, %v", m, err)
	}
	os.Remove(filepath.Join(dir, backup.SecretKeyFile))
	if _, err := backup.Prepare(st, dir); err == nil {
		t.Fatal("backup without secret keys succeeded")
	}
}

// entry is one tar entry of a hand-made backup.
type entry struct {
	name string
	typ  byte
	body string
}

// tarGz writes entries as a gzip'd tar.
func tarGz(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o600, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size, h.Linkname = 0, "/etc/shadow"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A backup whose layout is wrong is refused by Verify and by Restore, with
// an error that says what is wrong, and a restore leaves nothing behind.
func TestRefusesBadLayouts(t *testing.T) {
	manifest := func(files ...string) entry {
		b, _ := json.Marshal(backup.Manifest{Format: backup.Format, Files: files})
		return entry{backup.ManifestFile, tar.TypeReg, string(b)}
	}
	keys := entry{backup.SecretKeyFile, tar.TypeReg, "k"}
	tests := []struct {
		name    string
		entries []entry
		want    string
	}{
		{"unknown entry", []entry{keys, {"etc/passwd", tar.TypeReg, "x"}, manifest(backup.SecretKeyFile, "etc/passwd")}, `unknown entry "etc/passwd"`},
		{"a symlink", []entry{{backup.SecretKeyFile, tar.TypeSymlink, ""}, manifest(backup.SecretKeyFile)}, "not a regular file"},
		{"entry after the manifest", []entry{keys, manifest(backup.SecretKeyFile), keys}, "after the manifest"},
		{"manifest names other files", []entry{keys, manifest(backup.StoreFile, backup.SecretKeyFile)}, "its manifest names"},
		{"no store", []entry{keys, manifest(backup.SecretKeyFile)}, "has no " + backup.StoreFile},
		{"no manifest", []entry{keys}, "has no " + backup.ManifestFile},
		{"a key file too large", []entry{{backup.SecretKeyFile, tar.TypeReg, strings.Repeat("k", 1<<20+1)}, manifest(backup.SecretKeyFile)}, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tarGz(t, tc.entries...)
			if _, err := backup.Verify(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("verify: %v, want an error with %q", err, tc.want)
			}
			dst := filepath.Join(t.TempDir(), "data")
			if _, err := backup.Restore(bytes.NewReader(b), dst); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("restore: %v, want an error with %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(dst); len(ents) != 0 {
				t.Errorf("a failed restore left %v", ents)
			}
		})
	}
}
