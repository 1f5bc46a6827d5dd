package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// webManifest is examples/web.toml with this run's node port, plus an app
// with a liveness (http), a readiness (tcp) and a startup (exec) probe.
func webManifest(nodePort int) string {
	b, err := os.ReadFile("../../examples/web.toml")
	if err != nil {
		panic(err)
	}
	s := strings.Replace(string(b), "node_port = 30080", fmt.Sprintf("node_port = %d", nodePort), 1)
	return s + `
[app.live]
replicas = 1
termination_grace = "2s"

[app.live.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
ports = { http = 8080 }

[app.live.container.http.liveness]
http_get = "/healthz"
port = "http"
period = "1s"
failure_threshold = 2

[app.live.container.http.readiness]
tcp = true
port = 8080
period = "1s"

[app.live.container.http.startup]
exec = ["sh", "-c", "test -x /app"]
period = "1s"
`
}

// TestE2E runs examples/web.toml on a real `skiff server --agent` and
// walks it through the life of an app: serve, crash, probes, delete,
// scale, agent crash, teardown.
func TestE2E(t *testing.T) {
	n := newNode(t)
	n.start()
	manifest := filepath.Join(n.dir, "web.toml")
	if err := os.WriteFile(manifest, []byte(webManifest(n.nodePort)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := n.skiff("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	pods := n.waitReady("web", "web", 3, 60*time.Second)
	vip := n.vip("web")

	n.run(t, "vip reaches all replicas", func(t *testing.T) {
		// The endpoints object lists all three a few ms before the node's
		// rules do: wait for the data plane, then count.
		n.waitFor("the VIP to reach 3 pods", 10*time.Second, func() (bool, error) {
			seen := map[string]bool{}
			for range 30 {
				if body, err := get("http://" + vip + "/"); err == nil {
					seen[body] = true
				}
			}
			return len(seen) == 3, nil
		})
		seen := map[string]int{}
		for range 60 {
			body, err := get("http://" + vip + "/")
			if err != nil {
				t.Fatalf("request to %s: %v", vip, err)
			}
			seen[strings.TrimSpace(strings.TrimPrefix(body, "hello from "))]++
		}
		for _, p := range pods {
			if seen[p.Name] == 0 {
				t.Errorf("pod %s got none of 60 requests: %v", p.Name, seen)
			}
		}
		if body, err := get(fmt.Sprintf("http://127.0.0.1:%d/", n.nodePort)); err != nil || !strings.HasPrefix(body, "hello from web-") {
			t.Errorf("node port: %q %v", body, err)
		}
	})

	n.run(t, "logs and exec", func(t *testing.T) {
		p := pods[0].Name
		out, err := n.skiff("logs", p, "--tail", "5")
		if err != nil || !strings.Contains(out, "demo listening") {
			t.Errorf("skiff logs: %v\n%s", err, out)
		}
		out, err = n.skiff("exec", p, "--", "hostname")
		if err != nil || strings.TrimSpace(out) != p {
			t.Errorf("skiff exec hostname: %v %q", err, out)
		}
		_, err = n.skiff("exec", p, "--", "sh", "-c", "exit 3")
		if code := exitCode(err); code != 3 {
			t.Errorf("skiff exec exit 3: exit code %d (%v)", code, err)
		}
		// The agent hands the manifest's (default) seccomp choice to the
		// runtime: the pod's process runs under a filter, without new
		// privileges.
		out, err = n.skiff("exec", p, "--", "cat", "/proc/1/status")
		if err != nil || !strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "NoNewPrivs:\t1") {
			t.Errorf("skiff exec cat /proc/1/status: %v, want Seccomp 2 and NoNewPrivs 1:\n%s", err, out)
		}
		if out, err := n.skiff("logs", p, "-c", "nope"); err == nil {
			t.Errorf("skiff logs -c nope: no error: %s", out)
		}
		if out, err := n.skiff("logs", p, "-c", "http", "--tail", "1"); err != nil || !strings.Contains(out, "demo listening") {
			t.Errorf("skiff logs -c http: %v\n%s", err, out)
		}
	})

	n.run(t, "killed container restarts", func(t *testing.T) {
		p := pods[1]
		pid := p.Status.Containers[0].PID
		if pid == 0 {
			t.Fatalf("no pid in status: %+v", p.Status)
		}
		// Follow the log across the restart: the new run's first line
		// arrives on the same stream.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rc, err := n.c.Logs(ctx, p.Name, client.LogOptions{Follow: true, Tail: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(rc)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		if err := killPid(pid); err != nil {
			t.Fatal(err)
		}
		seen := 0
		for seen < 2 {
			l, ok := <-lines
			if !ok {
				t.Fatalf("followed log ended after %d 'demo listening' lines", seen)
			}
			if strings.Contains(l, "demo listening") {
				seen++
			}
		}
		n.waitFor("restart", 30*time.Second, func() (bool, error) {
			q, err := n.c.GetPod(context.Background(), p.Name)
			if err != nil {
				return false, err
			}
			c := q.Status.Containers[0]
			return c.Restarts > p.Status.Containers[0].Restarts && c.PID != pid && q.Status.Ready, nil
		})
	})

	n.run(t, "readiness takes a pod out and back", func(t *testing.T) {
		p := pods[2]
		if out, err := n.skiff("exec", p.Name, "--", "touch", "/tmp/fail-health"); err != nil {
			t.Fatalf("exec: %v %s", err, out)
		}
		n.waitFor("pod out of endpoints", 20*time.Second, func() (bool, error) {
			return !inEndpoints(n, "web", p.Name), nil
		})
		if out, err := n.skiff("exec", p.Name, "--", "rm", "/tmp/fail-health"); err != nil {
			t.Fatalf("exec: %v %s", err, out)
		}
		n.waitFor("pod back in endpoints", 20*time.Second, func() (bool, error) {
			return inEndpoints(n, "web", p.Name), nil
		})
	})

	n.run(t, "liveness failure restarts", func(t *testing.T) {
		lp := n.waitReady("live", "", 1, 30*time.Second)[0]
		before := lp.Status.Containers[0].Restarts
		if _, err := httpPost("http://" + lp.Status.IP + ":8080/fail-health"); err != nil {
			t.Fatal(err)
		}
		n.waitFor("liveness restart", 30*time.Second, func() (bool, error) {
			q, err := n.c.GetPod(context.Background(), lp.Name)
			return err == nil && q.Status.Containers[0].Restarts > before && q.Status.Containers[0].State == "running", err
		})
	})

	n.run(t, "deleted pod is replaced", func(t *testing.T) {
		victim := pods[0].Name
		if err := n.c.DeletePod(context.Background(), victim); err != nil {
			t.Fatal(err)
		}
		n.waitFor("replacement", 40*time.Second, func() (bool, error) {
			if _, err := n.c.GetPod(context.Background(), victim); err == nil {
				return false, nil
			}
			cur := n.waitReadyNow("web", 3)
			return cur, nil
		})
	})

	n.run(t, "scale to 5 and back to 1 under load", func(t *testing.T) {
		if _, err := n.c.Scale(context.Background(), "web", 5); err != nil {
			t.Fatal(err)
		}
		n.waitReady("web", "web", 5, 60*time.Second)
		l := loop("http://" + vip + "/")
		if _, err := n.c.Scale(context.Background(), "web", 1); err != nil {
			t.Fatal(err)
		}
		n.waitReady("web", "web", 1, 60*time.Second)
		ok, fail, errs := l.end()
		t.Logf("scale down under load: %d requests ok, %d failed", ok, fail)
		if fail > 0 || ok == 0 {
			t.Errorf("scale down: %d of %d requests failed: %v", fail, ok+fail, errs)
		}
	})

	n.run(t, "kill -9 of skiff keeps workloads", func(t *testing.T) {
		if _, err := n.c.Scale(context.Background(), "web", 3); err != nil {
			t.Fatal(err)
		}
		before := n.waitReady("web", "web", 3, 60*time.Second)
		epBefore, err := n.c.GetEndpoints(context.Background(), "web")
		if err != nil {
			t.Fatal(err)
		}
		// The agent keeps a local cache to run from without a server.
		n.waitFor("agent cache with the pods", 10*time.Second, func() (bool, error) {
			b, err := os.ReadFile(filepath.Join(n.dataDir, "agent-cache.json"))
			return err == nil && strings.Contains(string(b), before[0].Name), nil
		})
		l := loop("http://" + vip + "/")
		n.kill()
		n.start()
		// READY came after the first sync: every pod is adopted and ready.
		if !n.waitReadyNow("web", 3) {
			t.Errorf("pods not all ready at READY")
		}
		// Let the new agent run a few probe periods and resyncs.
		deadline := time.Now().Add(3 * time.Second)
		n.waitFor("a few seconds of the new agent", 10*time.Second, func() (bool, error) { return time.Now().After(deadline), nil })
		after := n.waitReady("web", "web", 3, 30*time.Second)
		ok, fail, errs := l.end()
		t.Logf("kill -9 and restart under load: %d requests ok, %d failed", ok, fail)
		if fail > 0 || ok == 0 {
			t.Errorf("%d of %d requests failed: %v", fail, ok+fail, errs)
		}
		// No endpoint flap: the endpoints object was not rewritten.
		if epAfter, err := n.c.GetEndpoints(context.Background(), "web"); err != nil || epAfter.Revision != epBefore.Revision {
			t.Errorf("endpoints rewritten across the restart: revision %d -> %+v (%v)", epBefore.Revision, epAfter, err)
		}
		for i := range before {
			b, a := before[i].Status.Containers[0], after[i].Status.Containers[0]
			if before[i].Name != after[i].Name || b.PID != a.PID || b.Restarts != a.Restarts {
				t.Errorf("pod %s: pid %d restarts %d before, pod %s pid %d restarts %d after", before[i].Name, b.PID, b.Restarts, after[i].Name, a.PID, a.Restarts)
			}
		}
	})

	n.run(t, "kill -9 in the middle of a scale-up converges", func(t *testing.T) {
		if _, err := n.c.Scale(context.Background(), "web", 6); err != nil {
			t.Fatal(err)
		}
		// Kill as soon as the new pods are bound, while they start.
		n.waitFor("new pods bound", 10*time.Second, func() (bool, error) {
			l, err := n.c.ListPods(context.Background(), "web", "e2e-"+n.id)
			return err == nil && len(l.Items) == 6, err
		})
		n.kill()
		n.start()
		n.waitReady("web", "web", 6, 60*time.Second)
		if _, err := n.c.Scale(context.Background(), "web", 3); err != nil {
			t.Fatal(err)
		}
		n.waitReady("web", "web", 3, 60*time.Second)
	})

	n.run(t, "image pull failure is ImagePullBackOff", func(t *testing.T) {
		m := demoManifest("badimg", 1)
		m.Apps["badimg"].Containers["http"].Image = "127.0.0.1:1/nope:1"
		m.Apps["badimg"].Containers["http"].Readiness = nil
		if _, err := n.c.Apply(context.Background(), m, false); err != nil {
			t.Fatal(err)
		}
		var pod string
		n.waitFor("ImagePullBackOff", 30*time.Second, func() (bool, error) {
			l, err := n.c.ListPods(context.Background(), "badimg", "")
			if err != nil || len(l.Items) != 1 {
				return false, err
			}
			p := l.Items[0]
			pod = p.Name
			return p.Status.Phase == api.PodPending && p.Status.Reason == agentReasonImagePullBackOff &&
				len(p.Status.Containers) == 1 && p.Status.Containers[0].Reason == agentReasonImagePullBackOff, nil
		})
		n.waitFor("a pull failure event", 10*time.Second, func() (bool, error) {
			evs, err := n.c.ListEvents(context.Background(), "pods/"+pod)
			if err != nil {
				return false, err
			}
			for _, e := range evs.Items {
				if e.Type == api.EventWarning && e.Reason == "Failed" && strings.Contains(e.Message, "pull image") {
					return true, nil
				}
			}
			return false, nil
		})
		if err := n.c.DeleteApp(context.Background(), "badimg"); err != nil {
			t.Fatal(err)
		}
		n.waitFor("badimg pod gone", 30*time.Second, func() (bool, error) {
			l, err := n.c.ListPods(context.Background(), "badimg", "")
			return err == nil && len(l.Items) == 0, err
		})
	})

	n.run(t, "delete the app leaves nothing", func(t *testing.T) {
		if out, err := n.skiff("delete", "-f", manifest); err != nil {
			t.Fatalf("delete: %v\n%s", err, out)
		}
		n.waitFor("no pods", 60*time.Second, func() (bool, error) {
			l, err := n.c.ListPods(context.Background(), "", "")
			return err == nil && len(l.Items) == 0, err
		})
		ctrs, _ := filepath.Glob(filepath.Join(n.runDir, "containers", "containers", "*"))
		ips, _ := filepath.Glob(filepath.Join(n.dataDir, "netlb", "ipam", "*"))
		var podIPs []string
		for _, ip := range ips {
			if b := filepath.Base(ip); strings.Count(b, ".") == 3 {
				podIPs = append(podIPs, b)
			}
		}
		netns, _ := filepath.Glob(filepath.Join(n.runDir, "netns", "*"))
		if len(ctrs) > 0 || len(podIPs) > 0 || len(netns) > 0 {
			t.Errorf("left after delete: containers %v, IPs %v, netns %v", ctrs, podIPs, netns)
		}
		if m := mountsUnder(n.dir); len(m) > 0 {
			t.Errorf("mounts left after delete: %v", m)
		}
		n.waitFor("no service rules", 10*time.Second, func() (bool, error) {
			return !strings.Contains(iptablesSave(t), n.serviceNet), nil
		})
	})
}

// waitReadyNow says whether the app has count ready pods, none deleting.
func (n *node) waitReadyNow(app string, count int) bool {
	l, err := n.c.ListPods(context.Background(), app, "")
	if err != nil || len(l.Items) != count {
		return false
	}
	for _, p := range l.Items {
		if p.Spec.Deleting != nil || !p.Status.Ready {
			return false
		}
	}
	return true
}

func inEndpoints(n *node, svc, pod string) bool {
	ep, err := n.c.GetEndpoints(context.Background(), svc)
	if err != nil {
		return false
	}
	for _, e := range ep.Endpoints {
		if e.Pod == pod {
			return true
		}
	}
	return false
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	type coder interface{ ExitCode() int }
	if c, ok := err.(coder); ok {
		return c.ExitCode()
	}
	return -1
}

func killPid(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func httpPost(url string) (string, error) {
	resp, err := httpClient.Post(url, "text/plain", nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode), nil
}

// agentReasonImagePullBackOff is agent.ReasonImagePullBackOff (this test
// package stays external).
const agentReasonImagePullBackOff = "ImagePullBackOff"
