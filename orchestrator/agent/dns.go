package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// The node's resolver. Every agent answers its pods' DNS queries at the
// bridge's address (the pods' gateway), port 53, UDP and TCP:
//
//	SVC.DOMAIN            A    the service's cluster IP
//	SVC.DOMAIN            SRV  0 100 PORT SVC.DOMAIN. (with the A beside it)
//	SVC.pods.DOMAIN       A    the IPs of the service's ready pods (headless)
//	SVC.pods.DOMAIN       SRV  one per ready pod: POD.SVC.pods.DOMAIN:TARGET-PORT
//	POD.SVC.pods.DOMAIN   A    that pod's IP
//
// from the agent's own view of services and endpoints (the load balancer's,
// which the local cache keeps while the server is away), and forwards every
// other name to the upstreams, keeping their answers in a small bounded
// cache. Pods get a resolv.conf naming it, with "search DOMAIN", so that
// http://web/ works.

// dnsTTL is the TTL of cluster answers: short, since endpoints come and go.
const dnsTTL = 5

// negTTL bounds how long a negative upstream answer is cached.
const negTTL = 5 * time.Second

// maxCacheTTL bounds how long any upstream answer is cached.
const maxCacheTTL = 60 * time.Second

// upstreamTimeout bounds one upstream exchange.
const upstreamTimeout = 2 * time.Second

// nameView is the cluster as the resolver answers it: immutable, replaced
// whole on every change.
type nameView struct {
	services map[string]svcName // by service name
}

type svcName struct {
	clusterIP net.IP
	port      int
	proto     string
	pods      []podName // ready endpoints, by pod name
}

type podName struct {
	name string
	ip   net.IP
	port int
}

// resolver is the node's DNS server.
type resolver struct {
	log       *slog.Logger
	domain    string // "skiff." (fully qualified, lower case)
	upstreams []string
	view      atomic.Pointer[nameView]
	cache     *dnsCache
	// allow, if set, is where queries may come from (the node's pod
	// CIDR, the bridge's address included); others are refused.
	allow atomic.Pointer[net.IPNet]

	// mu protects servers.
	mu      sync.Mutex
	servers []*dns.Server
}

// newResolver makes the resolver of node config c (it does not listen yet).
func newResolver(c configs.DNS, log *slog.Logger) (*resolver, error) {
	ups := c.Upstreams
	if len(ups) == 0 {
		cc, err := dns.ClientConfigFromFile(c.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dns upstreams from %s: %w", c.ResolvConf, err)
		}
		for _, s := range cc.Servers {
			ups = append(ups, net.JoinHostPort(s, cc.Port))
		}
	}
	var out []string
	for _, u := range ups {
		if net.ParseIP(u) != nil {
			u = net.JoinHostPort(u, "53")
		}
		out = append(out, u)
	}
	r := &resolver{log: log, domain: dns.Fqdn(strings.ToLower(c.Domain)), upstreams: out, cache: newDNSCache(c.CacheSize)}
	r.view.Store(&nameView{})
	return r, nil
}

// setView replaces the names answered by those of services and endpoints
// eps (the load balancer's view).
func (r *resolver) setView(services []*api.Service, eps map[string]*api.Endpoints) {
	v := &nameView{services: make(map[string]svcName, len(services))}
	for _, s := range services {
		sn := svcName{clusterIP: net.ParseIP(s.Status.ClusterIP).To4(), port: s.Spec.Port, proto: s.Spec.Protocol}
		if sn.proto == "" {
			sn.proto = configs.ProtocolTCP
		}
		if e := eps[s.Name]; e != nil {
			for _, ep := range e.Endpoints {
				if ip := net.ParseIP(ep.IP).To4(); ip != nil {
					sn.pods = append(sn.pods, podName{name: ep.Pod, ip: ip, port: ep.Port})
				}
			}
		}
		v.services[s.Name] = sn
	}
	r.view.Store(v)
}

