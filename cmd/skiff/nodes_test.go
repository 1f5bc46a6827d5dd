package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// TestNodesAndPods plays a node's agent through the Go client (register a
// node, report pods running and ready) and checks what the CLI shows of it:
// nodes, pods, endpoints, describe, rollout status.
func TestNodesAndPods(t *testing.T) {
	addr := startServer(t)
	c, err := client.New(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	now := time.Now()
	node := &api.Node{Meta: api.Meta{Name: "edge-01"},
		Spec: api.NodeSpec{Labels: map[string]string{"site": "shop-1"}},
		Status: api.NodeStatus{
			Addresses:   []string{"10.0.0.5"},
			Capacity:    api.Resources{MilliCPU: 2000, Memory: 2 << 30, Pods: 110},
			Allocatable: api.Resources{MilliCPU: 1900, Memory: 1984 << 20, Pods: 110},
			Conditions:  []api.Condition{{Type: api.NodeReady, Status: true, LastHeartbeat: now, LastChange: now}},
		}}
	got, err := c.PutNode(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.PodCIDR == "" {
		t.Errorf("registered node has no pod CIDR: %+v", got.Spec)
	}
	web := writeFile(t, t.TempDir(), "web.toml", webManifest)
	must(t, addr, "apply", "-f", web)

	// Wait for the scheduler to bind both pods, then report them running.
	var pods []api.Pod
	for {
		l, err := c.ListPods(ctx, "web", "edge-01")
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) == 2 {
			pods = l.Items
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pods not bound to edge-01: %+v", l.Items)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	for i := range pods {
		p := &pods[i]
		started := time.Now()
		p.Status = api.PodStatus{Phase: api.PodRunning, Ready: true, IP: "10.88.0." + string(rune('2'+i)), StartedAt: &started,
			Containers: []api.ContainerStatus{{Name: "http", State: "running", Ready: true, Restarts: i, StartedAt: &started}}}
		if _, err := c.PutPodStatus(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	out := must(t, addr, "rollout", "status", "app", "web", "--timeout", "30s")
	if !strings.HasSuffix(out, "app/web successfully rolled out\n") {
		t.Errorf("rollout status:\n%s", out)
	}
	out = must(t, addr, "get", "nodes")
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 8 || f[0] != "edge-01" || f[1] != "Ready" || f[4] != "2/110" || f[5] != "1.9" {
		t.Errorf("get nodes:\n%s", out)
	}
	out = must(t, addr, "get", "pods")
	if strings.Count(out, "Running") != 2 || strings.Count(out, "1/1") != 2 || !strings.Contains(out, "10.88.0.2") {
		t.Errorf("get pods:\n%s", out)
	}
	out = must(t, addr, "describe", "node", "edge-01")
	for _, want := range []string{"Labels:            site=shop-1", "Allocated:         cpu 500m of 1.9, memory 128Mi of 1.9Gi, 2 pods", pods[0].Name} {
		if !strings.Contains(out, want) {
			t.Errorf("describe node lacks %q:\n%s", want, out)
		}
	}
	out = must(t, addr, "describe", "pod", pods[1].Name)
	for _, want := range []string{"Node:              edge-01", "Phase:             Running", "Restarts:      1"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe pod lacks %q:\n%s", want, out)
		}
	}
	// The endpoints controller picks the ready pods up.
	for {
		out = must(t, addr, "get", "endpoints", "web")
		if strings.Contains(out, "10.88.0.2:8080") && strings.Contains(out, "10.88.0.3:8080") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("endpoints never listed both pods:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	if out := must(t, addr, "delete", "pod", pods[0].Name); out != "pod/"+pods[0].Name+" deleted\n" {
		t.Errorf("delete pod said %q", out)
	}
}
