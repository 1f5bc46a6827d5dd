package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/backup"
)

// newSnapshotCmd is `skiff snapshot save|restore`: a server's backup.
func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot save|restore",
		Short: "Back up a server (store, CA, secret keys), or restore a backup into a fresh data dir",
		Long: "A backup holds the store and what a restored server needs for its nodes to come back: the cluster CA\n" +
			"(certificate and key), the join secret, the gossip key(ring) and the keys that seal secrets. Anyone with the\n" +
			"file holds every credential of the cluster: it is written mode 0600; keep it like the CA key.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSnapshotSaveCmd(g), newSnapshotRestoreCmd())
	return cmd
}

func newSnapshotSaveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Save a backup of the server to FILE (mode 0600; it holds the CA key and secret keys)",
		Long: "Save a backup of the server the CLI talks to (admin only) to FILE, written mode 0600: it holds the\n" +
			"store, the cluster CA certificate and key, the join secret, the gossip key and the secret keys.\n" +
			"The file is checked whole before it replaces FILE.",
		Args: cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			body, err := c.Snapshot(cmd.Context())
			if err != nil {
				return err
			}
			defer body.Close()
			m, n, err := saveBackup(args[0], body)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "saved the backup of revision %d to %s (%d bytes, mode 0600: it holds the CA key and the secret keys)\n", m.Revision, args[0], n)
			return err
		}),
	}
}

// saveBackup writes r to path through a temporary file in the same
// directory (mode 0600), checks it whole, then renames it into place.
func saveBackup(path string, r io.Reader) (backup.Manifest, int64, error) {
	var m backup.Manifest
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
	if err != nil {
		return m, 0, err
	}
	defer os.Remove(f.Name()) // after a failure; gone by then after the rename
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return m, n, fmt.Errorf("download the backup: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return m, n, err
	}
	m, err = backup.Verify(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return m, n, fmt.Errorf("the backup did not arrive whole: %w", err)
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return m, n, err
	}
	return m, n, os.Rename(f.Name(), path)
}

func newSnapshotRestoreCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR",
		Short: "Restore a backup into a fresh data dir (offline; refuses a dir with state)",
		Long: "Restore a backup (from snapshot save) into DIR, offline, for a server to start there. DIR must not hold a\n" +
			"server's state (state.db, raft/, pki/ca.key, secret-keys or serf/keyring): restore never overwrites. Files are written\n" +
			"mode 0600. Started there, `skiff server --listen-tcp` forms a new one-server cluster from the backup's\n" +
			"store, with the old CA (the nodes' certificates stay valid); other servers then join it afresh.",
		Args: cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			m, err := backup.Restore(f, dataDir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "restored the backup of revision %d (saved %s) into %s: %v\n",
				m.Revision, m.Created.Format("2006-01-02 15:04:05 UTC"), dataDir, m.Files)
			return err
		}),
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", configs.DefaultDataDir, "the data directory to restore into (must hold no server state)")
	return cmd
}