// listen serves on addr (UDP and TCP) until stop. It returns once both
// sockets are bound, with the UDP socket's address (port 0 picks one, the
// same for TCP).
func (r *resolver) listen(addr string) (string, error) {
	pc, ln, err := listenPair(addr)
	if err != nil {
		return "", fmt.Errorf("dns: %w", err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: r}
	tcp := &dns.Server{Listener: ln, Handler: r}
	r.mu.Lock()
	r.servers = append(r.servers, udp, tcp)
	r.mu.Unlock()
	for _, s := range []*dns.Server{udp, tcp} {
		go func() {
			if err := s.ActivateAndServe(); err != nil {
				r.log.Debug("dns server ended", "err", err)
			}
		}()
	}
	r.log.Info("dns resolver listening", "addr", pc.LocalAddr().String(), "domain", r.domain, "upstreams", r.upstreams)
	return pc.LocalAddr().String(), nil
}

// listenPair binds UDP and TCP on the same address. With port 0 the
// kernel picks the UDP port, and that port may be in use for TCP (the
// two are separate spaces; an outgoing connection may hold it): then it
// tries another, a few times.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) || try == 31 {
			return nil, nil, err
		}
	}
}

// stop closes the servers.
func (r *resolver) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.servers {
		_ = s.Shutdown()
	}
	r.servers = nil
}

// onlyFrom makes the resolver answer queries from cidr only. It listens
// on the bridge's address, which the node's LAN neighbours can reach too
// (the node takes packets for any of its addresses on any link): without
// it they would get the cluster's service and pod names and addresses,
// and a recursive resolver to use, and to reflect from, through the node.
func (r *resolver) onlyFrom(cidr *net.IPNet) { r.allow.Store(cidr) }

// allowed reports whether a query from addr may be answered.
func (r *resolver) allowed(addr net.Addr) bool {
	cidr := r.allow.Load()
	if cidr == nil {
		return true
	}
	var ip net.IP
	switch a := addr.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	return ip != nil && cidr.Contains(ip)
}

// ServeDNS answers one query.
func (r *resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if !r.allowed(w.RemoteAddr()) {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeRefused)
		m.Question = nil // as short as the query at most: nothing to reflect
		_ = w.WriteMsg(m)
		return
	}
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNotImplemented)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	var m *dns.Msg
	if name == r.domain || strings.HasSuffix(name, "."+r.domain) {
		m = r.answerCluster(req, q, strings.TrimSuffix(strings.TrimSuffix(name, r.domain), "."))
	} else {
		_, tcp := w.RemoteAddr().(*net.TCPAddr)
		m = r.forward(req, q, tcp)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil && int(o.UDPSize()) > size {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answerCluster answers rel (the name without the domain: "web",
// "web.pods", "web-x2f.web.pods") from the view.
func (r *resolver) answerCluster(req *dns.Msg, q dns.Question, rel string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	v := r.view.Load()
	labels := strings.Split(rel, ".")
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: dnsTTL}
	}
	a := func(name string, ip net.IP) dns.RR { return &dns.A{Hdr: hdr(name, dns.TypeA), A: ip} }
	found := false
	switch {
	case rel == "":
		found = true // the domain itself: no records but SOA
	case len(labels) == 1: // SVC
		s, ok := v.services[labels[0]]
		if !ok || s.clusterIP == nil {
			break
		}
		found = true
		switch q.Qtype {
		case dns.TypeA, dns.TypeANY:
			m.Answer = append(m.Answer, a(q.Name, s.clusterIP))
		case dns.TypeSRV:
			m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(q.Name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(s.port), Target: q.Name})
			m.Extra = append(m.Extra, a(q.Name, s.clusterIP))
		}
	case len(labels) == 2 && labels[1] == "pods": // SVC.pods: headless
		s, ok := v.services[labels[0]]
		if !ok {
			break
		}
		found = true
		for _, p := range s.pods {
			switch q.Qtype {
			case dns.TypeA, dns.TypeANY:
				m.Answer = append(m.Answer, a(q.Name, p.ip))
			case dns.TypeSRV:
				target := p.name + "." + q.Name
				m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(q.Name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.port), Target: target})
				m.Extra = append(m.Extra, a(target, p.ip))
			}
		}
	case len(labels) == 3 && labels[2] == "pods": // POD.SVC.pods
		s, ok := v.services[labels[1]]
		if !ok {
			break
		}
		for _, p := range s.pods {
			if p.name == labels[0] {
				found = true
				if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
					m.Answer = append(m.Answer, a(q.Name, p.ip))
				}
			}
		}
	}
	if !found {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, &dns.SOA{Hdr: hdr(r.domain, dns.TypeSOA), Ns: "ns." + r.domain, Mbox: "hostmaster." + r.domain,
			Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: dnsTTL})
	}
	return m
}

