package clustertest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netns"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Exec runs a command in node i's netns (nsenter --net) and returns its
// combined output; it does not fail the test.
func (c *Cluster) Exec(i int, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + c.Nodes[i].NetnsPath(), name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in node %d: %w: %s", name, strings.Join(args, " "), i, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// CLI runs `skiff --api unix://<node i's socket> args...` and returns its
// combined output; it does not fail the test.
func (c *Cluster) CLI(i int, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.skiff, append([]string{"--api", "unix://" + c.Nodes[i].Socket()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("skiff %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// DemoManifest is examples/web.toml's app "web" with the given replicas and
// its cluster service "web" (port 80 to the pods' 8080).
func DemoManifest(replicas int) string {
	return fmt.Sprintf(`[app.web]
replicas = %d
restart = "always"

[app.web.container.http]
image = %q
args = ["-listen", ":8080"]
ports = { http = 8080 }
cpu = 0.05
memory = "32Mi"

[app.web.container.http.readiness]
http_get = "/healthz"
port = "http"
period = "1s"

[service.web]
app = "web"
port = 80
target_port = "http"
`, replicas, DemoRef)
}

// Apply writes manifest to a file and runs `skiff apply -f` against node 0.
func (c *Cluster) Apply(manifest string) {
	c.t.Helper()
	f := filepath.Join(c.dir, fmt.Sprintf("manifest-%d.toml", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		c.t.Fatal(err)
	}
	if out, err := c.CLI(0, "apply", "-f", f); err != nil {
		c.t.Fatalf("%v\n%s", err, out)
	}
}

// Pods lists the app's pods (all nodes, from node 0's API) that are not
// being deleted, sorted by name.
func (c *Cluster) Pods(app string) ([]api.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := c.Client(0).ListPods(ctx, app, "")
	if err != nil {
		return nil, err
	}
	var out []api.Pod
	for _, p := range l.Items {
		if p.Spec.Deleting == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ReadyPods checks that the app has exactly count pods, none deleting, all
// Running and ready, and the service svc (if not "") lists each of them as
// an endpoint; it returns the pods or why not.
func (c *Cluster) ReadyPods(app, svc string, count int) ([]api.Pod, error) {
	return c.readyPodsOn(0, app, svc, count)
}

// readyPodsOn is ReadyPods read from node i's API.
func (c *Cluster) readyPodsOn(i int, app, svc string, count int) ([]api.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := c.Client(i).ListPods(ctx, app, "")
	if err != nil {
		return nil, err
	}
	if len(l.Items) != count {
		return nil, fmt.Errorf("%d pods of %s, want %d: %s", len(l.Items), app, count, podSummary(l.Items))
	}
	for _, p := range l.Items {
		if p.Spec.Deleting != nil || p.Status.Phase != api.PodRunning || !p.Status.Ready {
			return nil, fmt.Errorf("pod %s not ready: %s", p.Name, podSummary(l.Items))
		}
	}
	if svc != "" {
		ep, err := c.Client(i).GetEndpoints(ctx, svc)
		if err != nil {
			return nil, err
		}
		if len(ep.Endpoints) != count {
			return nil, fmt.Errorf("%d endpoints of %s, want %d", len(ep.Endpoints), svc, count)
		}
	}
	pods := l.Items
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}

// WaitAppReady waits until ReadyPods(app, app, count) holds: the service is
// named like the app, as in DemoManifest.
func (c *Cluster) WaitAppReady(app string, count int, timeout time.Duration) []api.Pod {
	c.t.Helper()
	var pods []api.Pod
	c.WaitFor(fmt.Sprintf("%d ready pods of %s", count, app), timeout, func() (bool, error) {
		p, err := c.ReadyPods(app, app, count)
		pods = p
		return err == nil, err
	})
	return pods
}

// podSummary is "name@node phase ready" of each pod, for messages.
func podSummary(pods []api.Pod) string {
	var s []string
	for _, p := range pods {
		del := ""
		if p.Spec.Deleting != nil {
			del = " deleting"
		}
		s = append(s, fmt.Sprintf("%s@%s %s ready=%v%s", p.Name, p.Spec.Node, p.Status.Phase, p.Status.Ready, del))
	}
	return strings.Join(s, ", ")
}

// PerNode counts pods by node name.
func PerNode(pods []api.Pod) map[string]int {
	m := map[string]int{}
	for _, p := range pods {
		m[p.Spec.Node]++
	}
	return m
}

// VIP returns the cluster IP:port of a service.
func (c *Cluster) VIP(svc string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.Client(0).GetService(ctx, svc)
	if err != nil {
		c.t.Fatal(err)
	}
	if s.Status.ClusterIP == "" {
		c.t.Fatalf("service %s has no cluster IP", svc)
	}
	return fmt.Sprintf("%s:%d", s.Status.ClusterIP, s.Spec.Port)
}

// PodNetns is the netns mount of a pod on node i (netlb mounts each pod's
// netns under <run_dir>/netns/<pod>).
func (c *Cluster) PodNetns(i int, pod string) string {
	return filepath.Join(c.Nodes[i].RunDir, "netns", pod)
}

// PodNetnsDir holds node i's pod netns mounts.
func (c *Cluster) PodNetnsDir(i int) string { return filepath.Join(c.Nodes[i].RunDir, "netns") }

// GetFromNode does GET http://addr/ from node i's netns, on a new
// connection, and returns the body.
func (c *Cluster) GetFromNode(i int, addr string) (string, error) {
	return httpGetIn(c.Nodes[i].NetnsPath(), addr)
}

// GetFromPod does GET http://addr/ from the netns of pod on node i.
func (c *Cluster) GetFromPod(i int, pod, addr string) (string, error) {
	return httpGetIn(c.PodNetns(i, pod), addr)
}

// Hits is the outcome of a series of requests: answers per pod name (the
// demo answers "hello from <pod>") and the failures.
type Hits struct {
	ByPod  map[string]int
	Failed int
	Errors []string // the first few
}

// Hit does n GETs of addr from the netns at nsPath (see Node.NetnsPath and
// PodNetns), each on a new connection, and gives up after 5 failures (each
// may take the 2s timeout).
func Hit(nsPath, addr string, n int) Hits {
	h := Hits{ByPod: map[string]int{}}
	for range n {
		if h.Failed >= 5 {
			break
		}
		body, err := httpGetIn(nsPath, addr)
		if err != nil {
			h.Failed++
			if len(h.Errors) < 5 {
				h.Errors = append(h.Errors, err.Error())
			}
			continue
		}
		h.ByPod[strings.TrimSpace(strings.TrimPrefix(body, "hello from "))]++
	}
	return h
}

// httpGetIn does GET http://addr/ with a socket made in the netns at
// nsPath, with a 2s timeout.
func httpGetIn(nsPath, addr string) (string, error) {
	return GetIn(nsPath, addr, 2*time.Second)
}

// GetIn does GET http://addr/ on a new connection whose socket is made in
// the netns at nsPath, and returns the body of a 200.
func GetIn(nsPath, addr string, timeout time.Duration) (string, error) {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: dialIn(nsPath)}
	cl := &http.Client{Timeout: timeout, Transport: tr}
	resp, err := cl.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: http %d", addr, resp.StatusCode)
	}
	return string(b), nil
}

// dialIn returns a dialer whose sockets are made in the netns at nsPath:
// the dialing goroutine's thread enters it for the socket call and comes
// back; a socket keeps the netns it was made in.
func dialIn(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			return nil, fmt.Errorf("open netns %s: %w", nsPath, err)
		}
		defer target.Close()
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			return nil, fmt.Errorf("enter netns %s: %w", nsPath, err)
		}
		d := net.Dialer{}
		conn, derr := d.DialContext(ctx, network, addr)
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with the goroutine
			// instead of serving others in the wrong netns.
			if conn != nil {
				conn.Close()
			}
			return nil, fmt.Errorf("leave netns %s: %w", nsPath, err)
		}
		runtime.UnlockOSThread()
		return conn, derr
	}
}

// IptablesNAT returns `iptables-save -t nat` of node i's netns.
func (c *Cluster) IptablesNAT(i int) (string, error) {
	return c.Exec(i, "iptables-save", "-t", "nat")
}

// LBHoldsAny reports which of the IPs node i's nat table still mentions
// (as "IP:" in a DNAT target or "IP/32" in a rule).
func (c *Cluster) LBHoldsAny(i int, ips []string) ([]string, error) {
	rules, err := c.IptablesNAT(i)
	if err != nil {
		return nil, err
	}
	var held []string
	for _, ip := range ips {
		if strings.Contains(rules, ip+":") || strings.Contains(rules, ip+"/32") {
			held = append(held, ip)
		}
	}
	return held, nil
}

// WaitLBHolds waits until node i's nat table names every one of pods' IPs:
// its load balancer has caught up with their endpoints (the store lists
// them a little before a node's rules do).
func (c *Cluster) WaitLBHolds(i int, pods []api.Pod, timeout time.Duration) {
	c.t.Helper()
	ips := podIPs(pods)
	c.WaitFor(fmt.Sprintf("node %d's nat table to name every pod %v", i, ips), timeout, func() (bool, error) {
		held, err := c.LBHoldsAny(i, ips)
		return err == nil && len(held) == len(ips), fmt.Errorf("it names %v (%v)", held, err)
	})
}

// ContainerPIDs maps pod name to its containers' PIDs as reported in
// status ("pod/container" → pid).
func ContainerPIDs(pods []api.Pod) map[string]int {
	m := map[string]int{}
	for _, p := range pods {
		for _, cs := range p.Status.Containers {
			m[p.Name+"/"+cs.Name] = cs.PID
		}
	}
	return m
}

// AppProcs lists the processes named comm (a container's entrypoint, "app"
// for the demo image) in node i's cgroup parent: what really runs there,
// whatever the API says.
func (c *Cluster) AppProcs(i int, comm string) []string {
	var out []string
	for _, pid := range procsInCgroup(c.Nodes[i].CgroupParent) {
		b, err := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			out = append(out, pid)
		}
	}
	return out
}
