package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
)

// TestTokenCarriesGossipKey: a server keyed by its PKI and an agent keyed by
// the token it was given gossip together; an agent with another cluster's
// token cannot join.
func TestTokenCarriesGossipKey(t *testing.T) {
	p, err := pki.Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg := testConfig(t, "server", p.GossipKey())
	scfg.Tags = Tags{Role: RoleServer, APIAddr: "127.0.0.1:7443"}
	s := startMember(t, scfg)

	tok, err := pki.ParseToken(p.Token().String())
	if err != nil {
		t.Fatal(err)
	}
	a := startMember(t, testConfig(t, "agent", tok.GossipKey()))
	if _, err := a.Join([]string{s.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent learns the server", 10*time.Second, func() bool { return len(a.Servers()) == 1 })

	other, err := pki.Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	intruder := startMember(t, testConfig(t, "intruder", other.Token().GossipKey()))
	if _, err := intruder.Join([]string{s.Addr()}); !errors.Is(err, ErrGossipKey) {
		t.Errorf("join with another cluster's token: %v, want ErrGossipKey", err)
	}
}
