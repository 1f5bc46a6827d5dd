package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// upstream is a DNS server on loopback that answers ext.example. and
// counts what it is asked. Nothing here reaches the real internet.
type upstream struct {
	addr  string
	asked atomic.Int64
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.asked.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "ext.example." && r.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "ext.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 7)}}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return u
}

// nopNet is a load balancer network that accepts every sync.
type nopNet struct{}

func (nopNet) Sync([]netlb.Service, map[string][]netlb.Endpoint) error { return nil }

// offlineResolver is a resolver on loopback fed the way an agent without a
// server feeds it: the load balancer's view set from the local cache
// (lb.set, as Agent.catchUp does) and synced, no API at all.
func offlineResolver(t testing.TB, up string) (addr string, r *resolver) {
	t.Helper()
	c := configs.DefaultNodeConfig().DNS
	c.Upstreams = []string{up}
	r, err := newResolver(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr, err = r.listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	l := newLB(slog.New(slog.DiscardHandler), nil, nil) // no server
	l.net, l.names = nopNet{}, r
	l.set([]*api.Service{
		{Meta: api.Meta{Name: "web"}, Spec: configs.ServiceSpec{App: "web", Port: 80}, Status: api.ServiceStatus{ClusterIP: "10.96.0.10"}},
		{Meta: api.Meta{Name: "db"}, Spec: configs.ServiceSpec{App: "db", Port: 5432}, Status: api.ServiceStatus{ClusterIP: "10.96.0.11"}},
	}, []*api.Endpoints{{Meta: api.Meta{Name: "web"}, Endpoints: []api.Endpoint{
		{Pod: "web-a", Node: "n1", IP: "10.88.0.2", Port: 8080}, {Pod: "web-b", Node: "n2", IP: "10.88.1.2", Port: 8080}}}})
	if err := l.sync(); err != nil {
		t.Fatal(err)
	}
	return addr, r
}

func ask(t testing.TB, addr, name string, qtype uint16, net string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: net, Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("ask %s %s over %s: %v", name, dns.TypeToString[qtype], net, err)
	}
	return resp
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.SRV:
			out = append(out, rr.Target+":"+strconv.Itoa(int(rr.Port)))
		}
	}
	sort.Strings(out)
	return out
}

// TestResolverAnswers: cluster names from the load balancer's view with no
// server at all, over UDP and TCP; unknown cluster names are NXDOMAIN
// without asking the upstream; other names go to the upstream once and
// then come from the cache.
func TestResolverAnswers(t *testing.T) {
	up := startUpstream(t)
	addr, _ := offlineResolver(t, up.addr)
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.skiff.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.10"}},
		{"WEB.Skiff.", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.10"}},
		{"web.skiff.", dns.TypeSRV, dns.RcodeSuccess, []string{"web.skiff.:80"}},
		{"web.skiff.", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"web.pods.skiff.", dns.TypeA, dns.RcodeSuccess, []string{"10.88.0.2", "10.88.1.2"}},
		{"web.pods.skiff.", dns.TypeSRV, dns.RcodeSuccess, []string{"web-a.web.pods.skiff.:8080", "web-b.web.pods.skiff.:8080"}},
		{"web-b.web.pods.skiff.", dns.TypeA, dns.RcodeSuccess, []string{"10.88.1.2"}},
		{"db.pods.skiff.", dns.TypeA, dns.RcodeSuccess, nil},
		{"nope.skiff.", dns.TypeA, dns.RcodeNameError, nil},
		{"web-z.web.pods.skiff.", dns.TypeA, dns.RcodeNameError, nil},
	}
	for _, tt := range tests {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(tt.name+dns.TypeToString[tt.qtype]+"/"+proto, func(t *testing.T) {
				m := ask(t, addr, tt.name, tt.qtype, proto)
				if m.Rcode != tt.rcode || !slices.Equal(answers(m), tt.want) || !m.Authoritative {
					t.Fatalf("rcode %s answers %v aa %v, want %s %v aa", dns.RcodeToString[m.Rcode], answers(m), m.Authoritative,
						dns.RcodeToString[tt.rcode], tt.want)
				}
			})
		}
	}
	if n := up.asked.Load(); n != 0 {
		t.Errorf("cluster names asked the upstream %d times", n)
	}

	for i := range 3 {
		m := ask(t, addr, "ext.example.", dns.TypeA, "udp")
		if m.Rcode != dns.RcodeSuccess || !slices.Equal(answers(m), []string{"192.0.2.7"}) {
			t.Fatalf("ext.example. try %d: %v", i, m)
		}
	}
	if n := up.asked.Load(); n != 1 {
		t.Errorf("upstream asked %d times for 3 queries of one name, want 1 (cached)", n)
	}
	if m := ask(t, addr, "nope.example.", dns.TypeA, "udp"); m.Rcode != dns.RcodeNameError {
		t.Errorf("nope.example.: %s, want NXDOMAIN from the upstream", dns.RcodeToString[m.Rcode])
	}
}

// TestResolverUpstreamDown: an upstream that does not answer gives
// SERVFAIL, while cluster names still answer.
func TestResolverUpstreamDown(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	addr, _ := offlineResolver(t, pc.LocalAddr().String())
	if m := ask(t, addr, "ext.example.", dns.TypeA, "tcp"); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("dead upstream: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if m := ask(t, addr, "web.skiff.", dns.TypeA, "udp"); !slices.Equal(answers(m), []string{"10.96.0.10"}) {
		t.Errorf("web.skiff. with a dead upstream: %v", m)
	}
}

