package netlb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeProto tags every route netlb adds (host-gw routes, the service CIDR
// route), so that SetPeers and Cleanup find them and nothing else. 83 is
// unassigned in /etc/iproute2/rt_protos.
const routeProto netlink.RouteProtocol = 83

// tablesFile, in StateDir, lists the iptables tables that did not exist
// before netlb first touched the node; Cleanup deletes them when they are
// left empty, so that iptables-save reads the same as before install.
const tablesFile = "created_tables"

// Network is the pod network and service load balancer of one node. Its
// methods act in the network namespace of the calling thread (see the
// package doc). It is safe for concurrent use.
type Network struct {
	cfg  Config
	log  *slog.Logger
	ipam *ipam
	ipt  *iptables.IPTables

	restoreCmd, saveCmd string

	// mu serialises Sync and guards the sync state below.
	mu sync.Mutex
	// applied holds the rules text of every SKIFF-* chain that the last
	// successful restore left in force; nil forces a full sync.
	// Its per-service rules are reused for services that did not change.
	applied *ruleSet
	// last is the rule set of the last successful Sync, kept across failed
	// ones: conntrack clean-up compares against it, and SetupNode re-syncs
	// it.
	last *ruleSet
	// gens counts, per SKIFF-SEP-* chain, the restores that wrote it (and
	// so reset its counters); see counters_linux.go.
	gens map[string]uint64
	// Sync, for conntrack clean-up and for SetupNode's own sync.
}

// New validates cfg and finds the iptables tools of cfg.Backend. It touches
// nothing in the kernel.
func New(cfg Config) (*Network, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Network{
		cfg:  cfg,
		log:  cfg.Logger.With("component", "netlb"),
		ipam: newIPAM(filepath.Join(cfg.StateDir, "ipam"), cfg.PodCIDR),
	}
	bin := "iptables-" + string(cfg.Backend)
	paths := map[string]*string{bin: nil, bin + "-restore": &n.restoreCmd, bin + "-save": &n.saveCmd}
	var iptPath string
	for name, dst := range paths {
		p, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("find %s (apt-get install iptables): %w", name, err)
		}
		if dst == nil {
			iptPath = p
		} else {
			*dst = p
		}
	}
	ipt, err := iptables.New(iptables.Path(iptPath))
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	n.ipt = ipt
	return n, nil
}

// Config returns the configuration the Network was made with.
func (n *Network) Config() Config { return n.cfg }

// Gateway returns the bridge's address, the pods' default gateway.
func (n *Network) Gateway() net.IP { return gatewayOf(n.cfg.PodCIDR) }

// routeLocalnet lets 127.0.0.0/8 be routed to and from other links, which
// NodePorts on 127.0.0.1 need (see localnetDrop for the rule that keeps
// other hosts off the node's loopback services).
const routeLocalnet = "net/ipv4/conf/all/route_localnet"

