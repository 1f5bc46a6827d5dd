package netlb

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func svcAddr(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

func eps(port int, pods ...*testPod) []Endpoint {
	var out []Endpoint
	for _, p := range pods {
		out = append(out, Endpoint{IP: p.ip, Port: port})
	}
	return out
}

// skiffRules returns the SKIFF-related lines of iptables-save in the node,
// without counters and comments about generation.
func (nd *testNode) skiffRules() string {
	nd.t.Helper()
	var keep []string
	for _, l := range strings.Split(nd.cmd("iptables-nft-save"), "\n") {
		if strings.Contains(l, "SKIFF-") || strings.HasPrefix(l, "*") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestServices(t *testing.T) {
	nd := newNode(t, "10.88.1.0/24")
	nd.setup()
	pods := []*testPod{nd.addPod("web-0"), nd.addPod("web-1"), nd.addPod("web-2")}
	client := nd.addPod("client")

	svcs := []Service{
		{Name: "web", ClusterIP: net.ParseIP("10.96.0.10"), Port: 80, NodePort: 30080},
		{Name: "one", ClusterIP: net.ParseIP("10.96.0.11"), Port: 80},
		{Name: "dns", ClusterIP: net.ParseIP("10.96.0.12"), Port: 53, Protocol: UDP, NodePort: 30053},
		{Name: "sticky", ClusterIP: net.ParseIP("10.96.0.13"), Port: 80, Affinity: true, AffinityTimeout: time.Minute},
		{Name: "empty", ClusterIP: net.ParseIP("10.96.0.14"), Port: 80, NodePort: 30081},
		{Name: "empty-udp", ClusterIP: net.ParseIP("10.96.0.15"), Port: 53, Protocol: UDP},
	}
	endpoints := map[string][]Endpoint{
		"web":    eps(8080, pods...),
		"one":    eps(8080, pods[0]),
		"dns":    eps(9000, pods[1]),
		"sticky": eps(8080, pods...),
	}
	if err := nd.sync(svcs, endpoints); err != nil {
		t.Fatal(err)
	}

	t.Run("kernel rules match the generator", func(t *testing.T) {
		rs, err := buildRules(&nd.cfg, svcs, endpoints)
		if err != nil {
			t.Fatal(err)
		}
		saved := nd.skiffRules()
		for _, tbl := range []string{"nat", "filter"} {
			for _, ch := range rs.chainList(tbl) {
				for _, r := range ch.rules {
					if !strings.Contains(saved, r+"\n") && !strings.HasSuffix(saved, r) {
						t.Errorf("iptables-save lacks %q", r)
					}
				}
			}
		}
		for _, j := range jumpRules {
			if !strings.Contains(saved, jumpText(j)) {
				t.Errorf("iptables-save lacks jump %q", jumpText(j))
			}
		}
	})

	cases := []struct {
		name     string
		from     *testPod // nil: the node itself
		addr     string
		wantFrom []string // backends allowed to answer
		wantSeen string   // client address the backend must see, if set
	}{
		{"cluster ip from the node", nil, "10.96.0.11:80", []string{"web-0"}, nd.net.Gateway().String()},
		{"cluster ip from a pod", client, "10.96.0.11:80", []string{"web-0"}, client.ip.String()},
		{"hairpin: a pod reaches its own service", pods[0], "10.96.0.11:80", []string{"web-0"}, nd.net.Gateway().String()},
		{"node port on 127.0.0.1", nil, "127.0.0.1:30080", []string{"web-0", "web-1", "web-2"}, ""},
		{"node port on the bridge address from a pod", client, svcAddr(nd.net.Gateway().String(), 30080), []string{"web-0", "web-1", "web-2"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := nd.nodeNS()
			if tc.from != nil {
				ns = tc.from.ns
			}
			name, seen, err := get(ns, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			ok := false
			for _, w := range tc.wantFrom {
				ok = ok || name == w
			}
			if !ok {
				t.Errorf("answer from %q, want one of %v", name, tc.wantFrom)
			}
			if tc.wantSeen != "" && seen != tc.wantSeen {
				t.Errorf("backend saw client %s, want %s", seen, tc.wantSeen)
			}
		})
	}

	t.Run("udp through cluster ip and node port", func(t *testing.T) {
		for _, addr := range []string{"10.96.0.12:53", svcAddr(nd.net.Gateway().String(), 30053)} {
			c, err := udpConn(client.ns, addr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := udpAsk(c, 2*time.Second)
			c.Close()
			if err != nil || got != "web-1" {
				t.Errorf("udp %s: got %q, %v; want web-1", addr, got, err)
			}
		}
	})

	t.Run("distribution across 3 endpoints", func(t *testing.T) {
		const n = 300
		count := map[string]int{}
		for i := 0; i < n; i++ {
			name, _, err := get(client.ns, "10.96.0.10:80")
			if err != nil {
				t.Fatal(err)
			}
			count[name]++
		}
		// Each backend expects 100 hits with a standard deviation of about
		// 8.2; 60..140 is almost 5 of them.
		for _, p := range pods {
			if c := count[p.name]; c < 60 || c > 140 {
				t.Errorf("%s got %d of %d requests, want 60..140 (all: %v)", p.name, c, n, count)
			}
		}
		t.Logf("distribution: %v", count)
	})

	t.Run("client ip affinity", func(t *testing.T) {
		first, _, err := get(client.ns, "10.96.0.13:80")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			name, _, err := get(client.ns, "10.96.0.13:80")
			if err != nil {
				t.Fatal(err)
			}
			if name != first {
				t.Fatalf("request %d went to %s, want %s as the first one", i, name, first)
			}
		}
	})

	t.Run("reject without endpoints", func(t *testing.T) {
		for _, addr := range []string{"10.96.0.14:80", "127.0.0.1:30081"} {
			for _, from := range []*testPod{nil, client} {
				ns := nd.nodeNS()
				if from != nil {
					ns = from.ns
				}
				if from != nil && strings.HasPrefix(addr, "127.") {
					continue
				}
				start := time.Now()
				_, _, err := get(ns, addr)
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("%s: got %v, want connection refused", addr, err)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("%s: refused after %v, want at once", addr, d)
				}
			}
		}
		c, err := udpConn(client.ns, "10.96.0.15:53")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hi"))
		// The ICMP port unreachable turns into ECONNREFUSED on the next
		// operation of a connected UDP socket.
		_, err = udpAsk(c, 2*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("udp: got %v, want connection refused", err)
		}
	})

	t.Run("removed service leaves no chains", func(t *testing.T) {
		if err := nd.sync(svcs[1:2], map[string][]Endpoint{"one": endpoints["one"]}); err != nil {
			t.Fatal(err)
		}
		rules := nd.skiffRules()
		for _, s := range []Service{svcs[0], svcs[2], svcs[3]} {
			if strings.Contains(rules, svcChain(s)) {
				t.Errorf("chain %s of removed service %s still there", svcChain(s), s.Name)
			}
			for _, e := range endpoints[s.Name] {
				if strings.Contains(rules, sepChain(s, e)) {
					t.Errorf("chain %s of removed service %s still there", sepChain(s, e), s.Name)
				}
			}
		}
		if _, _, err := get(client.ns, "10.96.0.11:80"); err != nil {
			t.Errorf("kept service: %v", err)
		}
	})
}
