package netlb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Sync makes the node's SKIFF-* chains match services and endpoints
// (keyed by Service.Name; a service with none gets an immediate reject). It
// writes one iptables-restore --noflush for both tables: every chain on the
// first sync and after a failure, only changed chains otherwise. A failed
// partial restore is retried at once as a full one; a failed full restore
// leaves the previous rules in force, returns an error wrapping ErrRestore
// and makes the next Sync a full one. After a successful restore it deletes the conntrack entries of
// endpoints that left UDP services (and TCP ones with Config.ConntrackTCP).
// Sync keeps parts of its arguments until the next Sync: the caller must
// not change them afterwards (build new ones instead).
func (n *Network) Sync(services []Service, endpoints map[string][]Endpoint) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.syncLocked(services, endpoints)
}

// Resync forces the next Sync to write every chain, as after a failure.
func (n *Network) Resync() {
	n.mu.Lock()
	n.applied = nil
	n.mu.Unlock()
}

// syncLocked syncs, and when a partial restore fails, retries at once with
// a full one: the kernel may hold something other than what we believe.
func (n *Network) syncLocked(services []Service, endpoints map[string][]Endpoint) error {
	full := n.applied == nil
	err := n.syncOnce(services, endpoints)
	if err != nil && !full && errors.Is(err, ErrRestore) {
		n.log.Warn("partial sync failed; retrying with a full one", "err", err)
		err = n.syncOnce(services, endpoints)
	}
	return err
}

// syncOnce is one sync attempt: full when applied is nil, else partial.
func (n *Network) syncOnce(services []Service, endpoints map[string][]Endpoint) error {
	start := time.Now()
	full := n.applied == nil
	// A full sync reads the kernel's chains with iptables-save; it runs
	// while the rules are built. The child is forked here, on the calling
	// thread, so that it sees the caller's network namespace.
	var save *exec.Cmd
	var saveOut, saveErr bytes.Buffer
	if full {
		save = exec.Command(n.saveCmd)
		save.Stdout, save.Stderr = &saveOut, &saveErr
		if err := save.Start(); err != nil {
			return fmt.Errorf("sync: %s: %w", n.saveCmd, err)
		}
	}
	// Rules of unchanged services come from the last successful sync, even
	// when the kernel state is in doubt (applied nil): they are a function
	// of the service alone.
	rs, err := buildRulesCached(&n.cfg, services, endpoints, n.last)
	var stale map[string][]string
	var jumps map[string]bool
	if full {
		if werr := save.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("sync: %s: %w: %s", filepath.Base(n.saveCmd), werr, bytes.TrimSpace(saveErr.Bytes()))
		}
		var perr error
		stale, jumps, perr = parseSaved(saveOut.Bytes())
		if perr != nil && err == nil {
			err = fmt.Errorf("sync: %w", perr)
		}
	}
	if err != nil {
		return err
	}
	data := renderRestore(rs, n.applied, full, stale)
	if data != nil {
		if err := runRestore(n.restoreCmd, data); err != nil {
			n.applied = nil
			// A failed restore may have committed the nat table.
			n.noteWritten(data)
			return fmt.Errorf("sync: %w", err)
		}
		n.noteWritten(data)
	}
	if full {
		if err := n.ensureJumps(jumps); err != nil {
			n.applied = nil
			return fmt.Errorf("sync: %w", err)
		}
	}
	n.applied = rs
	cleared := n.clearConntrack(n.last, rs)
	n.last = rs
	n.log.Debug("synced", "full", full, "services", len(services), "bytes", len(data),
		"conntrack_deleted", cleared, "took", time.Since(start))
	return nil
}

// jumpText renders a jump rule as iptables-save prints it.
func jumpText(j jumpRule) string {
	parts := make([]string, len(j.spec))
	for i, p := range j.spec {
		parts[i] = p
		if i > 0 && j.spec[i-1] == "--comment" {
			parts[i] = quote(p)
		}
	}
	return "-A " + j.chain + " " + strings.Join(parts, " ")
}

// parseSaved reads iptables-save output: the SKIFF-* chains per table, and
// which jump rules ("table/rule text") are there. It fails when the output
// cannot be read whole (a line past 1 MiB), rather than miss chains to
// delete and jumps that are there.
func parseSaved(out []byte) (chains map[string][]string, jumps map[string]bool, err error) {
	chains, jumps = map[string][]string{}, map[string]bool{}
	var tbl string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			tbl = line[1:]
		case strings.HasPrefix(line, ":"+chainPrefix):
			if f := strings.Fields(line[1:]); len(f) > 0 {
				chains[tbl] = append(chains[tbl], f[0])
			}
		case strings.HasPrefix(line, "-A ") && !strings.HasPrefix(line, "-A "+chainPrefix) && strings.Contains(line, "-j "+chainPrefix):
			jumps[tbl+"/"+line] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read iptables-save output: %w", err)
	}
	return chains, jumps, nil
}

