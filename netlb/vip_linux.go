package netlb

// The LAN side of a load-balancer service: its address (VIP) on the node's
// LAN interface and the gratuitous ARP that moves the LAN's neighbours to
// this node. Which node holds an address is the orchestrator's choice; this
// file only adds, removes, lists and announces.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// vipLabelSuffix marks the addresses skiff added as VIPs: the address label
// is the link's name and this suffix ("eth0:skvip"), so that a restarted
// agent and `skiff agent --cleanup` find them and nothing else. A link
// whose name leaves no room for it (over 9 bytes, IFNAMSIZ being 16 with
// the NUL) gets unlabelled addresses, which only the agent that knows the
// service addresses removes.
const vipLabelSuffix = ":skvip"

// VIPLink is the LAN interface that carries a node's VIPs.
type VIPLink struct {
	// Name and Index of the link; MAC is its hardware address, the one
	// gratuitous ARP announces.
	Name  string
	Index int
	MAC   net.HardwareAddr
}

// FindVIPLink returns the link that holds addr (the node's advertise
// address): the VIPs go on the interface through which the LAN reaches
// the node. A loopback or non-Ethernet link is an error: no ARP there.
func FindVIPLink(addr net.IP) (*VIPLink, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if !a.IP.Equal(addr) {
			continue
		}
		l, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			return nil, fmt.Errorf("link of %s: %w", addr, err)
		}
		at := l.Attrs()
		if at.Flags&net.FlagLoopback != 0 || len(at.HardwareAddr) != 6 {
			return nil, fmt.Errorf("%s is on %s, which has no Ethernet address to announce VIPs with", addr, at.Name)
		}
		return &VIPLink{Name: at.Name, Index: at.Index, MAC: at.HardwareAddr}, nil
	}
	return nil, fmt.Errorf("no link holds the advertise address %s", addr)
}

func (l *VIPLink) label() string {
	if s := l.Name + vipLabelSuffix; len(s) <= 15 {
		return s
	}
	return ""
}

func vipAddr(ip net.IP, label string) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: ip.To4(), Mask: net.CIDRMask(32, 32)}, Label: label}
}

// Add puts ip/32 on the link; an address already there is no error.
func (l *VIPLink) Add(ip net.IP) error {
	if ip.To4() == nil {
		return fmt.Errorf("vip %v: want an IPv4 address", ip)
	}
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: l.Name, Index: l.Index}}
	if err := netlink.AddrAdd(link, vipAddr(ip, l.label())); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add vip %s to %s: %w", ip, l.Name, err)
	}
	return nil
}

// Del removes ip/32 from the link; an address not there is no error.
func (l *VIPLink) Del(ip net.IP) error {
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: l.Name, Index: l.Index}}
	err := netlink.AddrDel(link, vipAddr(ip, ""))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove vip %s from %s: %w", ip, l.Name, err)
	}
	return nil
}

// Held lists the VIPs skiff labelled on the link, and also the /32s in
// known that are on it (the unlabelled addresses of a long link name).
func (l *VIPLink) Held(known map[string]bool) ([]net.IP, error) {
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: l.Name, Index: l.Index}}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Name, err)
	}
	var out []net.IP
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if ones != 32 {
			continue
		}
		if (l.label() != "" && a.Label == l.label()) || known[a.IP.String()] {
			out = append(out, a.IP)
		}
	}
	return out, nil
}

// CleanupVIPs removes every address skiff labelled as a VIP, on any link
// (`skiff agent --cleanup`).
func CleanupVIPs() error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	var errs []error
	for _, a := range addrs {
		l, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			continue
		}
		vl := VIPLink{Name: l.Attrs().Name, Index: a.LinkIndex}
		if ones, _ := a.Mask.Size(); ones == 32 && vl.label() != "" && a.Label == vl.label() {
			errs = append(errs, vl.Del(a.IP))
		}
	}
	return errors.Join(errs...)
}

// Announce sends gratuitous ARP for ip from the link's MAC: a request and a
// reply, both with ip as sender and target, to the broadcast address. A
// neighbour that has ip in its ARP cache updates the entry to this MAC at
// once (Linux does so for both, whatever arp_accept says, for an entry it
// has); the kernel then answers ARP requests for ip as for any of its
// addresses.
func (l *VIPLink) Announce(ip net.IP) error {
	ip4 := ip.To4()
	if ip4 == nil {
		return fmt.Errorf("announce %v: want an IPv4 address", ip)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("arp socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: l.Index, Halen: 6}
	copy(to.Addr[:], broadcastMAC)
	for _, op := range []uint16{1, 2} { // request, reply
		if err := unix.Sendto(fd, arpFrame(l.MAC, ip4, op), 0, to); err != nil {
			return fmt.Errorf("send gratuitous arp for %s on %s: %w", ip, l.Name, err)
		}
	}
	return nil
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpFrame is an Ethernet frame (padded to the 60-byte minimum) carrying a
// gratuitous ARP of ip from mac: operation op, sender and target ip, target
// hardware address the broadcast one for a reply and zero for a request.
func arpFrame(mac net.HardwareAddr, ip net.IP, op uint16) []byte {
	b := make([]byte, 60)
	copy(b[0:6], broadcastMAC)
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_ARP)
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)      // Ethernet
	binary.BigEndian.PutUint16(a[2:4], 0x0800) // IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], mac)
	copy(a[14:18], ip)
	if op == 2 {
		copy(a[18:24], broadcastMAC)
	}
	copy(a[24:28], ip)
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// AnnounceBurst is how gratuitous ARP is repeated after a takeover: at
// once, then after each of these delays (a frame lost on a busy LAN, or a
// switch that learns late, gets another).
var AnnounceBurst = []time.Duration{200 * time.Millisecond, time.Second, 2 * time.Second}
