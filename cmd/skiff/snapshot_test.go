package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/backup"
	"github.com/skiff-edge/skiff/orchestrator/nettest"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestSnapshotSaveRestore: `skiff snapshot save` from a running server in
// cluster mode, `skiff snapshot restore` into a fresh data dir (and not
// into one with state); the restored dir holds the apps and the CA.
func TestSnapshotSaveRestore(t *testing.T) {
	tcp, gossip := nettest.Addr(t, "127.0.0.1"), nettest.Addr(t, "127.0.0.1")
	unix, dataDir := startServerArgs(t, "--listen-tcp", "--api-addr", tcp, "--gossip-addr", gossip)
	must(t, unix, "apply", "-f", writeFile(t, t.TempDir(), "w.toml", webManifest))

	file := filepath.Join(t.TempDir(), "backup.tgz")
	out := must(t, unix, "snapshot", "save", file)
	if !strings.Contains(out, "mode 0600") {
		t.Errorf("save printed %q", out)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", fi, err)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	must(t, unix, "snapshot", "restore", file, "--data-dir", dst)
	if r := skiff(t, unix, "snapshot", "restore", file, "--data-dir", dst); r.code == 0 || !strings.Contains(r.stderr, "already holds") {
		t.Fatalf("second restore: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := skiff(t, unix, "snapshot", "restore", file, "--data-dir", dataDir); r.code == 0 {
		t.Fatal("restore over the running server's data dir succeeded")
	}
	ca, _ := os.ReadFile(filepath.Join(dataDir, "pki", "ca.key"))
	got, err := os.ReadFile(filepath.Join(dst, "pki", "ca.key"))
	if err != nil || string(got) != string(ca) {
		t.Fatalf("restored CA key differs (%v)", err)
	}
	st, err := store.Open(filepath.Join(dst, backup.StoreFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var app api.App
	if err := st.Get(api.KindApp, "web", &app); err != nil {
		t.Fatalf("restored store: %v", err)
	}
	if r := skiff(t, unix, "snapshot", "save", filepath.Join(t.TempDir(), "no", "such", "dir", "f")); r.code == 0 {
		t.Fatal(fmt.Sprint("save into a missing directory succeeded: ", r.stdout))
	}
}

func TestSnapshotUsage(t *testing.T) {
	notBackup := writeFile(t, t.TempDir(), "not-a-backup", "hello\n")
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"save without a file", []string{"snapshot", "save"}, 2},
		{"restore without a file", []string{"snapshot", "restore", "--data-dir", t.TempDir()}, 2},
		{"restore of a missing file", []string{"snapshot", "restore", "/nonexistent/backup.tgz", "--data-dir", t.TempDir()}, 1},
		{"restore of a file that is not a backup", []string{"snapshot", "restore", notBackup, "--data-dir", filepath.Join(t.TempDir(), "d")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			root.SetArgs(tt.args)
			root.SetOut(io.Discard)
			var stderr bytes.Buffer
			cmd, err := root.ExecuteC()
			if code := exitCode(&stderr, cmd, err, false); code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if !strings.HasPrefix(stderr.String(), "skiff: ") {
				t.Errorf("stderr %q does not start with skiff:", stderr.String())
			}
		})
	}
}
