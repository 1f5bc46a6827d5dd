package netlb

import (
	"bufio"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// serveLoopback listens on 127.0.0.1 inside the node's netns and answers
// every connection with "local-only". It returns the port.
func (nd *testNode) serveLoopback() int {
	nd.t.Helper()
	var ln net.Listener
	nd.must(func() (err error) {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	})
	nd.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("local-only\n"))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// readLine dials addr from inside ns and returns the first line the server
// sends.
func readLine(ns netns.NsHandle, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	if err := inNS(ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// nsCmd runs a command inside the netns mounted at path.
func nsCmd(t testing.TB, path string, args ...string) {
	t.Helper()
	if out, err := exec.Command("nsenter", append([]string{"--net=" + path}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
}

// routeLoopbackVia makes the netns at path send 127.0.0.1 to gw, as an
// attacker can: without its own 127.0.0.1 (taking lo down alone keeps the
// local routes of 127/8) the route is used, and route_localnet lets it send
// to and take answers from loopback addresses on other links.
func routeLoopbackVia(t testing.TB, path string, gw net.IP) {
	t.Helper()
	nsCmd(t, path, "ip", "link", "set", "lo", "down")
	nsCmd(t, path, "ip", "addr", "flush", "dev", "lo")
	nsCmd(t, path, "ip", "route", "add", "127.0.0.1/32", "via", gw.String())
	nsCmd(t, path, "sh", "-c", "echo 1 > /proc/sys/"+routeLocalnet)
}

// TestLocalnetNotReachableFromLAN: route_localnet=1, which NodePorts on
// 127.0.0.1 need, must not let another host reach services that listen on
// the node's 127.0.0.1 only (CVE-2020-8558). The "LAN host" is a netns on a
// veth to the node that routes 127.0.0.1 to the node's address; a pod does
// the same through its gateway.
func TestLocalnetNotReachableFromLAN(t *testing.T) {
	nd := newNode(t, "10.88.1.0/24")
	lan := newNode(t, "10.88.9.0/24") // only its netns is used
	_, nodeIP := link(t, lan, nd, 79)
	nd.setup()
	web := nd.addPod("ln-web")
	svc := []Service{{Name: "web", ClusterIP: net.ParseIP("10.96.0.50"), Port: 80, NodePort: 30080}}
	if err := nd.sync(svc, map[string][]Endpoint{"web": eps(8080, web)}); err != nil {
		t.Fatal(err)
	}
	port := nd.serveLoopback()
	secret := svcAddr("127.0.0.1", port)

	t.Run("node port on 127.0.0.1 answers on the node", func(t *testing.T) {
		if name, _, err := get(nd.nodeNS(), "127.0.0.1:30080"); err != nil || name != "ln-web" {
			t.Fatalf("got %q, %v; want ln-web", name, err)
		}
	})
	t.Run("a 127.0.0.1 server answers on the node", func(t *testing.T) {
		if got, err := readLine(nd.nodeNS(), secret, 3*time.Second); err != nil || got != "local-only" {
			t.Fatalf("got %q, %v; want local-only", got, err)
		}
	})

	pod := nd.addPod("ln-attacker")
	routeLoopbackVia(t, lan.path, nodeIP)
	routeLoopbackVia(t, pod.path, nd.net.Gateway())
	for _, a := range []struct {
		name string
		from netns.NsHandle
	}{
		{"LAN host", lan.nodeNS()},
		{"pod", pod.ns},
	} {
		t.Run(a.name, func(t *testing.T) {
			// The control: the crafted route does carry the attacker's
			// packets to the node's 127.0.0.1 and the answers back (a
			// NodePort there is DNATed to a pod, as on any node address),
			// so that the refusal below is the rule's doing, not a broken
			// path.
			if name, _, err := get(a.from, "127.0.0.1:30080"); err != nil || name != "ln-web" {
				t.Fatalf("control: node port through the route: got %q, %v; want ln-web", name, err)
			}
			got, err := readLine(a.from, secret, 2*time.Second)
			if err == nil {
				t.Fatalf("reached %s, which listens on the node's 127.0.0.1 only: %q", secret, got)
			}
			t.Logf("blocked as wanted: %v", err)
		})
	}
}