// writeSysctl sets a sysctl of the calling thread's network namespace;
// name is its path under /proc/sys.
func writeSysctl(name, value string) error {
	p := "/proc/sys/" + name
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// SetupNode makes the node ready for pods and services: sysctls, the
// bridge with the gateway address, a route to the service CIDR through the
// bridge (so that the node reaches service IPs without a default route),
// and the SKIFF-* chains with their jump rules (masquerade included). It
// notes, once, the values of the sysctls that Cleanup puts back. It is
// idempotent and safe to call after a restart.
func (n *Network) SetupNode() error {
	const brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	if _, err := os.Stat(brnf); err != nil {
		// Not built in and not loaded: try loading it once.
		if out, merr := exec.Command("modprobe", "br_netfilter").CombinedOutput(); merr != nil {
			return fmt.Errorf("%w: %w: %s", ErrBridgeNetfilter, merr, bytes.TrimSpace(out))
		}
		if _, err := os.Stat(brnf); err != nil {
			return fmt.Errorf("%w: %w", ErrBridgeNetfilter, err)
		}
	}
	if err := n.recordSysctls(); err != nil {
		return err
	}
	for _, s := range [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/bridge/bridge-nf-call-iptables", "1"},
	} {
		if err := writeSysctl(s[0], s[1]); err != nil {
			return err
		}
	}
	if err := n.recordCreatedTables(); err != nil {
		return err
	}
	br, err := n.ensureBridge()
	if err != nil {
		return err
	}
	// Pods reach service IPs through the bridge and back out of it: the
	// kernel would answer with ICMP redirects ("reach 10.96.x.y directly"),
	// which pods accept and then ARP for the VIP in vain.
	for _, dev := range []string{"all", n.cfg.Bridge} {
		if err := writeSysctl("net/ipv4/conf/"+dev+"/send_redirects", "0"); err != nil {
			return err
		}
	}
	gw := n.Gateway()
	svcRoute := &netlink.Route{
		LinkIndex: br.Attrs().Index, Dst: n.cfg.ServiceCIDR, Src: gw,
		Scope: netlink.SCOPE_LINK, Protocol: routeProto,
	}
	if err := netlink.RouteReplace(svcRoute); err != nil {
		return fmt.Errorf("route service cidr %s: %w", n.cfg.ServiceCIDR, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.applied = nil // SetupNode always writes every chain and ensures every jump
	svcs, eps := n.last.input()
	if err := n.syncLocked(svcs, eps); err != nil {
		return err
	}
	// Only now that the localnet drop rule is in force: route_localnet
	// without it opens the node's 127.0.0.1 services to the LAN.
	return writeSysctl(routeLocalnet, "1")
}

// ensureBridge creates the bridge if needed and sets its MTU, address and
// state.
func (n *Network) ensureBridge() (netlink.Link, error) {
	name := n.cfg.Bridge
	br, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("find bridge %s: %w", name, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.MTU = n.cfg.MTU
		err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		made := err == nil // not one made meanwhile by another
		if br, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("find bridge %s: %w", name, err)
		}
		if made {
			if err := noIPv6Addrs(br); err != nil {
				return nil, err
			}
		}
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("link %s exists and is a %s, not a bridge", name, br.Type())
	}
	if br.Attrs().MTU != n.cfg.MTU {
		if err := netlink.LinkSetMTU(br, n.cfg.MTU); err != nil {
			return nil, fmt.Errorf("set mtu of %s: %w", name, err)
		}
	}
	ones, _ := n.cfg.PodCIDR.Mask.Size()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.Gateway(), Mask: net.CIDRMask(ones, 32)}}
	if err := netlink.AddrReplace(br, addr); err != nil {
		return nil, fmt.Errorf("address %s on %s: %w", addr.IPNet, name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bring up %s: %w", name, err)
	}
	return br, nil
}

// recordCreatedTables notes, once, which of our tables iptables does not
// have yet; Cleanup deletes those again when they are left empty.
func (n *Network) recordCreatedTables() error {
	p := filepath.Join(n.cfg.StateDir, tablesFile)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	out, err := n.save()
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "*") {
			present[line[1:]] = true
		}
	}
	var created []string
	for _, t := range []string{"filter", "nat"} {
		if !present[t] {
			created = append(created, t)
		}
	}
	if err := os.MkdirAll(n.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if err := os.WriteFile(p, []byte(strings.Join(created, "\n")), 0o600); err != nil {
		return fmt.Errorf("record created tables: %w", err)
	}
	return nil
}

// save runs iptables-save for our backend.
func (n *Network) save() ([]byte, error) {
	return runSave(n.saveCmd)
}

