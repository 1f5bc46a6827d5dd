package clustertest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestNamesServerDown: a pod on an agent node resolves service names
// through its node's resolver (busybox nslookup from the pod's netns, to
// the pod's gateway), and keeps resolving them after the server (node 0)
// is killed with SIGKILL: the resolver answers from the agent's view.
func TestNamesServerDown(t *testing.T) {
	c := New(t, Options{Nodes: 2})
	c.Apply(DemoManifest(2))
	pods := c.WaitAppReady("web", 2, appTimeout)
	clusterIP, _, _ := strings.Cut(c.VIP("web"), ":")
	const agent = 1
	mine := c.podsOn(pods)[agent]
	if len(mine) == 0 {
		t.Fatalf("no pod on node %d: %s", agent, podSummary(pods))
	}
	pod := mine[0]
	gw := net.ParseIP(pod.Status.IP).To4()
	gw[3] = 1
	lookup := func(name string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "nsenter", "--net="+c.PodNetns(agent, pod.Name),
			"busybox", "nslookup", name, gw.String()).CombinedOutput()
		return string(out), err
	}
	want := "Address: " + clusterIP
	c.WaitFor("web.skiff from the pod with the server up", 30*time.Second, func() (bool, error) {
		out, err := lookup("web.skiff")
		return err == nil && strings.Contains(out, want), fmt.Errorf("%v: %s", err, out)
	})

	c.Kill(0)
	killed := time.Now()
	for i := range 5 {
		out, err := lookup("web.skiff")
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("lookup %d of web.skiff with the server killed: %v, want %s:\n%s", i, err, clusterIP, out)
		}
	}
	out, err := lookup("web.pods.skiff")
	if err != nil || !strings.Contains(out, "Address: "+pod.Status.IP) {
		t.Errorf("web.pods.skiff with the server killed: %v, want %s:\n%s", err, pod.Status.IP, out)
	}
	if out, err := lookup("nope.skiff"); err == nil || !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("nope.skiff with the server killed: %v, want NXDOMAIN:\n%s", err, out)
	}
	t.Logf("6 cluster names answered in %v with the server killed", time.Since(killed).Round(time.Millisecond))
}
