package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// identityServer serves the API as the TLS listener does, issuing node
// certificates of validity; no root needed.
func identityServer(t *testing.T, validity time.Duration) (*httptest.Server, *pki.PKI, *apiserver.Server) {
	t.Helper()
	st := storetest.Open(t)
	api := apiserver.New(st, apiserver.Options{Logger: slog.New(slog.DiscardHandler)})
	p := testPKI(t)
	api.EnableJoin(apiserver.JoinConfig{PKI: p, GossipKey: p.GossipKey, CertValidity: validity})
	srv := httptest.NewUnstartedServer(api.TCPHandler())
	srv.TLS = p.ServerTLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, p, api
}

func nodeConfig(t *testing.T, name string) configs.NodeConfig {
	return configs.NodeConfig{NodeName: name, DataDir: t.TempDir()}
}

// TestIdentityRenewal: an agent's identity joins with the join token,
// keeps its certificate on disk, and renews it at two thirds of its life
// again and again while its client keeps working, with no restart, past
// the end of the first certificate.
func TestIdentityRenewal(t *testing.T) {
	srv, p, _ := identityServer(t, 3*time.Second)
	server := strings.TrimPrefix(srv.URL, "https://")
	cfg := nodeConfig(t, "edge-01")
	log := slog.New(slog.DiscardHandler)
	id, err := loadIdentity(cfg, p.Token().String(), server, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := id.join(ctx)
	if err != nil || resp == nil || len(resp.GossipKey) != 32 {
		t.Fatalf("join: %+v %v", resp, err)
	}
	if err := id.savePending(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, PKIDir, pki.NodeKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node key: %v %v", fi, err)
	}
	c, err := client.NewWithConfig(client.Config{Addr: srv.URL, TLS: pki.NodeTLSConfig(id.caHash, &id.holder)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	first := id.holder.Load()
	done := make(chan error, 1)
	go func() { done <- id.renewLoop(ctx, c) }()

	serials := map[string]bool{pki.SerialHex(first.Leaf): true}
	deadline := time.Now().Add(15 * time.Second)
	for len(serials) < 3 || time.Now().Before(first.Leaf.NotAfter.Add(time.Second)) {
		if who, err := c.Whoami(ctx); err != nil || who.Node != "edge-01" {
			t.Fatalf("a request %s after the join: %+v %v", time.Since(first.Leaf.NotBefore.Add(pki.CertBackdate)).Round(time.Millisecond), who, err)
		}
		serials[pki.SerialHex(id.holder.Load().Leaf)] = true
		if time.Now().After(deadline) {
			t.Fatalf("%d certificates after 15s, want 3", len(serials))
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	onDisk, err := pki.LoadIdentity(filepath.Join(cfg.DataDir, PKIDir))
	if err != nil || pki.SerialHex(onDisk.Leaf) == pki.SerialHex(first.Leaf) || !serials[pki.SerialHex(onDisk.Leaf)] {
		t.Errorf("the renewed certificate is not on disk: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("renew loop: %v", err)
	}
}

// TestLoadIdentity: which certificate a starting agent uses, and when it
// must join again.
func TestLoadIdentity(t *testing.T) {
	srv, p, api := identityServer(t, time.Hour)
	_, other, _ := identityServer(t, time.Hour)
	server := strings.TrimPrefix(srv.URL, "https://")
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	joined := func(name string) configs.NodeConfig {
		cfg := nodeConfig(t, name)
		id, err := loadIdentity(cfg, p.Token().String(), server, log)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := id.join(ctx); err != nil || resp == nil {
			t.Fatalf("join: %v", err)
		}
		if err := id.savePending(); err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("no certificate, no token", func(t *testing.T) {
		_, err := loadIdentity(nodeConfig(t, "edge-01"), "", server, log)
		if err == nil || !strings.Contains(err.Error(), "no join token") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a certificate needs no token", func(t *testing.T) {
		cfg := joined("edge-02")
		id, err := loadIdentity(cfg, "", server, log)
		if err != nil || id.holder.Load() == nil || id.caHash != p.CAHash() {
			t.Fatalf("%+v %v", id, err)
		}
	})
	t.Run("another node's certificate is set aside", func(t *testing.T) {
		cfg := joined("edge-03")
		cfg.NodeName = "edge-04"
		id, err := loadIdentity(cfg, p.Token().String(), server, log)
		if err != nil || id.holder.Load() != nil {
			t.Fatalf("%+v %v, want a join", id, err)
		}
	})
	t.Run("a token of another cluster wins", func(t *testing.T) {
		cfg := joined("edge-05")
		id, err := loadIdentity(cfg, other.Token().String(), server, log)
		if err != nil || id.holder.Load() != nil || id.caHash != other.CAHash() {
			t.Fatalf("%+v %v, want a join to the token's cluster", id, err)
		}
	})
	t.Run("a revoked certificate is refused, token or not", func(t *testing.T) {
		cfg := joined("edge-06")
		id, err := loadIdentity(cfg, p.Token().String(), server, log)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := client.NewWithConfig(client.Config{Addr: srv.URL, TLS: pki.NodeTLSConfig(id.caHash, &id.holder)})
		defer c.CloseIdleConnections()
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest("DELETE", "/v1/nodes/edge-06", nil))
		if rec.Code != 200 {
			t.Fatalf("delete: %d %s", rec.Code, rec.Body)
		}
		_, cause := c.Cluster(ctx)
		if _, err := id.rejoin(ctx, cause); !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("rejoin after a delete: %v", err)
		}
		if err := failover(ctx, c, nil, nil, log); !errors.Is(err, ErrJoinRefused) {
			t.Fatalf("the running agent's check: %v", err)
		}
	})
}
