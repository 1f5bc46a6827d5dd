package clustertest

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
)

// TestLogsExecOtherNode: `skiff logs` and `skiff exec` against the
// server's socket reach a pod on another node: the server proxies to that
// node's agent (its TLS listener on api_addr, which admits only the
// server's certificate). The output is the container's own, the exit code
// comes back, and the errors of the agent keep their meaning (no such
// container: 404 and exit 1 with its message). The agent's listener
// refuses a client without a certificate and a node's own certificate.
func TestLogsExecOtherNode(t *testing.T) {
	c := New(t, Options{Nodes: 2})
	c.Apply(DemoManifest(4))
	pods := c.WaitAppReady("web", 4, appTimeout)
	const node = 1
	mine := c.podsOn(pods)[node]
	if len(mine) == 0 {
		t.Fatalf("no pod on node %d: %s", node, podSummary(pods))
	}
	pod := mine[0].Name

	out, err := c.CLI(0, "logs", pod)
	if err != nil || !strings.Contains(out, "demo listening on :8080 as "+pod) {
		t.Fatalf("skiff logs %s (on node %d) through the server: %v\n%s", pod, node, err, out)
	}
	out, err = c.CLI(0, "logs", pod, "--tail", "1")
	if err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("skiff logs --tail 1: %v\n%q", err, out)
	}
	out, err = c.CLI(0, "exec", pod, "--", "sh", "-c", "echo hello from $(hostname); exit 3")
	if out != "hello from "+pod+"\n" || err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("skiff exec on node %d: %v\n%q", node, err, out)
	}
	out, err = c.CLI(0, "logs", pod, "-c", "nope")
	if err == nil || !strings.Contains(out, "nope") {
		t.Fatalf("logs of a container the pod lacks: %v\n%s", err, out)
	}

	// The agent's listener: no certificate, or a node's, is refused.
	n := c.Nodes[node]
	id, err := pki.LoadIdentity(filepath.Join(n.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + n.Addr + ":7443/pods/" + pod + "/logs"
	for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "a node's certificate": id.Cert} {
		cfg := &tls.Config{InsecureSkipVerify: true} // the server side is not what is tested
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialIn(c.Nodes[0].NetnsPath()), TLSClientConfig: cfg}}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		resp, err := cl.Do(req)
		switch {
		case err == nil:
			resp.Body.Close()
			t.Errorf("the agent's pod io listener answered %s with %s", name, resp.Status)
		case !strings.Contains(err.Error(), "tls:"):
			// Refused for another reason (no listener, a wrong address):
			// not the check of the caller's certificate this is about.
			t.Errorf("with %s: %v, want the TLS handshake refused", name, err)
		}
	}
}
