package netlb

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// sysctl reads a sysctl inside the node's netns.
func (nd *testNode) sysctl(name string) string {
	nd.t.Helper()
	var v string
	nd.must(func() (err error) {
		v, err = readSysctl(name)
		return err
	})
	return v
}

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

// TestCleanupRestoresRouteLocalnet: SetupNode turns route_localnet on;
// Cleanup puts back the value it found and removes the drop rule with the
// other SKIFF-* rules. A restart in between must not take skiff's own 1
// for the node's value.
func TestCleanupRestoresRouteLocalnet(t *testing.T) {
	cases := []struct {
		name   string
		before string
		// olderSkiff: the node was set up by a skiff that did not record
		// the value (its created_tables file is there, the record is not).
		olderSkiff bool
		want       string
	}{
		{name: "was 0", before: "0", want: "0"},
		{name: "was 1", before: "1", want: "1"},
		{name: "set up by an older skiff that kept no record", before: "1", olderSkiff: true, want: "0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nd := newNode(t, "10.88.1.0/24")
			nd.must(func() error { return writeSysctl(routeLocalnet, tc.before) })
			if tc.olderSkiff {
				if err := os.MkdirAll(nd.cfg.StateDir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(nd.cfg.StateDir, tablesFile), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			nd.setup()
			if got := nd.sysctl(routeLocalnet); got != "1" {
				t.Fatalf("after SetupNode: route_localnet=%s, want 1", got)
			}
			if saved := nd.cmd("iptables-nft-save", "-t", "filter"); !strings.Contains(saved, "block incoming localnet connections") {
				t.Errorf("no localnet drop rule after SetupNode:\n%s", saved)
			}
			// A restart: a new Network on the same state finds route_localnet=1
			// (skiff's own) and must keep the value first found.
			restarted, err := New(nd.cfg)
			if err != nil {
				t.Fatal(err)
			}
			nd.must(restarted.SetupNode)
			nd.must(restarted.Cleanup)
			if got := nd.sysctl(routeLocalnet); got != tc.want {
				t.Errorf("after Cleanup: route_localnet=%s, want %s", got, tc.want)
			}
			for _, save := range []string{"iptables-nft-save", "iptables-legacy-save"} {
				if out := nd.cmd(save); strings.Contains(out, "SKIFF") || strings.Contains(out, "localnet") {
					t.Errorf("%s after Cleanup still holds skiff's rules:\n%s", save, out)
				}
			}
			// Idempotent: a second Cleanup finds nothing to restore.
			nd.must(func() error { return writeSysctl(routeLocalnet, "1") })
			nd.must(restarted.Cleanup)
			if got := nd.sysctl(routeLocalnet); got != "1" {
				t.Errorf("a second Cleanup changed route_localnet to %s; it has nothing to restore", got)
			}
		})
	}
}
