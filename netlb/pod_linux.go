package netlb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// vethPrefix starts the host end of every pod veth: "sk" and 12 hex
	// characters of the pod name's SHA-256.
	vethPrefix  = "sk"
	vethNameLen = len(vethPrefix) + 12
	podIfName   = "eth0"
	nsfsMagic   = 0x6e736673
)

var podNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$`)

// vethName is the host end's name of pod's veth.
func vethName(pod string) string {
	h := sha256.Sum256([]byte(pod))
	return vethPrefix + hex.EncodeToString(h[:])[:vethNameLen-len(vethPrefix)]
}

// isVethName reports whether name has the form of a pod veth's host end.
func isVethName(name string) bool {
	if len(name) != vethNameLen || !strings.HasPrefix(name, vethPrefix) {
		return false
	}
	_, err := hex.DecodeString(name[len(vethPrefix):])
	return err == nil
}

// NetnsPath returns where pod's network namespace is (or would be) mounted.
func (n *Network) NetnsPath(pod string) string {
	return filepath.Join(n.cfg.RunDir, "netns", pod)
}

// AddPod gives pod a network sandbox: a netns mounted at NetnsPath(pod), a
// veth pair with the host end on the bridge (hairpin on) and eth0 in the
// pod with an IP from the pod CIDR, the default route via the gateway, and
// lo up. It is idempotent by pod name: after a restart it finds and reuses
// the sandbox and IP that the pod already has, and repairs what is missing.
// SetupNode must have run.
func (n *Network) AddPod(ctx context.Context, pod string) (netnsPath string, ip net.IP, err error) {
	if !podNameRE.MatchString(pod) {
		return "", nil, fmt.Errorf("%w: %q", ErrInvalidPodName, pod)
	}
	if ip, err = n.ipam.allocate(pod); err != nil {
		return "", nil, fmt.Errorf("add pod %s: %w", pod, err)
	}
	path := n.NetnsPath(pod)
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	if err := ensureNetns(path); err != nil {
		return "", nil, fmt.Errorf("add pod %s: %w", pod, err)
	}
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	if err := n.plumb(pod, path, ip); err != nil {
		return "", nil, fmt.Errorf("add pod %s: %w", pod, err)
	}
	n.log.Debug("pod network ready", "pod", pod, "ip", ip, "netns", path)
	return path, ip, nil
}

// plumb creates or repairs the veth pair and the pod side's addresses and
// routes.
func (n *Network) plumb(pod, path string, ip net.IP) error {
	br, err := netlink.LinkByName(n.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s (SetupNode not run?): %w", n.cfg.Bridge, err)
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	ph, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer ph.Close()

	hostName := vethName(pod)
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("find veth %s: %w", hostName, err)
		}
		host = nil
	} else if _, perr := ph.LinkByName(podIfName); perr != nil {
		// A host end whose peer is not in this netns belongs to an older
		// netns of the pod (its mount was lost while a process kept the
		// netns alive): start the pair afresh.
		if err := netlink.LinkDel(host); err != nil {
			return fmt.Errorf("delete stale veth %s: %w", hostName, err)
		}
		host = nil
	}
	if host == nil {
		// A pod end left without its host end cannot be: a veth pair
		// dies whole. Still, clear a stray eth0 so that the create works.
		if l, err := ph.LinkByName(podIfName); err == nil {
			if err := ph.LinkDel(l); err != nil {
				return fmt.Errorf("delete stale %s: %w", podIfName, err)
			}
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = hostName
		attrs.MTU = n.cfg.MTU
		attrs.MasterIndex = br.Attrs().Index
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: podIfName, PeerNamespace: netlink.NsFd(int(ns)), PeerMTU: uint32(n.cfg.MTU)}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s: %w", hostName, err)
		}
		if host, err = netlink.LinkByName(hostName); err != nil {
			return fmt.Errorf("find veth %s: %w", hostName, err)
		}
		if err := noIPv6Addrs(host); err != nil {
			return err
		}
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(host, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", hostName, n.cfg.Bridge, err)
		}
	}
	// Hairpin lets a pod's packet to its own service come back out of the
	// port it entered by.
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("hairpin on %s: %w", hostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring up %s: %w", hostName, err)
	}

	lo, err := ph.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in pod: %w", err)
	}
	if err := ph.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo in pod: %w", err)
	}
	eth, err := ph.LinkByName(podIfName)
	if err != nil {
		return fmt.Errorf("find %s in pod: %w", podIfName, err)
	}
	if eth.Attrs().MTU != n.cfg.MTU {
		if err := ph.LinkSetMTU(eth, n.cfg.MTU); err != nil {
			return fmt.Errorf("set mtu of %s: %w", podIfName, err)
		}
	}
	ones, _ := n.cfg.PodCIDR.Mask.Size()
	if err := ph.AddrReplace(eth, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(ones, 32)}}); err != nil {
		return fmt.Errorf("address %s on %s: %w", ip, podIfName, err)
	}
	if err := ph.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring up %s in pod: %w", podIfName, err)
	}
	def := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: n.Gateway(), Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	if err := ph.RouteReplace(def); err != nil {
		return fmt.Errorf("default route in pod: %w", err)
	}
	return nil
}

// noIPv6Addrs keeps the kernel from giving link, a bridge or a pod's host
// end, an IPv6 link-local address as it comes up (call it while link is
// down). The node has no use for one, and one that comes and goes with
// every pod is a change of the host's addresses to whatever watches them
// (Chromium breaks off its loads in flight: docs/ui.md). A kernel without
// IPv6 (EAFNOSUPPORT) makes none anyway.
func noIPv6Addrs(link netlink.Link) error {
	if err := netlink.LinkSetIP6AddrGenMode(link, nl.IN6_ADDR_GEN_MODE_NONE); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("turn off IPv6 addresses on %s: %w", link.Attrs().Name, err)
	}
	return nil
}

// isNetnsMount reports whether path is a mounted network namespace.
func isNetnsMount(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == nsfsMagic
}

// ensureNetns mounts a new network namespace at path unless one is mounted
// there already.
func ensureNetns(path string) error {
	if isNetnsMount(path) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("netns dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("netns mount point %s: %w", path, err)
	}
	f.Close()
	// The new netns is made on a thread of its own, which is never given
	// back to the Go scheduler: the goroutine ends still locked and the
	// runtime ends the thread, so no other goroutine ever runs in it.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("mount netns at %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// Pods returns every pod that holds an IP, with its IP, from the IPAM state
// on disk. After a restart (or a reboot, which empties the run dir) the
// caller compares it with the pods it wants, calls AddPod for those to keep
// (which rebuilds a lost sandbox with the same IP) and RemovePod for the
// rest.
func (n *Network) Pods() (map[string]net.IP, error) {
	unlock, err := n.ipam.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	owners, err := n.ipam.owners()
	if err != nil {
		return nil, err
	}
	pods := make(map[string]net.IP, len(owners))
	for ip, pod := range owners {
		pods[pod] = net.ParseIP(ip).To4()
	}
	return pods, nil
}

// RemovePod deletes pod's veth pair, unmounts and removes its netns and
// frees its IP. It is idempotent: parts already gone are skipped.
func (n *Network) RemovePod(pod string) error {
	if !podNameRE.MatchString(pod) {
		return fmt.Errorf("%w: %q", ErrInvalidPodName, pod)
	}
	return n.removePod(pod)
}

func (n *Network) removePod(pod string) error {
	var errs []error
	if l, err := netlink.LinkByName(vethName(pod)); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete veth of %s: %w", pod, err))
		}
	}
	path := n.NetnsPath(pod)
	if isNetnsMount(path) {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount netns of %s: %w", pod, err))
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove netns file of %s: %w", pod, err))
	}
	if err := n.ipam.release(pod); err != nil {
		errs = append(errs, fmt.Errorf("release ip of %s: %w", pod, err))
	}
	return errors.Join(errs...)
}
