package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// The trust model against a real `skiff server --listen-tcp` with real
// certificates: nodes join here as an agent does (a key made on "the
// node", a certificate request sent with the join token) and then act
// with their certificates; tokens come from `skiff token create`, node
// deletion from `skiff delete node`. See docs/security.md.

// tcpNode is a node that joined the server: its certificate and a client
// that presents it.
type tcpNode struct {
	name string
	h    *pki.Holder
	c    *client.Client
}

// joinNode joins name with token (K10...::secret) over TLS pinned by the
// token, as `skiff agent` does.
func joinNode(t *testing.T, s *server, token pki.Token, name string) (*tcpNode, error) {
	t.Helper()
	jc, err := client.NewWithConfig(client.Config{Addr: "https://" + s.tcpAddr, Token: token.Secret, TLS: pki.ClientTLSConfig(token)})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.CloseIdleConnections()
	key, err := pki.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewNodeCSR(key, name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := jc.Join(context.Background(), api.JoinRequest{Node: name, CSR: string(csr)})
	if err != nil {
		return nil, err
	}
	id, err := pki.NewIdentity(key, []byte(resp.Certificate), []byte(resp.CA))
	if err != nil {
		t.Fatal(err)
	}
	if id.CAHash() != token.CAHash || len(resp.GossipKey) != 32 || len(resp.Gossip) == 0 {
		t.Fatalf("join answer: ca %s gossip key %d bytes, gossip %v", id.CAHash(), len(resp.GossipKey), resp.Gossip)
	}
	n := &tcpNode{name: name, h: &pki.Holder{}}
	n.h.Set(id)
	n.c, err = client.NewWithConfig(client.Config{Addr: "https://" + s.tcpAddr, TLS: pki.NodeTLSConfig(token.CAHash, n.h)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.c.CloseIdleConnections)
	return n, nil
}

// register puts the node's own Node, Ready with room for pods.
func (n *tcpNode) register(t *testing.T) *api.Node {
	t.Helper()
	now := time.Now().UTC()
	out, err := n.c.PutNode(context.Background(), &api.Node{Meta: api.Meta{Name: n.name}, Status: api.NodeStatus{
		Capacity:    api.Resources{MilliCPU: 4000, Memory: 8 << 30, Pods: 100},
		Allocatable: api.Resources{MilliCPU: 4000, Memory: 8 << 30, Pods: 100},
		Addresses:   []string{"127.0.0.1"},
		Conditions:  []api.Condition{{Type: api.NodeReady, Status: true, LastHeartbeat: now, LastChange: now}},
	}})
	if err != nil {
		t.Fatalf("%s registers itself: %v", n.name, err)
	}
	return out
}

// joinToken is the server's join token, as `skiff token` prints it.
func (s *server) joinToken() pki.Token {
	s.t.Helper()
	out, err := exec.Command(skiffBin, "token", "--data-dir", s.dataDir).CombinedOutput()
	if err != nil {
		s.t.Fatalf("skiff token: %v\n%s", err, out)
	}
	tok, err := pki.ParseToken(string(out))
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// cli runs the skiff CLI against the server's unix socket.
func (s *server) cli(args ...string) (string, error) {
	out, err := exec.Command(skiffBin, append([]string{"--api", "unix://" + s.runDir + "/skiff.sock"}, args...)...).CombinedOutput()
	return string(out), err
}

// wantRefusal checks that err is an API error of status whose message has
// msg.
func wantRefusal(t *testing.T, what string, err error, status int, msg string) {
	t.Helper()
	var e *client.APIError
	if !errors.As(err, &e) || e.Status != status || !strings.Contains(e.Message, msg) {
		t.Errorf("%s: %v, want %d with %q", what, err, status, msg)
		return
	}
	t.Logf("%s: %d %s", what, e.Status, e.Message)
}

// TestNodeIdentity: what a node's certificate, a join token and a read
// token may not do (403 naming the rule), what they may, and that `skiff
// delete node` refuses a node's certificate at its next request.
func TestNodeIdentity(t *testing.T) {
	s := startServer(t, serverOpts{tcp: true})
	ctx := context.Background()
	join := s.joinToken()
	edge1, err := joinNode(t, s, join, "edge-01")
	if err != nil {
		t.Fatal(err)
	}
	edge2, err := joinNode(t, s, join, "edge-02")
	if err != nil {
		t.Fatal(err)
	}
	n1 := edge1.register(t)
	edge2.register(t)
	if who, err := edge1.c.Whoami(ctx); err != nil || who.Role != api.RoleNode || who.Node != "edge-01" {
		t.Fatalf("whoami: %+v %v", who, err)
	}
	manifest := strings.Replace(webManifest, `"replicas":2`, `"mode":"per-node"`, 1)
	s.mustDo("POST", "/v1/apply", manifest, 200, nil)
	var pod1 api.Pod // web's pod on edge-01
	waitFor(t, "a pod of web bound to edge-01", func() bool {
		l, err := edge1.c.ListPods(ctx, "", "edge-01")
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) == 1 {
			pod1 = l.Items[0]
		}
		return len(l.Items) == 1
	})

	t.Run("node certificate", func(t *testing.T) {
		err := edge2.c.DeleteApp(ctx, "web")
		wantRefusal(t, "edge-02 deletes an app", err, 403, "node:edge-02 may not DELETE /v1/apps/web: a node may only")
		_, err = edge2.c.Logs(ctx, pod1.Name, client.LogOptions{})
		wantRefusal(t, "edge-02 reads the logs of edge-01's pod", err, 403,
			fmt.Sprintf("node:edge-02 may only read the logs of pods bound to it (pod %s is on edge-01)", pod1.Name))
		_, err = edge2.c.Exec(ctx, pod1.Name, api.ExecRequest{Command: []string{"id"}}, nil)
		wantRefusal(t, "edge-02 execs in edge-01's pod", err, 403, "node:edge-02 may only exec in pods bound to it")
		bad := pod1
		bad.Status = api.PodStatus{Phase: api.PodRunning, IP: "10.88.200.9"}
		_, err = edge1.c.PutPodStatus(ctx, &bad)
		wantRefusal(t, "edge-01 reports an IP outside its pod CIDR", err, 403,
			fmt.Sprintf("node:edge-01 may only report pod IPs inside its pod CIDR %s (pod %s status.ip 10.88.200.9)", n1.Spec.PodCIDR, pod1.Name))
		_, err = edge2.c.PutPodStatus(ctx, &bad)
		wantRefusal(t, "edge-02 reports the status of edge-01's pod", err, 403,
			fmt.Sprintf("node:edge-02 may only update pods bound to it (pod %s is on edge-01)", pod1.Name))
		_, err = edge2.c.PutNode(ctx, &api.Node{Meta: api.Meta{Name: "edge-01"}})
		wantRefusal(t, "edge-02 registers as edge-01", err, 403, "node:edge-02 may only register and update its own Node (not edge-01)")
		_, err = edge2.c.ListPods(ctx, "", "")
		wantRefusal(t, "edge-02 lists every pod", err, 403, "node:edge-02 may only list the pods bound to it")

		good := pod1
		good.Status = api.PodStatus{Phase: api.PodRunning, IP: strings.TrimSuffix(n1.Spec.PodCIDR, "0/24") + "9"}
		if _, err := edge1.c.PutPodStatus(ctx, &good); err != nil {
			t.Errorf("edge-01 reports its own pod's status: %v", err)
		}
		if _, err := edge2.c.ListServices(ctx); err != nil {
			t.Errorf("edge-02 lists services: %v", err)
		}
	})

	t.Run("join token", func(t *testing.T) {
		c, err := client.NewWithConfig(client.Config{Addr: "https://" + s.tcpAddr, Token: join.Secret, TLS: pki.ClientTLSConfig(join)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdleConnections()
		_, err = c.ListPods(ctx, "", "")
		wantRefusal(t, "the join token lists pods", err, 403, "the join token may not GET /v1/pods: a join token may only join (POST /v1/join)")
		err = c.DeleteApp(ctx, "web")
		wantRefusal(t, "the join token deletes an app", err, 403, "the join token may not DELETE /v1/apps/web")
		// Nor may it take over a node that is running.
		_, err = joinNode(t, s, join, "edge-01")
		wantRefusal(t, "a join as edge-01", err, 409, "node edge-01 already has a current certificate")
	})

	t.Run("read token", func(t *testing.T) {
		tok := s.createToken("read", "--ttl", "1h")
		c, err := client.NewWithConfig(client.Config{Addr: "https://" + s.tcpAddr, Token: tok.Secret, TLS: pki.ClientTLSConfig(tok)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdleConnections()
		if _, err := c.ListPods(ctx, "", ""); err != nil {
			t.Errorf("read token GET pods: %v", err)
		}
		if _, err := c.GetApp(ctx, "web"); err != nil {
			t.Errorf("read token GET an app: %v", err)
		}
		_, err = c.Apply(ctx, nil, true)
		wantRefusal(t, "read token POST apply", err, 403, "may not POST /v1/apply: a read token may only GET")
		_, err = c.PutApp(ctx, &api.App{Meta: api.Meta{Name: "web"}})
		wantRefusal(t, "read token PUT an app", err, 403, "may not PUT /v1/apps/web: a read token may only GET")
		err = c.DeleteApp(ctx, "web")
		wantRefusal(t, "read token DELETE an app", err, 403, "may not DELETE /v1/apps/web: a read token may only GET")
	})

	t.Run("expired and unknown tokens", func(t *testing.T) {
		tok := s.createToken("admin", "--ttl", "1s")
		c, err := client.NewWithConfig(client.Config{Addr: "https://" + s.tcpAddr, Token: tok.Secret, TLS: pki.ClientTLSConfig(tok)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdleConnections()
		var last error
		waitFor(t, "the 1s token to expire", func() bool {
			_, last = c.Whoami(ctx)
			return last != nil
		})
		wantRefusal(t, "an expired token", last, 401, "expired at")
		unknown := tok
		unknown.Secret = "ffffffffffff.0123456789abcdef"
		c2, _ := client.NewWithConfig(client.Config{Addr: "https://" + s.tcpAddr, Token: unknown.Secret, TLS: pki.ClientTLSConfig(unknown)})
		defer c2.CloseIdleConnections()
		_, err = c2.ListNodes(ctx)
		wantRefusal(t, "an unknown token", err, 401, "unknown token")
	})

	t.Run("skiff delete node", func(t *testing.T) {
		if _, err := edge2.c.Whoami(ctx); err != nil { // a live keep-alive connection
			t.Fatal(err)
		}
		if out, err := s.cli("delete", "node", "edge-02"); err != nil || out != "node/edge-02 deleted\n" {
			t.Fatalf("skiff delete node: %v %q", err, out)
		}
		// The very next request, on the same connection.
		_, err := edge2.c.ListServices(ctx)
		wantRefusal(t, "edge-02's next request", err, 401, "node:edge-02 was deleted at")
		if !client.IsRevoked(err) {
			t.Errorf("code: %v, want revoked", err)
		}
		code, data := s.do("GET", "/v1/nodes/edge-02", nil)
		if code != 404 {
			t.Errorf("edge-02's Node after the delete: %d %s", code, data)
		}
		// Its pod goes through the node-loss path: deleted by the node
		// controller (a per-node app has nowhere else to put it).
		waitFor(t, "edge-02's pod gone", func() bool {
			var l api.List[api.Pod]
			s.mustDo("GET", "/v1/pods?node=edge-02", nil, 200, &l)
			return len(l.Items) == 0
		})
		// A fresh join under the name is allowed (the join token's holder
		// may join) and gets a new certificate; the old one stays refused.
		again, err := joinNode(t, s, join, "edge-02")
		if err != nil {
			t.Fatalf("join again after the delete: %v", err)
		}
		if who, err := again.c.Whoami(ctx); err != nil || who.Node != "edge-02" {
			t.Errorf("the new certificate: %+v %v", who, err)
		}
		if _, err := edge2.c.Whoami(ctx); !client.IsRevoked(err) {
			t.Errorf("the old certificate after the new join: %v", err)
		}
	})

	t.Run("rotated join token", func(t *testing.T) {
		out, err := s.cli("token", "rotate")
		if err != nil {
			t.Fatalf("skiff token rotate: %v %s", err, out)
		}
		_, err = joinNode(t, s, join, "edge-05")
		wantRefusal(t, "a join with the rotated-out token", err, 401, "missing or wrong bearer token")
		if _, err := edge1.c.Whoami(ctx); err != nil {
			t.Errorf("edge-01 after the rotation: %v", err)
		}
		if _, err := joinNode(t, s, s.joinToken(), "edge-05"); err != nil {
			t.Errorf("a join with the new token: %v", err)
		}
	})
}
