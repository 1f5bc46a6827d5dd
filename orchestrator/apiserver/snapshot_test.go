package apiserver

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/backup"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestSnapshotRoute: an admin gets a whole backup of the server's data dir;
// a read token does not; a server without a data dir says why.
func TestSnapshotRoute(t *testing.T) {
	dir := t.TempDir()
	p, err := pki.Load(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadSecretKeys(filepath.Join(dir, SecretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := New(st, Options{SecretKeys: keys})
	s.EnableJoin(JoinConfig{PKI: p, GossipKey: p.GossipKey})
	e := &tlsEnv{t: t, s: s, st: st, p: p}
	e.srv = httptest.NewUnstartedServer(s.TCPHandler())
	e.srv.TLS = p.ServerTLSConfig()
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)

	rc, err := e.client(e.token(api.RoleAdmin, "")).Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	m, err := backup.Verify(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if m.Revision != st.Rev() || len(m.Files) != 1+len(backup.Files) {
		t.Fatalf("manifest %+v", m)
	}
	_, err = e.client(e.token(api.RoleRead, "")).Snapshot(t.Context())
	if ae, ok := err.(*client.APIError); !ok || ae.Status != http.StatusForbidden {
		t.Fatalf("snapshot with a read token: %v, want 403", err)
	}
	// Keys in memory only: no data dir to back up.
	mem, _ := newTestServer(t, "10.96.0.0/16")
	if rec := serve(mem, "GET", "/v1/snapshot", ""); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("snapshot without a data dir: %d %s", rec.Code, rec.Body)
	}
}