// forward answers q from the cache or the upstreams, in order. tcp says
// the client asked over TCP: so is the upstream asked.
func (r *resolver) forward(req *dns.Msg, q dns.Question, tcp bool) *dns.Msg {
	key := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, class: q.Qclass}
	if cached := r.cache.get(key, time.Now()); cached != nil {
		cached.Id = req.Id
		cached.RecursionDesired = req.RecursionDesired
		return cached
	}
	up := new(dns.Msg)
	up.SetQuestion(q.Name, q.Qtype)
	up.Question[0].Qclass = q.Qclass
	up.RecursionDesired = true
	up.SetEdns0(dns.DefaultMsgSize, false)
	var lastErr error
	for _, u := range r.upstreams {
		resp, err := exchange(up, u, tcp)
		if err != nil {
			lastErr = err
			continue
		}
		resp.Id = req.Id
		resp.Compress = true
		if resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError {
			r.cache.put(key, resp, time.Now())
		}
		// Our own EDNS option goes; the client's size rules the reply.
		stripOPT(resp)
		return resp
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	if lastErr == nil {
		lastErr = errors.New("no upstream")
	}
	r.log.Debug("dns forward failed", "name", q.Name, "err", lastErr)
	return m
}

// exchange asks one upstream; a truncated UDP answer is asked again over
// TCP.
func exchange(m *dns.Msg, addr string, tcp bool) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: upstreamTimeout}
	if tcp {
		c.Net = "tcp"
	}
	resp, _, err := c.Exchange(m, addr)
	if err == nil && resp.Truncated && !tcp {
		c.Net = "tcp"
		resp, _, err = c.Exchange(m, addr)
	}
	return resp, err
}

func stripOPT(m *dns.Msg) {
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}

// cacheKey is one question.
type cacheKey struct {
	name         string
	qtype, class uint16
}

type cacheEntry struct {
	msg     *dns.Msg
	expires time.Time
}

// dnsCache keeps upstream answers until their TTL (at most maxCacheTTL;
// negative ones negTTL) and at most size of them: when full, an expired
// entry goes, else an arbitrary one.
type dnsCache struct {
	size int
	// mu protects m.
	mu sync.Mutex
	m  map[cacheKey]cacheEntry
}

func newDNSCache(size int) *dnsCache {
	return &dnsCache{size: size, m: make(map[cacheKey]cacheEntry, size)}
}

// get returns a copy of the answer to k, if cached and fresh, with its
// TTLs lowered by its age.
func (c *dnsCache) get(k cacheKey, now time.Time) *dns.Msg {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		return nil
	}
	m := e.msg.Copy()
	left := uint32(e.expires.Sub(now) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Ttl > left {
				rr.Header().Ttl = left
			}
		}
	}
	return m
}

// put caches m as the answer to k.
func (c *dnsCache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl := maxCacheTTL
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		ttl = negTTL
	}
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			if t := time.Duration(rr.Header().Ttl) * time.Second; t < ttl {
				ttl = t
			}
		}
	}
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.size {
		victim, found := cacheKey{}, false
		for key, e := range c.m {
			victim, found = key, true
			if !now.Before(e.expires) {
				break
			}
		}
		if found {
			delete(c.m, victim)
		}
	}
	c.m[k] = cacheEntry{msg: m.Copy(), expires: now.Add(ttl)}
}

// len is the number of entries.
func (c *dnsCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// resolvConfFile is the pods' resolv.conf in the run dir.
const resolvConfFile = "resolv.conf"

// writeResolvConf writes the resolv.conf that pods get (bind-mounted
// read-only at /etc/resolv.conf): the resolver at ip, the cluster domain
// searched first.
func writeResolvConf(runDir string, ip net.IP, domain string) (string, error) {
	p := filepath.Join(runDir, resolvConfFile)
	body := fmt.Sprintf("# written by skiff: the node's resolver\nnameserver %s\nsearch %s\noptions ndots:1\n", ip, strings.TrimSuffix(domain, "."))
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", err
	}
	return p, nil
}

// dnsAddr is where the resolver listens: the bridge's address (the first
// of the pod CIDR) and port.
func dnsAddr(podCIDR *net.IPNet, port int) (net.IP, string) {
	gw := make(net.IP, 4)
	copy(gw, podCIDR.IP.To4())
	gw[3]++
	return gw, net.JoinHostPort(gw.String(), strconv.Itoa(port))
}

var _ dns.Handler = (*resolver)(nil)
