package netlb

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Traffic measurement.
//
// The load balancer already sees every new connection to a service: the nat
// table only ever sees the first packet of a connection (later packets
// follow conntrack), so the packet counter of the DNAT rule in an
// endpoint's SKIFF-SEP-* chain is the number of connections this node sent
// to that endpoint. Reading it costs one netlink dump of the nat table's
// rules per sample with the nft backend (`iptables-save -c -t nat` with
// legacy) and nothing per packet: no extra rule, no conntrack mark, no
// NFLOG. Conntrack could give the same count only by dumping the whole
// table (every flow, every sample) or by events (a message per connection,
// which costs the most exactly under load); it is used here only for the
// gauge it alone has, the connections open now.
//
// An iptables-restore that writes a chain resets its counters. netlb knows
// which chains each restore wrote, so every count carries the chain's
// generation (how many restores wrote it): a caller that sees the
// generation change, or the count fall, knows the chain was rewritten and
// counts only what it holds now, never a difference across the reset. A
// rewrite therefore loses at most the connections of one sample interval on
// that chain, and never produces a bogus (huge or negative) rate. Only
// changed chains are rewritten: scaling a service adds chains for new
// endpoints and leaves the others' counters alone.

// EndpointCount is what the node's load balancer sent to one endpoint of a
// service.
type EndpointCount struct {
	Endpoint Endpoint
	// New is the number of connections sent to the endpoint since its chain
	// was last written.
	New uint64
	// Gen changes whenever the chain is rewritten (its counter reset).
	Gen uint64
}

// ServiceCount holds the counts of one service's endpoints.
type ServiceCount struct {
	Service   string
	Endpoints []EndpointCount
}

// Counts reads the new-connection counters of every service with
// endpoints, keyed by service name (none: no read). It reads the kernel's counters once
// (a netlink dump with the nft backend, an iptables-save with legacy) and
// holds the sync lock meanwhile, so that the generations it returns match
// the counters.
func (n *Network) Counts() (map[string]*ServiceCount, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.last == nil {
		return map[string]*ServiceCount{}, nil
	}
	some := false
	for _, sr := range n.last.svcs {
		some = some || len(sr.eps) > 0
	}
	if !some {
		return map[string]*ServiceCount{}, nil // no endpoint chain: nothing to read
	}
	var packets map[string]uint64
	if n.cfg.Backend == BackendNFT {
		var err error
		if packets, err = nftSEPCounters("nat"); err != nil {
			return nil, fmt.Errorf("counters: %w", err)
		}
	} else {
		var stderr bytes.Buffer
		c := exec.Command(n.saveCmd, "-c", "-t", "nat")
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			return nil, fmt.Errorf("counters: %s: %w: %s", filepath.Base(n.saveCmd), err, strings.TrimSpace(stderr.String()))
		}
		packets = parseDNATCounters(out)
	}
	res := make(map[string]*ServiceCount, len(n.last.svcs))
	for _, sr := range n.last.svcs {
		if len(sr.eps) == 0 {
			continue
		}
		sc := res[sr.svc.Name]
		if sc == nil {
			sc = &ServiceCount{Service: sr.svc.Name}
			res[sr.svc.Name] = sc
		}
		for _, e := range sr.eps {
			ch := sepChain(sr.svc, e)
			sc.Endpoints = append(sc.Endpoints, EndpointCount{Endpoint: e, New: packets[ch], Gen: n.gens[ch]})
		}
	}
	return res, nil
}

// parseDNATCounters reads `iptables-save -c` output of the nat table: the
// packet counter of the DNAT rule of every SKIFF-SEP-* chain.
func parseDNATCounters(out []byte) map[string]uint64 {
	res := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		// [pkts:bytes] -A SKIFF-SEP-XXXX ... -j DNAT --to-destination ...
		if len(line) == 0 || line[0] != '[' || !bytes.Contains(line, []byte(" -j DNAT ")) {
			continue
		}
		end := bytes.IndexByte(line, ']')
		colon := bytes.IndexByte(line, ':')
		if end < 0 || colon < 0 || colon > end {
			continue
		}
		rest := line[end+1:]
		const pfx = " -A SKIFF-SEP-"
		if !bytes.HasPrefix(rest, []byte(pfx)) {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 2 {
			continue
		}
		p, err := strconv.ParseUint(string(line[1:colon]), 10, 64)
		if err != nil {
			continue
		}
		res[string(f[1])] += p
	}
	return res
}

// noteWritten bumps the generation of every SKIFF-SEP-* chain that a
// restore of data wrote (declared with ":NAME - [0:0]"). Called with mu
// held, after the restore succeeded.
func (n *Network) noteWritten(data []byte) {
	if n.gens == nil {
		n.gens = map[string]uint64{}
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := data
		if i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if bytes.HasPrefix(line, []byte(":SKIFF-SEP-")) {
			if sp := bytes.IndexByte(line, ' '); sp > 0 {
				n.gens[string(line[1:sp])]++
			}
		}
	}
}

// ActiveConns counts, per endpoint ("ip:port"), the established TCP
// connections (and live UDP flows) that this node's conntrack holds to it
// through a service (flows whose original destination is not the
// endpoint itself). It dumps the conntrack table once.
func ActiveConns() (map[string]int, error) {
	flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("conntrack list: %w", err)
	}
	res := map[string]int{}
	for _, f := range flows {
		if f.Forward.DstIP.Equal(f.Reverse.SrcIP) && f.Forward.DstPort == f.Reverse.SrcPort {
			continue // not DNATed: not through a service
		}
		if f.Forward.Protocol == unix.IPPROTO_TCP {
			tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP)
			if !ok || tcp.State != 3 { // TCP_CONNTRACK_ESTABLISHED
				continue
			}
		}
		res[net.JoinHostPort(f.Reverse.SrcIP.String(), strconv.Itoa(int(f.Reverse.SrcPort)))]++
	}
	return res, nil
}