func runSave(cmd string) ([]byte, error) {
	var stderr bytes.Buffer
	c := exec.Command(cmd)
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(cmd), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// restore feeds data to iptables-restore --noflush.
func runRestore(cmd string, data []byte) error {
	args := []string{"--noflush"}
	if strings.Contains(filepath.Base(cmd), "legacy") {
		args = append(args, "-w", "5")
	}
	c := exec.Command(cmd, args...)
	c.Stdin = bytes.NewReader(data)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		return fmt.Errorf("%w: %w: %s", ErrRestore, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// cleanupRestore builds the restore input that deletes every rule in a
// non-SKIFF chain that jumps to a SKIFF-* chain and every SKIFF-* chain,
// from iptables-save output. It also returns, per table, whether anything
// but empty ACCEPT built-in chains would be left. It fails when the output
// cannot be read whole (a line past 1 MiB): what was not read could hold
// our jumps, or another's rules in a table it would call empty.
func cleanupRestore(saved []byte) (data []byte, nonEmpty map[string]bool, err error) {
	var b bytes.Buffer
	nonEmpty = map[string]bool{}
	var tbl string
	var dels, chains []string
	flush := func() {
		if tbl == "" || len(dels)+len(chains) == 0 {
			return
		}
		b.WriteString("*" + tbl + "\n")
		for _, c := range chains {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, d := range dels {
			b.WriteString(d + "\n")
		}
		for _, c := range chains {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	sc := bufio.NewScanner(bytes.NewReader(saved))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			tbl, dels, chains = line[1:], nil, nil
		case line == "COMMIT":
			flush()
			tbl = ""
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) > 0 && strings.HasPrefix(f[0], chainPrefix) {
				chains = append(chains, f[0])
			} else if len(f) > 1 && f[1] != "ACCEPT" {
				nonEmpty[tbl] = true // a user chain not ours, or a policy set
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || strings.HasPrefix(f[1], chainPrefix) {
				continue
			}
			if strings.Contains(line, " -j "+chainPrefix) || strings.Contains(line, " -g "+chainPrefix) {
				dels = append(dels, "-D"+strings.TrimPrefix(line, "-A"))
			} else {
				nonEmpty[tbl] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read iptables-save output: %w", err)
	}
	return b.Bytes(), nonEmpty, nil
}

// Cleanup removes everything netlb made on the node and nothing else: the
// jump rules and SKIFF-* chains (in both iptables backends), the tables it
// created if they are left empty, every pod's veth and netns mount, the IPAM
// state, the tagged routes and the bridge; and it puts route_localnet back
// as SetupNode found it. Pods' processes, if any are left, lose their
// network. It returns every error it met but goes on past each one, so that
// one failure leaves as little as possible behind. It is idempotent.
func (n *Network) Cleanup() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error

	// The sysctls first, so that route_localnet is never on without the
	// drop rule that goes with the chains below. The record goes last: a
	// Cleanup cut short leaves it for the next one.
	restored, err := n.restoreSysctls()
	errs = append(errs, err)

	// iptables: our backend, and the other one if it holds tables at all in
	// this netns. Looking at the legacy tables through iptables-legacy-save
	// would make the kernel create them, so ask /proc first.
	backends := []struct{ save, restore string }{{n.saveCmd, n.restoreCmd}}
	if n.cfg.Backend == BackendNFT {
		if b, err := os.ReadFile("/proc/thread-self/net/ip_tables_names"); err == nil && len(bytes.TrimSpace(b)) > 0 {
			if s, err := exec.LookPath("iptables-legacy-save"); err == nil {
				backends = append(backends, struct{ save, restore string }{s, strings.TrimSuffix(s, "-save") + "-restore"})
			}
		}
	} else if s, err := exec.LookPath("iptables-nft-save"); err == nil {
		backends = append(backends, struct{ save, restore string }{s, strings.TrimSuffix(s, "-save") + "-restore"})
	}
	for i, be := range backends {
		out, err := runSave(be.save)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		data, nonEmpty, err := cleanupRestore(out)
		if err != nil {
			errs = append(errs, fmt.Errorf("cleanup rules: %s: %w", filepath.Base(be.save), err))
			continue
		}
		if len(data) > 0 {
			if err := runRestore(be.restore, data); err != nil {
				errs = append(errs, fmt.Errorf("cleanup rules: %w", err))
				continue
			}
		}
		if i == 0 && n.cfg.Backend == BackendNFT {
			errs = append(errs, n.deleteCreatedTables(nonEmpty))
		}
	}
	n.applied, n.last = nil, nil

	// Pods: every netns mount under RunDir and its veth.
	nsDir := filepath.Join(n.cfg.RunDir, "netns")
	ents, err := os.ReadDir(nsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("read %s: %w", nsDir, err))
	}
	for _, e := range ents {
		errs = append(errs, n.removePod(e.Name()))
	}
	if err := os.Remove(nsDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", nsDir, err))
	}
	// Veths whose netns mount was already gone.
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			if _, ok := l.(*netlink.Veth); ok && isVethName(l.Attrs().Name) {
				if err := netlink.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete veth %s: %w", l.Attrs().Name, err))
				}
			}
		}
	} else {
		errs = append(errs, fmt.Errorf("list links: %w", err))
	}

	// Routes we tagged, then the bridge (its address and connected route go
	// with it).
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProto, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		errs = append(errs, fmt.Errorf("list routes: %w", err))
	}
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
		}
	}
	if br, err := netlink.LinkByName(n.cfg.Bridge); err == nil {
		if err := netlink.LinkDel(br); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", n.cfg.Bridge, err))
		}
	}

	if err := os.RemoveAll(filepath.Join(n.cfg.StateDir, "ipam")); err != nil {
		errs = append(errs, fmt.Errorf("remove ipam state: %w", err))
	}
	if err := os.Remove(filepath.Join(n.cfg.StateDir, tablesFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", tablesFile, err))
	}
	if restored {
		if err := os.Remove(filepath.Join(n.cfg.StateDir, sysctlsFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", sysctlsFile, err))
		}
	}
	// The state dir itself, if nothing else lives there.
	_ = os.Remove(n.cfg.StateDir)
	return errors.Join(errs...)
}

// deleteCreatedTables deletes, through netlink, the nf_tables tables that
// netlb created (recorded by SetupNode) and that hold nothing now.
func (n *Network) deleteCreatedTables(nonEmpty map[string]bool) error {
	b, err := os.ReadFile(filepath.Join(n.cfg.StateDir, tablesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", tablesFile, err)
	}
	var errs []error
	for _, t := range strings.Fields(string(b)) {
		if nonEmpty[t] {
			continue
		}
		if err := deleteNFTable(t); err != nil && !errors.Is(err, errNoTable) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
