package netlb

import (
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// nf_tables netlink constants for reading rules (linux/netfilter/nf_tables.h).
const (
	nftMsgGetRule        = 7
	nftaRuleTable        = 1
	nftaRuleChain        = 2
	nftaRuleExpressions  = 4
	nftaListElem         = 1
	nftaExprName         = 1
	nftaExprData         = 2
	nftaCounterPackets   = 2
	nlaTypeMask          = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
	nftRuleDumpBufferLen = 1 << 16
)

// nftSEPCounters reads, with one netlink dump of the rules of nf_tables
// table "ip <table>", the packet counter of the last rule of every
// SKIFF-SEP-* chain: the DNAT rule, which iptables-nft gives a counter like
// every rule. It costs a fraction of forking iptables-nft-save, which
// loads and prints the whole ruleset (see BenchmarkLoadSample).
func nftSEPCounters(table string) (map[string]uint64, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netfilter netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("bind netfilter netlink socket: %w", err)
	}
	val := append([]byte(table), 0)
	attr := make([]byte, 4, 4+len(val)+3)
	binary.NativeEndian.PutUint16(attr[0:], uint16(4+len(val)))
	binary.NativeEndian.PutUint16(attr[2:], nftaRuleTable)
	attr = append(attr, val...)
	for len(attr)%4 != 0 {
		attr = append(attr, 0)
	}
	const seq = 1
	req := make([]byte, unix.NLMSG_HDRLEN+4, unix.NLMSG_HDRLEN+4+len(attr))
	req = append(req, attr...)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], nfnlSubsysNFTables<<8|nftMsgGetRule)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], seq)
	req[16] = unix.AF_INET
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send nf_tables rule dump: %w", err)
	}
	out := map[string]uint64{}
	buf := make([]byte, nftRuleDumpBufferLen)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("read nf_tables rules: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("parse nf_tables rules: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
						if errno == int32(unix.ENOENT) {
							return out, nil // no such table: no rules
						}
						return nil, fmt.Errorf("dump nf_tables rules of ip %s: %w", table, unix.Errno(errno))
					}
				}
				continue
			}
			if len(m.Data) < 4 {
				continue
			}
			var chain string
			var packets uint64
			var counted bool
			eachAttr(m.Data[4:], func(typ uint16, v []byte) {
				switch typ {
				case nftaRuleChain:
					chain = strings.TrimRight(string(v), "\x00")
				case nftaRuleExpressions:
					eachAttr(v, func(typ uint16, elem []byte) {
						if typ != nftaListElem {
							return
						}
						var name string
						var data []byte
						eachAttr(elem, func(typ uint16, v []byte) {
							switch typ {
							case nftaExprName:
								name = strings.TrimRight(string(v), "\x00")
							case nftaExprData:
								data = v
							}
						})
						if name != "counter" {
							return
						}
						eachAttr(data, func(typ uint16, v []byte) {
							if typ == nftaCounterPackets && len(v) == 8 {
								packets, counted = binary.BigEndian.Uint64(v), true
							}
						})
					})
				}
			})
			// Rules come in chain order: the last one seen is the DNAT.
			if counted && strings.HasPrefix(chain, "SKIFF-SEP-") {
				out[chain] = packets
			}
		}
	}
}

// eachAttr calls fn with the type (flags masked) and value of every
// netlink attribute in b.
func eachAttr(b []byte, fn func(typ uint16, v []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		if l < 4 || l > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[2:])&nlaTypeMask, b[4:l])
		l = (l + 3) &^ 3
		if l > len(b) {
			return
		}
		b = b[l:]
	}
}
