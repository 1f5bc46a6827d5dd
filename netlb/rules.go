package netlb

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Chain names. Every chain that netlb makes starts with chainPrefix.
const (
	chainPrefix      = "SKIFF-"
	chainServices    = "SKIFF-SERVICES"
	chainNodePorts   = "SKIFF-NODEPORTS"
	chainPostrouting = "SKIFF-POSTROUTING"
	chainMarkMasq    = "SKIFF-MARK-MASQ"
	chainFilter      = "SKIFF-FILTER"
	chainForward     = "SKIFF-FORWARD"
	chainFirewall    = "SKIFF-FIREWALL"

	// masqMark is the fwmark bit that asks SKIFF-POSTROUTING to masquerade.
	masqMark = "0x4000"

	defaultAffinityTimeout = 3 * time.Hour
)

// jumpRule is a rule in a built-in chain that sends traffic into ours. They
// are the only rules netlb writes outside its own chains.
type jumpRule struct {
	table, chain string
	spec         []string
}

// jumpRules lists the jumps from built-in chains, in the order they are
// ensured (each inserted at the top of its chain).
var jumpRules = []jumpRule{
	{"nat", "PREROUTING", []string{"-m", "comment", "--comment", "skiff services", "-j", chainServices}},
	{"nat", "OUTPUT", []string{"-m", "comment", "--comment", "skiff services", "-j", chainServices}},
	{"nat", "POSTROUTING", []string{"-m", "comment", "--comment", "skiff postrouting", "-j", chainPostrouting}},
	{"filter", "INPUT", []string{"-m", "comment", "--comment", "skiff firewall", "-j", chainFirewall}},
	{"filter", "INPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "skiff services without endpoints", "-j", chainFilter}},
	{"filter", "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "skiff services without endpoints", "-j", chainFilter}},
	{"filter", "OUTPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "skiff services without endpoints", "-j", chainFilter}},
	{"filter", "FORWARD", []string{"-m", "comment", "--comment", "skiff forward", "-j", chainForward}},
}

// localnetDrop is kube-proxy's answer to CVE-2020-8558. SetupNode sets
// net.ipv4.conf.all.route_localnet=1, without which a NodePort on 127.0.0.1
// cannot be DNATed to a pod (the kernel refuses to route a packet with a
// loopback source out of a non-loopback link, and drops answers to
// 127.0.0.1 that come in on one as martians). That also stops the kernel
// from dropping packets for 127.0.0.0/8 that other hosts on the LAN (or
// pods) route to the node, which would then reach services that listen on
// 127.0.0.1 only. This rule drops them again unless conntrack knows them:
// DNAT lets a NodePort on 127.0.0.1 reached from elsewhere go on to its pod
// (as the same port on any node address would), RELATED,ESTABLISHED lets in
// the answers to the node's own connections to NodePorts on 127.0.0.1.
// Traffic from 127.0.0.0/8, the node talking to itself over lo, is left
// alone.
const localnetDrop = "! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment " + `"block incoming localnet connections"` +
	" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"

// table is the desired content of our chains in one iptables table.
type table struct {
	name   string
	order  []string            // chain names in the order they are written
	chains map[string][]string // chain -> its rules as "-A CHAIN ..." lines
	text   map[string]string   // chain -> its rules joined, for diffing
}

func newTable(name string, size int) *table {
	return &table{name: name, order: make([]string, 0, size), chains: make(map[string][]string, size), text: make(map[string]string, size)}
}

// finish computes the text of the chains that have none yet.
func (t *table) finish() {
	for _, ch := range t.order {
		if _, ok := t.text[ch]; !ok {
			t.text[ch] = chainText(t.chains[ch])
		}
	}
}

// chain declares a chain (once) and returns it for appending.
func (t *table) add(chain string, rule ...string) {
	if _, ok := t.chains[chain]; !ok {
		t.order = append(t.order, chain)
		t.chains[chain] = nil
	}
	for _, r := range rule {
		t.chains[chain] = append(t.chains[chain], "-A "+chain+" "+r)
	}
}

// ruleSet is the desired content of every SKIFF-* chain: the base chains
// in two tables, and the chains of each service (all in nat) kept per
// service, so that a sync compares unchanged services by pointer alone.
type ruleSet struct {
	nat, filter *table
	svcs        []*svcRules
	byKey       map[string]*svcRules // "name/proto" -> the service's rules
}

// chainList returns every chain of a table in write order.
func (r *ruleSet) chainList(tbl string) []svcChainRules {
	t := r.filter
	if tbl == "nat" {
		t = r.nat
	}
	var out []svcChainRules
	for _, ch := range t.order {
		out = append(out, svcChainRules{name: ch, rules: t.chains[ch], text: t.text[ch]})
	}
	if tbl == "nat" {
		for _, sr := range r.svcs {
			out = append(out, sr.chains...)
		}
	}
	return out
}

// input returns the services and endpoints that r was built from; a nil
// rule set was built from nothing.
func (r *ruleSet) input() ([]Service, map[string][]Endpoint) {
	if r == nil {
		return nil, nil
	}
	svcs := make([]Service, 0, len(r.svcs))
	eps := make(map[string][]Endpoint, len(r.svcs))
	for _, sr := range r.svcs {
		svcs = append(svcs, sr.svc)
		if len(sr.eps) > 0 {
			eps[sr.svc.Name] = sr.eps
		}
	}
	return svcs, eps
}

// rules returns one chain's rules, nil if there is no such chain.
func (r *ruleSet) rules(tbl, chain string) []string {
	for _, ch := range r.chainList(tbl) {
		if ch.name == chain {
			return ch.rules
		}
	}
	return nil
}

// tables lists the tables in the order they are restored: nat first, since
// iptables-restore commits table by table and stops at the first failure,
// and new nat rules with old filter rules are harmless (the filter rejects
// match service IPs, which DNAT has already rewritten), while the reverse
// could reject a service that still has endpoints.
func (r *ruleSet) tables() []*table { return []*table{r.nat, r.filter} }

// hashName makes a chain name from a prefix and the strings that identify
// what it is for, like kube-proxy: 16 base32 characters of a SHA-256.
func hashName(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	// 10 bytes are exactly 16 base32 characters, without padding.
	return prefix + base32.StdEncoding.EncodeToString(h[:10])
}

func svcChain(s Service) string { return hashName("SKIFF-SVC-", s.Name, string(s.proto())) }
func extChain(s Service) string { return hashName("SKIFF-EXT-", s.Name, string(s.proto())) }
func sepChain(s Service, e Endpoint) string {
	return hashName("SKIFF-SEP-", s.Name, string(s.proto()), e.IP.String(), strconv.Itoa(e.Port))
}

// quote renders a string argument the way iptables-save prints it, so that
// what we write reads back the same.
func quote(s string) string {
	plain := s != ""
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' || r == '\'' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// probability renders 1/n as iptables-save prints it: the kernel keeps it
// as a 31-bit fraction and iptables prints that with 11 decimals.
func probability(n int) string {
	stored := math.Round(float64(0x80000000) / float64(n))
	return strconv.FormatFloat(stored/float64(0x80000000), 'f', 11, 64)
}

func host(ip net.IP) string { return ip.To4().String() + "/32" }

// sortedEndpoints returns the endpoints of a service sorted and without
// duplicates, so that the same set always renders the same chains.
func sortedEndpoints(eps []Endpoint) []Endpoint {
	out := make([]Endpoint, 0, len(eps))
	seen := map[string]bool{}
	for _, e := range eps {
		k := net.JoinHostPort(e.IP.String(), strconv.Itoa(e.Port))
		if !seen[k] {
			seen[k] = true
			out = append(out, Endpoint{IP: e.IP.To4(), Port: e.Port})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := bytes.Compare(out[i].IP, out[j].IP); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
}

// sortedServices returns the services sorted by name and protocol.
func sortedServices(svcs []Service) []Service {
	out := append([]Service(nil), svcs...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].proto() < out[j].proto()
	})
	return out
}

// buildRules computes the content of every SKIFF-* chain for the given
// services and endpoints (endpoints keyed by service name). It validates its
// input and touches nothing.
func buildRules(c *Config, services []Service, endpoints map[string][]Endpoint) (*ruleSet, error) {
	return buildRulesCached(c, services, endpoints, nil)
}

// buildRulesCached is buildRules that reuses, from prev, the rules of the
// services whose definition and endpoints did not change.
func buildRulesCached(c *Config, services []Service, endpoints map[string][]Endpoint, prev *ruleSet) (*ruleSet, error) {
	nat, filter := newTable("nat", 4), newTable("filter", 3)
	cluster := c.ClusterCIDR.String()

	nat.add(chainServices)
	nat.add(chainNodePorts)
	nat.add(chainMarkMasq, "-j MARK --set-xmark "+masqMark+"/"+masqMark)
	nat.add(chainPostrouting,
		"-s "+c.PodCIDR.String()+" ! -d "+cluster+" -m comment --comment "+quote("pod traffic leaving the cluster")+" -j MASQUERADE",
		"-m mark ! --mark "+masqMark+"/"+masqMark+" -j RETURN",
		"-j MARK --set-xmark "+masqMark+"/0x0",
		"-j MASQUERADE --random-fully")
	filter.add(chainFirewall, localnetDrop)
	filter.add(chainFilter)
	filter.add(chainForward,
		"-m mark --mark "+masqMark+"/"+masqMark+" -j ACCEPT",
		"-s "+cluster+" -j ACCEPT",
		"-d "+cluster+" -j ACCEPT")

	rs := &ruleSet{nat: nat, filter: filter, svcs: make([]*svcRules, 0, len(services)), byKey: make(map[string]*svcRules, len(services))}
	for _, s := range sortedServices(services) {
		key := s.Name + "/" + string(s.proto())
		if rs.byKey[key] != nil {
			return nil, fmt.Errorf("%w %q: listed twice for %s", ErrInvalidService, s.Name, s.proto())
		}
		fp := fingerprint(s, endpoints[s.Name])
		var sr *svcRules
		if prev != nil {
			sr = prev.byKey[key]
		}
		if sr == nil || sr.fingerprint != fp {
			var err error
			if sr, err = buildService(c, s, endpoints[s.Name]); err != nil {
				return nil, err
			}
			sr.key, sr.fingerprint = key, fp
		}
		rs.byKey[key] = sr
		rs.svcs = append(rs.svcs, sr)
		nat.chains[chainServices] = append(nat.chains[chainServices], sr.services...)
		nat.chains[chainNodePorts] = append(nat.chains[chainNodePorts], sr.nodePorts...)
		filter.chains[chainFilter] = append(filter.chains[chainFilter], sr.filter...)
	}
	if len(c.NodeIPs) == 0 {
		nat.add(chainServices, "-m addrtype --dst-type LOCAL -j "+chainNodePorts)
	}
	for _, ip := range c.NodeIPs {
		nat.add(chainServices, "-d "+host(ip)+" -j "+chainNodePorts)
	}
	nat.finish()
	filter.finish()
	return rs, nil
}

// svcRules is what one service contributes to the rule set. Sync keeps
// them between calls and rebuilds only services whose fingerprint changed,
// which keeps a sync with one change cheap in a node with many services.
type svcRules struct {
	key         string // "name/proto"
	svc         Service
	eps         []Endpoint // sorted
	fingerprint string
	services    []string // rules of SKIFF-SERVICES
	nodePorts   []string // rules of SKIFF-NODEPORTS
	filter      []string // rules of SKIFF-FILTER
	chains      []svcChainRules
}

type svcChainRules struct {
	name, text string
	rules      []string
}

// fingerprint identifies a service and its endpoints as given.
func fingerprint(s Service, eps []Endpoint) string {
	b := make([]byte, 0, 64+len(s.Name)+24*len(eps))
	b = append(b, s.Name...)
	b = append(b, '|')
	b = append(b, s.proto()...)
	b = append(b, '|')
	b = append(b, s.ClusterIP...)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(s.Port), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(s.NodePort), 10)
	b = append(b, '|')
	b = append(b, s.ExternalIP...)
	b = append(b, '|')
	b = strconv.AppendBool(b, s.Affinity)
	b = strconv.AppendInt(b, int64(s.AffinityTimeout), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(s.Activator), 10)
	for _, e := range eps {
		b = append(b, '|')
		b = append(b, e.IP.To16()...)
		b = strconv.AppendInt(b, int64(e.Port), 10)
	}
	return string(b)
}

// buildService computes one service's rules.
func buildService(c *Config, s Service, rawEps []Endpoint) (*svcRules, error) {
	if err := s.validate(c); err != nil {
		return nil, err
	}
	cluster := c.ClusterCIDR.String()
	proto := string(s.proto())
	eps := sortedEndpoints(rawEps)
	for _, e := range eps {
		if err := e.validate(s.Name); err != nil {
			return nil, err
		}
	}
	comment := " -m comment --comment " + quote(s.Name)
	match := func(port int) string {
		return " -p " + proto + comment + " -m " + proto + " --dport " + strconv.Itoa(port)
	}
	sr := &svcRules{svc: s, eps: eps}
	// chain appends a service chain with its rules, given without "-A NAME".
	chain := func(name string, rules ...string) {
		for i, r := range rules {
			rules[i] = "-A " + name + " " + r
		}
		sr.chains = append(sr.chains, svcChainRules{name: name, rules: rules, text: chainText(rules)})
	}

	if len(eps) == 0 {
		// No endpoints: reject at once in the filter table, so that a
		// client gets "connection refused" instead of a timeout.
		reject := " -j REJECT --reject-with icmp-port-unreachable"
		add := func(r string) { sr.filter = append(sr.filter, "-A "+chainFilter+" "+r) }
		if s.Activator != 0 && s.proto() == TCP {
			// The app scales up on demand: new connections to the cluster
			// IP go to the agent's activator on this node, which holds
			// them until an endpoint is ready.
			sr.services = append(sr.services, "-A "+chainServices+" -d "+host(s.ClusterIP)+match(s.Port)+
				" -j REDIRECT --to-ports "+strconv.Itoa(s.Activator))
		} else {
			add("-d " + host(s.ClusterIP) + match(s.Port) + reject)
		}
		if s.ExternalIP != nil {
			add("-d " + host(s.ExternalIP) + match(s.Port) + reject)
		}
		if s.NodePort != 0 {
			if len(c.NodeIPs) == 0 {
				add("-p " + proto + comment + " -m addrtype --dst-type LOCAL -m " + proto + " --dport " + strconv.Itoa(s.NodePort) + reject)
			}
			for _, ip := range c.NodeIPs {
				add("-d " + host(ip) + match(s.NodePort) + reject)
			}
		}
		return sr, nil
	}

	svc := svcChain(s)
	sr.services = append(sr.services, "-A "+chainServices+" -d "+host(s.ClusterIP)+match(s.Port)+" -j "+svc)
	var extRules []string
	ext := ""
	if s.NodePort != 0 || s.ExternalIP != nil {
		// Traffic from outside the node is masqueraded so that replies
		// come back through this node's conntrack.
		ext = extChain(s)
		extRules = []string{"-j " + chainMarkMasq, "-j " + svc}
		if s.ExternalIP != nil {
			sr.services = append(sr.services, "-A "+chainServices+" -d "+host(s.ExternalIP)+match(s.Port)+" -j "+ext)
		}
		if s.NodePort != 0 {
			sr.nodePorts = append(sr.nodePorts, "-A "+chainNodePorts+match(s.NodePort)+" -j "+ext)
		}
	}
	seps := make([]string, len(eps))
	for i, e := range eps {
		seps[i] = sepChain(s, e)
	}
	// Sources outside the cluster (the node itself, other hosts) are
	// masqueraded so that the endpoint's reply returns through us.
	svcRules := make([]string, 0, 1+2*len(eps))
	svcRules = append(svcRules, "! -s "+cluster+" -d "+host(s.ClusterIP)+" -p "+proto+" -m "+proto+" --dport "+strconv.Itoa(s.Port)+" -j "+chainMarkMasq)
	timeout := s.AffinityTimeout
	if timeout == 0 {
		timeout = defaultAffinityTimeout
	}
	if s.Affinity {
		secs := strconv.Itoa(int(timeout / time.Second))
		for _, sep := range seps {
			svcRules = append(svcRules, "-m recent --rcheck --seconds "+secs+" --reap --name "+sep+" --mask 255.255.255.255 --rsource -j "+sep)
		}
	}
	for i, sep := range seps {
		if n := len(eps) - i; n > 1 {
			svcRules = append(svcRules, "-m statistic --mode random --probability "+probability(n)+" -j "+sep)
		} else {
			svcRules = append(svcRules, "-j "+sep)
		}
	}
	if ext != "" {
		chain(ext, extRules...)
	}
	chain(svc, svcRules...)
	for i, e := range eps {
		sep := seps[i]
		dest := net.JoinHostPort(e.IP.String(), strconv.Itoa(e.Port))
		recent := ""
		if s.Affinity {
			recent = " -m recent --set --name " + sep + " --mask 255.255.255.255 --rsource"
		}
		// A pod reaching its own service (hairpin) is masqueraded, or
		// it would answer itself straight from the pod IP.
		chain(sep,
			"-s "+host(e.IP)+" -j "+chainMarkMasq,
			"-p "+proto+recent+" -m "+proto+" -j DNAT --to-destination "+dest)
	}
	return sr, nil
}

// renderRestore writes the iptables-restore input that brings the kernel
// from prev (what the last successful restore left in force; nil for
// nothing) to want. When full is set, every chain is written and stale
// lists, per table, the SKIFF-* chains found in the kernel, of which those
// that want lacks are deleted. Otherwise only chains whose text changed are
// written, and the chains of prev that want lacks are deleted; services
// whose rules are the very ones of prev are skipped without a look. It
// returns nil when nothing changes.
func renderRestore(want, prev *ruleSet, full bool, stale map[string][]string) []byte {
	if prev == nil {
		full = true
	}
	var b bytes.Buffer
	if full {
		b.Grow(128 * (len(want.svcs)*8 + 32))
	}
	for _, t := range want.tables() {
		var write []svcChainRules
		var remove []string
		var prevT *table
		if prev != nil {
			prevT = prev.filter
			if t.name == "nat" {
				prevT = prev.nat
			}
		}
		for _, ch := range t.order {
			if old, ok := prevT.textOf(ch); full || !ok || old != t.text[ch] {
				write = append(write, svcChainRules{name: ch, rules: t.chains[ch]})
			}
		}
		if t.name == "nat" {
			for _, sr := range want.svcs {
				var old *svcRules
				if !full {
					old = prev.byKey[sr.key]
				}
				if old == sr {
					continue
				}
				for _, ch := range sr.chains {
					if full || old.textOf(ch.name) != ch.text {
						write = append(write, ch)
					}
				}
				for _, ch := range old.chainsOrNil() {
					if !sr.has(ch.name) {
						remove = append(remove, ch.name)
					}
				}
			}
			if !full {
				for key, old := range prev.byKey {
					if want.byKey[key] == nil {
						for _, ch := range old.chains {
							remove = append(remove, ch.name)
						}
					}
				}
			}
		}
		if full {
			have := map[string]bool{}
			for _, ch := range write {
				have[ch.name] = true
			}
			for _, ch := range stale[t.name] {
				if !have[ch] {
					remove = append(remove, ch)
				}
			}
		}
		if len(write) == 0 && len(remove) == 0 {
			continue
		}
		sort.Strings(remove)
		b.WriteString("*" + t.name + "\n")
		for _, ch := range write {
			b.WriteString(":" + ch.name + " - [0:0]\n")
		}
		for _, ch := range remove {
			b.WriteString(":" + ch + " - [0:0]\n")
		}
		for _, ch := range write {
			for _, r := range ch.rules {
				b.WriteString(r)
				b.WriteByte('\n')
			}
		}
		for _, ch := range remove {
			b.WriteString("-X " + ch + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	if b.Len() == 0 {
		return nil
	}
	return b.Bytes()
}

// textOf returns a base chain's text; a nil table has no chains.
func (t *table) textOf(ch string) (string, bool) {
	if t == nil {
		return "", false
	}
	s, ok := t.text[ch]
	return s, ok
}

// textOf returns the text of one of the service's chains, "" if it has
// none of that name; a nil svcRules has no chains.
func (sr *svcRules) textOf(name string) string {
	for _, ch := range sr.chainsOrNil() {
		if ch.name == name {
			return ch.text
		}
	}
	return "\x00none"
}

func (sr *svcRules) chainsOrNil() []svcChainRules {
	if sr == nil {
		return nil
	}
	return sr.chains
}

func (sr *svcRules) has(name string) bool {
	for _, ch := range sr.chains {
		if ch.name == name {
			return true
		}
	}
	return false
}

// chainText joins a chain's rules as they are compared between syncs.
func chainText(rules []string) string { return strings.Join(rules, "\n") }
