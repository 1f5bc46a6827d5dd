package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// nodeCert reads node i's certificate from its <data_dir>/pki.
func (c *Cluster) nodeCert(i int) (*pki.Identity, error) {
	return pki.LoadIdentity(filepath.Join(c.Nodes[i].DataDir, "pki"))
}

// TestNodeCertificates: real agents join with the join token and then use
// only their certificates. With a 6 s lifetime a certificate renews itself
// every 4 s without a restart, and the node stays Ready with heartbeats
// sent after its first certificate ended; its token file is not needed
// any more. `skiff delete node` refuses the node at once and its agent
// stops; its pods are replaced on the other node. With its certificate
// removed and the join token, it joins again.
func TestNodeCertificates(t *testing.T) {
	t.Setenv("SKIFF_NODE_CERT_VALIDITY", "6s") // the server's; agents ignore it
	c := New(t, Options{Nodes: 3, NoStart: true})
	c.Start(0)
	for _, i := range []int{1, 2} {
		start := time.Now()
		c.Start(i)
		t.Logf("node %d: agent process start to node Ready in %.2fs (join with certificate issue included)", i, time.Since(start).Seconds())
	}
	name := c.Nodes[1].Name
	first, err := c.nodeCert(1)
	if err != nil {
		t.Fatal(err)
	}
	if first.Node() != name || first.Leaf.NotAfter.Sub(first.Leaf.NotBefore) > 2*time.Minute {
		t.Fatalf("node 1's certificate: node %s, %s to %s", first.Node(), first.Leaf.NotBefore, first.Leaf.NotAfter)
	}
	if err := os.Remove(filepath.Join(c.Nodes[1].Dir, "token")); err != nil {
		t.Fatal(err)
	}
	pid := c.Nodes[1].PID()
	serials := []string{pki.SerialHex(first.Leaf)}
	c.WaitFor("two renewals of node 1's certificate", 30*time.Second, func() (bool, error) {
		id, err := c.nodeCert(1)
		if err != nil {
			return false, err
		}
		if s := pki.SerialHex(id.Leaf); !slices.Contains(serials, s) {
			serials = append(serials, s)
		}
		return len(serials) >= 3, fmt.Errorf("serials %v", serials)
	})
	if c.Nodes[1].PID() != pid {
		t.Fatalf("node 1's agent restarted (pid %d, was %d)", c.Nodes[1].PID(), pid)
	}
	cl := c.Client(0)
	c.WaitFor("a heartbeat of node 1 sent after its first certificate ended", 30*time.Second, func() (bool, error) {
		n, err := cl.GetNode(context.Background(), name)
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == api.NodeReady && cond.Status && cond.LastHeartbeat.After(first.Leaf.NotAfter.Add(time.Second)) {
				return true, nil
			}
		}
		return false, fmt.Errorf("conditions %+v, first certificate ended %s", n.Status.Conditions, first.Leaf.NotAfter)
	})
	t.Logf("node 1 renewed its certificate %d times in one process and stays Ready", len(serials)-1)

	c.Apply(DemoManifest(4))
	pods := c.WaitAppReady("web", 4, appTimeout)
	t.Logf("pods per node before the delete: %v", PerNode(pods))

	deleted := time.Now()
	if out, err := c.CLI(0, "delete", "node", name); err != nil || out != "node/"+name+" deleted\n" {
		t.Fatalf("skiff delete node: %v %q", err, out)
	}
	code := c.WaitExit(1, 30*time.Second)
	c.Nodes[1].proc = nil
	log := tailFile(c.Nodes[1].Log, 5)
	if code == 0 || !strings.Contains(log, "revoked") {
		t.Errorf("node 1's agent after the delete: exit %d, log:\n%s", code, log)
	}
	t.Logf("node 1's agent stopped %.1fs after the delete: %s", time.Since(deleted).Seconds(), tailFile(c.Nodes[1].Log, 1))
	if _, err := cl.GetNode(context.Background(), name); err == nil {
		t.Errorf("the server still lists node %s", name)
	}
	pods = c.WaitAppReady("web", 4, appTimeout)
	if per := PerNode(pods); per[name] != 0 {
		t.Errorf("pods on the deleted node: %v", per)
	}

	// Deliberately again: without its certificate and with the join token.
	if err := os.Remove(filepath.Join(c.Nodes[1].DataDir, "pki", pki.NodeCertFile)); err != nil {
		t.Fatal(err)
	}
	c.Start(1)
	again, err := c.nodeCert(1)
	if err != nil || slices.Contains(serials, pki.SerialHex(again.Leaf)) {
		t.Fatalf("node 1's certificate after joining again: %v", err)
	}
}
