package clustertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHAJoinTwoServers: a second real `skiff server` in its own netns joins
// the first with a token of role server from a file (`--server`,
// `--token-file`), the two form a 2-voter raft cluster, and a write sent
// by the CLI to the follower's TLS API is followed to the leader and lands,
// as does one on the follower's unix socket, which forwards it (both read
// back on the leader's socket); a join secret rotated on the leader reaches
// the follower. The big HA tests are ha_*_test.go.
// Needs root; about 15 s.
func TestHAJoinTwoServers(t *testing.T) {
	c := New(t, Options{Nodes: 2, NoStart: true})
	s0, s1 := c.Nodes[0], c.Nodes[1]
	c.StartProcess(0, "server", "--listen-tcp", "--config", s0.Config, "--log-level", "debug")
	secret := func(role, file string) string {
		var tok string
		c.WaitFor("a token of role "+role, 30*time.Second, func() (bool, error) {
			out, err := c.CLI(0, "token", "create", "--role", role, "--description", "hajoin "+role)
			tok = strings.TrimSpace(out)
			return err == nil, err
		})
		path := filepath.Join(s1.Dir, file)
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	serverTok := secret("server", "server-token")
	c.StartProcess(1, "server", "--listen-tcp", "--server", s0.Addr+":7443", "--token-file", serverTok,
		"--config", s1.Config, "--log-level", "debug")

	ctx := context.Background()
	// Both servers' own views: the follower knows the leader it forwards
	// writes to.
	c.WaitFor("two voters, the first one leading, in both servers' views", 60*time.Second, func() (bool, error) {
		for i := range 2 {
			svs, err := c.Client(i).Servers(ctx)
			if err != nil {
				return false, fmt.Errorf("server %d: %w", i, err)
			}
			voters, leader := 0, ""
			for _, sv := range svs {
				if sv.Suffrage == "voter" {
					voters++
				}
				if sv.Leader {
					leader = sv.Name
				}
			}
			if voters != 2 || leader != s0.Name {
				return false, fmt.Errorf("server %d: servers %+v", i, svs)
			}
		}
		return true, nil
	})
	// A write on the follower's socket is forwarded to the leader (with
	// the follower's server certificate).
	if _, err := c.CLI(1, "token", "create", "--role", "read", "--description", "forwarded-from-the-socket"); err != nil {
		t.Fatalf("a write on the follower's socket: %v", err)
	}
	// Through its TLS API, the client follows Skiff-Leader.
	adminTok := secret("admin", "admin-token")
	out, err := c.Exec(1, bin.skiff, "--api", "https://"+s1.Addr+":7443", "--token-file", adminTok,
		"token", "create", "--role", "read", "--description", "written-through-the-follower")
	if err != nil {
		t.Fatalf("write through the follower's API: %v", err)
	}
	list, err := c.CLI(0, "token", "list")
	if err != nil || !strings.Contains(list, "written-through-the-follower") || !strings.Contains(list, "forwarded-from-the-socket") {
		t.Fatalf("the leader's tokens after the write (%s): %v\n%s", strings.TrimSpace(out), err, list)
	}
	// A join secret rotated on the leader reaches the follower (it is in
	// the store): its `skiff token` prints the new join token.
	rot, err := c.CLI(0, "token", "rotate")
	if err != nil {
		t.Fatal(err)
	}
	c.WaitFor("the follower's join token follows the rotation", 30*time.Second, func() (bool, error) {
		out, err := exec.Command(bin.skiff, "token", "--data-dir", s1.DataDir).CombinedOutput()
		return strings.TrimSpace(string(out)) == strings.TrimSpace(rot), fmt.Errorf("follower prints %q: %v", strings.TrimSpace(string(out)), err)
	})
	members, err := c.CLI(1, "members")
	if err != nil || !strings.Contains(members, "leader") {
		t.Fatalf("skiff members on the follower: %v\n%s", err, members)
	}
	t.Logf("members:\n%s", members)
}
