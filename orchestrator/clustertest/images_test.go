package clustertest

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vishvananda/netns"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// TestImagesAcrossNodes: `skiff images pull REF --nodes all` against the
// server's socket pulls on both nodes (the server's own through its agent
// in the process, the other through its agent's TLS listener), and
// `skiff images ls --nodes all` shows the image on both with the same
// digest. A pull that fails on a node names the node and the registry's
// message; an unknown node is a 400 naming the field; a node that is
// gone is its own error and the other node still answers.
//
// The registry is go-containerregistry's, in this process, one handler
// served on 127.0.0.1:PORT inside every node's netns (a loopback registry
// is reached over plain HTTP) and on the host's loopback to push.
func TestImagesAcrossNodes(t *testing.T) {
	c := New(t, Options{Nodes: 2})
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	port := serveInNodes(t, c, reg)
	host := serveOnHost(t, reg)

	layer, err := imagetest.Layer([]imagetest.File{{Path: "hello.txt", Data: []byte("hello " + c.id + "\n")}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagetest.Image(v1.Config{Cmd: []string{"/bin/true"}}, layer)
	if err != nil {
		t.Fatal(err)
	}
	if err := imagetest.Push(host+"/skt/hello:v1", img); err != nil {
		t.Fatal(err)
	}
	dg, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	short := dg.Hex[:12]
	ref := fmt.Sprintf("127.0.0.1:%d/skt/hello:v1", port)
	n0, n1 := c.Nodes[0].Name, c.Nodes[1].Name

	out, err := c.CLI(0, "images", "pull", ref, "--nodes", "all")
	if err != nil {
		t.Fatalf("images pull --nodes all: %v\n%s", err, out)
	}
	for _, n := range []string{n0, n1} {
		if !regexp.MustCompile(regexp.QuoteMeta(n) + `\s+` + regexp.QuoteMeta(ref) + `\s+` + short).MatchString(out) {
			t.Errorf("images pull --nodes all: no row of %s with %s %s:\n%s", n, ref, short, out)
		}
	}
	out, err = c.CLI(0, "images", "ls", "--nodes", "all")
	if err != nil {
		t.Fatalf("images ls --nodes all: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "NODE") {
		t.Errorf("images ls --nodes all: no header:\n%s", out)
	}
	for _, n := range []string{n0, n1} {
		if !regexp.MustCompile(regexp.QuoteMeta(n) + `\s+` + regexp.QuoteMeta(ref) + `\s+` + short).MatchString(out) {
			t.Errorf("images ls --nodes all: %s does not show %s %s:\n%s", n, ref, short, out)
		}
	}
	t.Logf("images ls --nodes all:\n%s", out)

	// A tag the registry lacks, on node 1 alone: its error, the registry's words.
	out, err = c.CLI(0, "images", "pull", ref+"-missing", "--nodes", n1)
	if err == nil || !strings.Contains(out, n1+": pull "+ref+"-missing: ") || strings.Count(out, "pull "+ref+"-missing:") != 1 ||
		!strings.Contains(out, "MANIFEST_UNKNOWN") ||
		!strings.Contains(out, "failed on 1 of 1 nodes") {
		t.Errorf("pull of a missing tag on %s: %v\n%s", n1, err, out)
	}
	t.Logf("images pull of a missing tag:\n%s", out)
	// An unknown node, a bad reference: 400s naming the field.
	out, err = c.CLI(0, "images", "pull", ref, "--nodes", n0+",nope")
	if err == nil || !strings.Contains(out, "nodes: no node nope") {
		t.Errorf("pull on an unknown node: %v\n%s", err, out)
	}
	out, err = c.CLI(0, "images", "pull", "Bad Ref!", "--nodes", "all")
	if err == nil || !strings.Contains(out, "ref") || !strings.Contains(out, "could not parse reference") {
		t.Errorf("pull of a bad reference: %v\n%s", err, out)
	}

	// Node 1 gone: its own error (not Ready, or not reachable until the
	// server sees it go), and node 0 still lists.
	c.Kill(1)
	out, err = c.CLI(0, "images", "ls", "--nodes", "all")
	if err == nil || !regexp.MustCompile(regexp.QuoteMeta(n0)+`\s+`+regexp.QuoteMeta(ref)).MatchString(out) ||
		!regexp.MustCompile(regexp.QuoteMeta(n1)+`: (node not Ready|node not reachable)`).MatchString(out) {
		t.Errorf("images ls --nodes all with %s killed: %v\n%s", n1, err, out)
	}
}

// serveInNodes serves h on 127.0.0.1:PORT in every node's netns, the same
// PORT in each, and returns it.
func serveInNodes(t *testing.T, c *Cluster, h http.Handler) int {
	t.Helper()
	return serveInNodesEach(t, c, func(int) http.Handler { return h })
}

// serveInNodesEach serves handler(i) on 127.0.0.1:PORT in node i's netns,
// the same PORT in each, and returns it.
func serveInNodesEach(t *testing.T, c *Cluster, handler func(i int) http.Handler) int {
	t.Helper()
	for try := 0; try < 20; try++ {
		port := 20000 + int(randN(20000))
		var lns []net.Listener
		for _, n := range c.Nodes {
			ln, err := listenIn(n.NetnsPath(), fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) < len(c.Nodes) {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		for i, ln := range lns {
			serveOn(t, ln, handler(i))
		}
		return port
	}
	t.Fatal("no free port on every node's loopback")
	return 0
}

// serveOnHost serves h on the host's loopback until t ends and returns its
// address (to push images to the test registry).
func serveOnHost(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, ln, h)
	return ln.Addr().String()
}

// serveOn serves h on ln until t ends.
func serveOn(t *testing.T, ln net.Listener, h http.Handler) {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
}

// listenIn listens on addr inside the netns at nsPath.
func listenIn(nsPath, addr string) (net.Listener, error) {
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with the goroutine.
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	runtime.UnlockOSThread()
	return ln, lerr
}
