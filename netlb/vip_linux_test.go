package netlb

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestVIPLink, as root in two namespaces the test made, joined by a veth:
// the VIP goes on the link that holds the node's address, labelled, once
// however often it is added; a gratuitous ARP moves the other side's
// neighbour entry (set to a wrong MAC first) to this link's MAC; the
// kernel answers ARP for the VIP; Del and CleanupVIPs remove only the
// labelled addresses.
func TestVIPLink(t *testing.T) {
	a := newNode(t, "10.88.1.0/24")
	b := newNode(t, "10.88.2.0/24")
	ipa, _ := link(t, a, b, 77)
	vip := net.IPv4(192, 168, 77, 240).To4()
	var l *VIPLink
	a.must(func() error {
		if _, err := FindVIPLink(net.IPv4(127, 0, 0, 1)); err == nil {
			return errors.New("FindVIPLink(127.0.0.1): no error, want one (loopback has no ARP)")
		}
		var err error
		l, err = FindVIPLink(ipa)
		return err
	})
	if l.Name != "up0" || len(l.MAC) != 6 {
		t.Fatalf("link %+v, want up0 with a MAC", l)
	}
	a.must(func() error {
		for range 2 {
			if err := l.Add(vip); err != nil {
				return err
			}
		}
		held, err := l.Held(nil)
		if err != nil {
			return err
		}
		if len(held) != 1 || !held[0].Equal(vip) {
			t.Errorf("held %v, want [%s]", held, vip)
		}
		return nil
	})
	if out := a.cmd("ip", "-o", "-4", "addr", "show", "dev", "up0"); !strings.Contains(out, vip.String()+"/32") || !strings.Contains(out, "up0:skvip") {
		t.Errorf("addresses of up0:\n%s\nwant %s/32 labelled up0:skvip", out, vip)
	}

	// b has a stale entry for the VIP with a wrong MAC: the gratuitous
	// ARP moves it.
	b.cmd("ip", "neigh", "replace", vip.String(), "lladdr", "02:00:00:00:00:01", "dev", "up0", "nud", "stale")
	a.must(func() error { return l.Announce(vip) })
	neigh := func() string {
		f := strings.Fields(b.cmd("ip", "neigh", "show", vip.String(), "dev", "up0"))
		for i, w := range f {
			if w == "lladdr" && i+1 < len(f) {
				return f[i+1]
			}
		}
		return ""
	}
	waitFor(t, "b's neighbour entry names a's MAC after the gratuitous ARP", func() bool { return neigh() == l.MAC.String() })

	// No entry: the kernel answers b's ARP request (a TCP connect to a
	// closed port is refused by a, so it got there).
	b.cmd("ip", "neigh", "flush", "dev", "up0")
	b.must(func() error {
		c, err := net.DialTimeout("tcp", vip.String()+":1", 2*time.Second)
		if err == nil {
			c.Close()
			return errors.New("connect to port 1 worked")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
		return nil
	})
	if got := neigh(); got != l.MAC.String() {
		t.Errorf("b resolved %s to %q, want a's %s", vip, got, l.MAC)
	}

	// Del twice; CleanupVIPs leaves an unlabelled /32.
	a.must(func() error {
		for range 2 {
			if err := l.Del(vip); err != nil {
				return err
			}
		}
		if held, err := l.Held(nil); err != nil || len(held) != 0 {
			t.Errorf("after Del held %v (%v)", held, err)
		}
		if err := l.Add(vip); err != nil {
			return err
		}
		up, err := netlink.LinkByName("up0")
		if err != nil {
			return err
		}
		other := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 168, 77, 250).To4(), Mask: net.CIDRMask(32, 32)}}
		if err := netlink.AddrAdd(up, other); err != nil {
			return err
		}
		return CleanupVIPs()
	})
	out := a.cmd("ip", "-o", "-4", "addr", "show", "dev", "up0")
	if strings.Contains(out, vip.String()+"/") || !strings.Contains(out, "192.168.77.250/32") || !strings.Contains(out, ipa.String()+"/24") {
		t.Errorf("after CleanupVIPs:\n%s\nwant the VIP gone and the other addresses kept", out)
	}
}

// waitFor polls cond every 10 ms for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
	}
}
