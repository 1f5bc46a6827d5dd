package configs

import (
	"fmt"
	"net/netip"
	"strings"
)

// LB is the [lb] table of a server's node config: the LAN addresses that
// load-balancer services may take.
type LB struct {
	// Pools are ranges "192.168.1.240-192.168.1.250" or CIDRs
	// "192.168.1.240/29" of IPv4 addresses. A service's external_ip must
	// be inside one; with no pools, no service may have one (an address
	// that any manifest could name would let it capture any host's
	// traffic on the LAN: the CVE-2020-8554 pattern).
	Pools []string `toml:"pools" json:"pools,omitempty"`
}

// poolRange is one parsed pool: first..last, inclusive.
type poolRange struct{ first, last netip.Addr }

// parsePool parses one pool entry.
func parsePool(s string) (poolRange, error) {
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(strings.TrimSpace(lo))
		b, err2 := netip.ParseAddr(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() {
			return poolRange{}, fmt.Errorf("%s is not a range of IPv4 addresses like \"192.168.1.240-192.168.1.250\"", quoteShort(s))
		}
		if b.Less(a) {
			return poolRange{}, fmt.Errorf("%s ends before it starts", quoteShort(s))
		}
		return poolRange{a, b}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return poolRange{}, fmt.Errorf("%s is neither a range like \"192.168.1.240-192.168.1.250\" nor an IPv4 CIDR", quoteShort(s))
	}
	p = p.Masked()
	last := p.Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		last[i] |= byte(1<<n - 1)
		host -= n
	}
	return poolRange{p.Addr(), netip.AddrFrom4(last)}, nil
}

func (l *LB) validate(e *errs) {
	for i, s := range l.Pools {
		if _, err := parsePool(s); err != nil {
			e.add(path{"lb", "pools"}.index(i), "%s", err.Error())
		}
	}
}

// CheckExternalIP says whether ip may be a load-balancer service's
// external_ip: nil when it is inside one of the pools, else an error that
// names the pools (or says there are none). Pools that do not parse are
// skipped (Validate reports them).
func (l LB) CheckExternalIP(ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("%s is not an IPv4 address", quoteShort(ip))
	}
	for _, s := range l.Pools {
		if r, err := parsePool(s); err == nil && !a.Less(r.first) && !r.last.Less(a) {
			return nil
		}
	}
	if len(l.Pools) == 0 {
		return fmt.Errorf("%s: the server's node config has no [lb] pools, so no service may take an external address", ip)
	}
	return fmt.Errorf("%s is not in the server's [lb] pools %q", ip, l.Pools)
}

// FreeAddress returns the first address of the pools, in their order, that
// used does not hold. A CIDR pool of /30 or wider leaves out its network
// and broadcast addresses (some LAN clients refuse them); a range gives
// every address it names. Pools that do not parse are skipped.
func (l LB) FreeAddress(used map[string]bool) (string, error) {
	if len(l.Pools) == 0 {
		return "", fmt.Errorf("the server's node config has no [lb] pools")
	}
	for _, s := range l.Pools {
		r, err := parsePool(s)
		if err != nil {
			continue
		}
		first, last := r.first, r.last
		if p, err := netip.ParsePrefix(s); err == nil && p.Bits() <= 30 {
			first, last = first.Next(), last.Prev()
		}
		for a := first; a.IsValid() && !last.Less(a); a = a.Next() {
			if !used[a.String()] {
				return a.String(), nil
			}
		}
	}
	return "", fmt.Errorf("every address of the server's [lb] pools %q is taken", l.Pools)
}