// ensureJumps inserts, with go-iptables, the jump rules that iptables-save
// did not show. They go first in their chain so that other rules (a
// firewall's DROP) do not hide service traffic.
func (n *Network) ensureJumps(present map[string]bool) error {
	for i := len(jumpRules) - 1; i >= 0; i-- {
		j := jumpRules[i]
		if present[j.table+"/"+jumpText(j)] {
			continue
		}
		ok, err := n.ipt.Exists(j.table, j.chain, j.spec...)
		if err != nil {
			return fmt.Errorf("check jump %s/%s: %w", j.table, j.chain, err)
		}
		if !ok {
			if err := n.ipt.Insert(j.table, j.chain, 1, j.spec...); err != nil {
				return fmt.Errorf("insert jump %s/%s: %w", j.table, j.chain, err)
			}
		}
	}
	return nil
}

func epKey(e Endpoint) string { return net.JoinHostPort(e.IP.String(), strconv.Itoa(e.Port)) }

// clearConntrack deletes the conntrack entries that would keep flows
// pinned to endpoints that left: for UDP services always (a UDP "flow"
// never ends while the client keeps sending), for TCP with ConntrackTCP.
// It also clears UDP entries to a service that had no endpoints, which
// would otherwise keep a sender's packets off the new backends. Only
// services whose rules changed between prev and next are looked at.
// Failures are logged: the rules are in force and the entries time out on
// their own.
func (n *Network) clearConntrack(prev, next *ruleSet) int {
	var filters []netlink.CustomConntrackFilter
	add := func(proto Protocol, origDst net.IP, origPort int, replySrc *Endpoint) {
		f := flowFilter{proto: unix.IPPROTO_UDP, origDst: origDst, origPort: uint16(origPort)}
		if proto == TCP {
			f.proto = unix.IPPROTO_TCP
		}
		if replySrc != nil {
			f.replySrc, f.replyPort = replySrc.IP, uint16(replySrc.Port)
		}
		filters = append(filters, f)
	}
	flowsTo := func(s Service, ep *Endpoint) {
		add(s.proto(), s.ClusterIP, s.Port, ep)
		if s.ExternalIP != nil {
			add(s.proto(), s.ExternalIP, s.Port, ep)
		}
		if s.NodePort != 0 {
			add(s.proto(), nil, s.NodePort, ep)
		}
	}
	// consider compares one service's old rules (nil: it is new) with its
	// new ones (nil: it is gone).
	consider := func(old, cur *svcRules) {
		s := cur.serviceOr(old)
		if s.proto() == TCP && !n.cfg.ConntrackTCP {
			return
		}
		if old == nil || len(old.eps) == 0 {
			if s.proto() == UDP && cur != nil && len(cur.eps) > 0 {
				flowsTo(s, nil)
			}
			return
		}
		keep := map[string]bool{}
		for _, e := range cur.endpoints() {
			keep[epKey(e)] = true
		}
		for _, e := range old.eps {
			if !keep[epKey(e)] {
				e := e
				flowsTo(old.svc, &e)
			}
		}
	}
	for _, cur := range next.svcs {
		var old *svcRules
		if prev != nil {
			old = prev.byKey[cur.key]
		}
		if old != cur {
			consider(old, cur)
		}
	}
	if prev != nil {
		for key, old := range prev.byKey {
			if next.byKey[key] == nil {
				consider(old, nil)
			}
		}
	}
	if len(filters) == 0 {
		return 0
	}
	deleted, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		n.log.Warn("delete conntrack entries", "err", err)
	}
	return int(deleted)
}

// flowFilter matches conntrack flows by protocol, original destination
// (an unset IP matches any) and, when set, the reply's source: the
// endpoint the flow was DNATed to.
type flowFilter struct {
	proto     uint8
	origDst   net.IP
	origPort  uint16
	replySrc  net.IP
	replyPort uint16
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f flowFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	return fl.Forward.Protocol == f.proto &&
		fl.Forward.DstPort == f.origPort &&
		(f.origDst == nil || f.origDst.Equal(fl.Forward.DstIP)) &&
		(f.replySrc == nil || f.replySrc.Equal(fl.Reverse.SrcIP) && f.replyPort == fl.Reverse.SrcPort)
}

// serviceOr returns the service of sr, or of other when sr is nil.
func (sr *svcRules) serviceOr(other *svcRules) Service {
	if sr == nil {
		return other.svc
	}
	return sr.svc
}

// endpoints returns the endpoints of sr; a nil sr has none.
func (sr *svcRules) endpoints() []Endpoint {
	if sr == nil {
		return nil
	}
	return sr.eps
}