// TestDNSCacheBounded: the cache never holds more than its size, and an
// entry expires with its TTL.
func TestDNSCacheBounded(t *testing.T) {
	c := newDNSCache(4)
	now := time.Now()
	for i := range 10 {
		m := new(dns.Msg)
		m.SetQuestion(strconv.Itoa(i)+".example.", dns.TypeA)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 1)}}
		c.put(cacheKey{name: m.Question[0].Name, qtype: dns.TypeA, class: dns.ClassINET}, m, now)
	}
	if n := c.len(); n != 4 {
		t.Errorf("cache holds %d entries, want its size 4", n)
	}
	k := cacheKey{name: "9.example.", qtype: dns.TypeA, class: dns.ClassINET}
	if m := c.get(k, now.Add(10*time.Second)); m == nil || m.Answer[0].Header().Ttl != 20 {
		t.Errorf("after 10s: %v, want the entry with TTL 20", m)
	}
	if m := c.get(k, now.Add(31*time.Second)); m != nil {
		t.Errorf("after its TTL: %v, want none", m)
	}
}

// BenchmarkResolver measures the node resolver over UDP on loopback:
// cluster names (from the view), upstream names from the cache, and the
// upstream itself asked directly (the baseline: what a pod pays without
// the node resolver's cache, less the forwarding hop). It reports
// queries/s and the p99 latency of one client asking in a loop.
func BenchmarkResolver(b *testing.B) {
	up := startUpstream(b)
	addr, _ := offlineResolver(b, up.addr)
	for _, bc := range []struct{ name, addr, qname string }{
		{"cluster-name", addr, "web.skiff."},
		{"upstream-name-cached", addr, "ext.example."},
		{"upstream-direct", up.addr, "ext.example."},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			conn, err := c.Dial(bc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			m := new(dns.Msg)
			m.SetQuestion(bc.qname, dns.TypeA)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				t0 := time.Now()
				resp, _, err := c.ExchangeWithConn(m, conn)
				if err != nil || len(resp.Answer) != 1 {
					b.Fatalf("%s: %v %v", bc.qname, err, resp)
				}
				lat = append(lat, time.Since(t0))
			}
			el := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/el.Seconds(), "queries/s")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// TestResolverOnlyFromPods: the resolver listens on the bridge's address,
// which the LAN can reach too; queries from outside the node's pod CIDR
// are refused, over UDP and TCP, for cluster and forwarded names alike.
func TestResolverOnlyFromPods(t *testing.T) {
	up := startUpstream(t)
	addr, r := offlineResolver(t, up.addr)
	_, pods, _ := net.ParseCIDR("10.88.5.0/24")
	r.onlyFrom(pods) // the test asks from 127.0.0.1: not a pod
	for _, proto := range []string{"udp", "tcp"} {
		for _, name := range []string{"web.skiff.", "web.pods.skiff.", "ext.example."} {
			m := ask(t, addr, name, dns.TypeA, proto)
			if m.Rcode != dns.RcodeRefused || len(m.Answer) != 0 {
				t.Errorf("%s over %s from outside the pod CIDR: %s %v, want REFUSED and no answer", name, proto, dns.RcodeToString[m.Rcode], answers(m))
			}
		}
	}
	if n := up.asked.Load(); n != 0 {
		t.Errorf("the upstream was asked %d times for refused queries", n)
	}
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	r.onlyFrom(lo)
	if m := ask(t, addr, "web.skiff.", dns.TypeA, "udp"); m.Rcode != dns.RcodeSuccess || !slices.Equal(answers(m), []string{"10.96.0.10"}) {
		t.Errorf("web.skiff. from inside: %s %v", dns.RcodeToString[m.Rcode], answers(m))
	}
}

// TestListenPairRetriesTCPInUse: with port 0 the kernel picks a free UDP
// port, which TCP may hold. In a network namespace of its own whose
// ephemeral range is two ports, one held by a TCP listener, every listen
// must still bind both sockets (on the other port). Without the retry
// about half of them fail with "address already in use", as one did in CI.
func TestListenPairRetriesTCPInUse(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (CI runs as root)")
		}
		t.Skip("needs root: it makes a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked and ends with the goroutine, and with it
		// the namespace, which nothing else holds.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		errc <- func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(lo); err != nil {
				return err
			}
			if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("40000 40001"), 0o644); err != nil {
				return err
			}
			held, err := net.Listen("tcp", "127.0.0.1:40000")
			if err != nil {
				return err
			}
			defer held.Close()
			for i := range 20 {
				pc, ln, err := listenPair("127.0.0.1:0")
				if err != nil {
					return fmt.Errorf("listen %d: %w", i, err)
				}
				got := pc.LocalAddr().String()
				pc.Close()
				ln.Close()
				if got != "127.0.0.1:40001" {
					return fmt.Errorf("listen %d: bound %s, want the free port 127.0.0.1:40001", i, got)
				}
			}
			// A port asked for by number is not changed behind the caller's back.
			if _, _, err := listenPair("127.0.0.1:40000"); !errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("listen on the held port: %v, want address already in use", err)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
