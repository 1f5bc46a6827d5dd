package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
)

// TestPKIGossipKey: a server keyed by its PKI and an agent keyed by the
// server's PrimaryKey (what a join answers) gossip together; a member with
// another cluster's key cannot join, and the join token carries no key.
func TestPKIGossipKey(t *testing.T) {
	p, err := pki.Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg := testConfig(t, "server", p.GossipKey())
	scfg.Tags = Tags{Role: RoleServer, APIAddr: "127.0.0.1:7443"}
	s := startMember(t, scfg)

	if !bytes.Equal(s.PrimaryKey(), p.GossipKey()) {
		t.Fatal("the server's primary key is not its PKI's gossip key")
	}
	if strings.Contains(p.Token().String(), base64.StdEncoding.EncodeToString(p.GossipKey())) ||
		strings.Contains(p.Token().String(), hex.EncodeToString(p.GossipKey())) {
		t.Fatal("the join token carries the gossip key")
	}
	a := startMember(t, testConfig(t, "agent", s.PrimaryKey()))
	if _, err := a.Join([]string{s.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent learns the server", 10*time.Second, func() bool { return len(a.Servers()) == 1 })

	other, err := pki.Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	intruder := startMember(t, testConfig(t, "intruder", other.GossipKey()))
	if _, err := intruder.Join([]string{s.Addr()}); !errors.Is(err, ErrGossipKey) {
		t.Errorf("join with another cluster's token: %v, want ErrGossipKey", err)
	}
}
