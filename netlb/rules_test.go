package netlb

import (
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func goldenConfig() Config {
	c := DefaultConfig()
	_, c.PodCIDR, _ = net.ParseCIDR("10.88.1.0/24")
	// Never used by the rules; Validate wants them.
	c.StateDir, c.RunDir = "/nonexistent/state", "/nonexistent/run"
	return c
}

func ep(ip string, port int) Endpoint { return Endpoint{IP: net.ParseIP(ip), Port: port} }

// TestRulesGolden compares the full restore text with golden files, which
// are written in iptables-save's own form (TestServices checks, against a
// real kernel, that iptables-save prints every rule back the same).
func TestRulesGolden(t *testing.T) {
	withNodeIPs := goldenConfig()
	withNodeIPs.NodeIPs = []net.IP{net.ParseIP("192.168.1.5")}
	cases := []struct {
		name string
		cfg  Config
		svcs []Service
		eps  map[string][]Endpoint
	}{
		{name: "empty", cfg: goldenConfig()},
		{
			name: "cluster_ip_three_endpoints",
			cfg:  goldenConfig(),
			svcs: []Service{{Name: "default/web", ClusterIP: net.ParseIP("10.96.0.10"), Port: 80}},
			eps:  map[string][]Endpoint{"default/web": {ep("10.88.1.4", 8080), ep("10.88.1.2", 8080), ep("10.88.2.3", 8080)}},
		},
		{
			name: "node_port_udp_affinity_external_reject",
			cfg:  withNodeIPs,
			svcs: []Service{
				{Name: "dns", ClusterIP: net.ParseIP("10.96.0.53"), Port: 53, Protocol: UDP, NodePort: 30053},
				{Name: "sticky", ClusterIP: net.ParseIP("10.96.0.11"), Port: 443, Affinity: true, AffinityTimeout: 10 * time.Minute, ExternalIP: net.ParseIP("192.168.1.100")},
				{Name: "down", ClusterIP: net.ParseIP("10.96.0.12"), Port: 80, NodePort: 30080, ExternalIP: net.ParseIP("192.168.1.101")},
			},
			eps: map[string][]Endpoint{
				"dns":    {ep("10.88.1.7", 5353)},
				"sticky": {ep("10.88.1.8", 8443), ep("10.88.1.9", 8443)},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := buildRules(&tc.cfg, tc.svcs, tc.eps)
			if err != nil {
				t.Fatal(err)
			}
			got := string(renderRestore(rs, nil, true, nil))
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestRulesGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("restore text differs from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

func TestProbability(t *testing.T) {
	for n, want := range map[int]string{2: "0.50000000000", 3: "0.33333333349", 4: "0.25000000000", 7: "0.14285714272"} {
		if got := probability(n); got != want {
			t.Errorf("probability(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{"web": "web", "default/web": `"default/web"`, `a"b`: `"a\"b"`, "a b": `"a b"`} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestRenderPartial checks that a later sync writes only what changed.
func TestRenderPartial(t *testing.T) {
	cfg := goldenConfig()
	svc := []Service{
		{Name: "a", ClusterIP: net.ParseIP("10.96.0.1"), Port: 80},
		{Name: "b", ClusterIP: net.ParseIP("10.96.0.2"), Port: 80},
	}
	old := map[string][]Endpoint{"a": {ep("10.88.1.2", 80)}, "b": {ep("10.88.1.3", 80), ep("10.88.1.4", 80)}}
	rs1, err := buildRules(&cfg, svc, old)
	if err != nil {
		t.Fatal(err)
	}
	if got := renderRestore(rs1, rs1, false, nil); got != nil {
		t.Errorf("no change rendered %q", got)
	}
	rs2, err := buildRulesCached(&cfg, svc, map[string][]Endpoint{"a": old["a"], "b": {ep("10.88.1.3", 80), ep("10.88.1.5", 80)}}, rs1)
	if err != nil {
		t.Fatal(err)
	}
	if rs2.byKey["a/tcp"] != rs1.byKey["a/tcp"] {
		t.Errorf("unchanged service a was rebuilt")
	}
	got := string(renderRestore(rs2, rs1, false, nil))
	// Without the cache the same text must come out.
	rs3, _ := buildRules(&cfg, svc, map[string][]Endpoint{"a": old["a"], "b": {ep("10.88.1.3", 80), ep("10.88.1.5", 80)}})
	if got3 := string(renderRestore(rs3, rs1, false, nil)); got3 != got {
		t.Errorf("uncached partial restore differs:\n%s\nvs\n%s", got3, got)
	}
	gone := sepChain(svc[1], ep("10.88.1.4", 80))
	added := sepChain(svc[1], ep("10.88.1.5", 80))
	want := "*nat\n" +
		":" + svcChain(svc[1]) + " - [0:0]\n" +
		":" + added + " - [0:0]\n" +
		":" + gone + " - [0:0]\n" +
		strings.Join(rs2.rules("nat", svcChain(svc[1])), "\n") + "\n" +
		strings.Join(rs2.rules("nat", added), "\n") + "\n" +
		"-X " + gone + "\nCOMMIT\n"
	if got != want {
		t.Errorf("partial restore:\ngot:\n%s\nwant:\n%s", got, want)
	}
}

func TestBuildRulesRejectsBadInput(t *testing.T) {
	cfg := goldenConfig()
	cases := []struct {
		name string
		svcs []Service
		eps  map[string][]Endpoint
	}{
		{"cluster ip outside the service cidr", []Service{{Name: "x", ClusterIP: net.ParseIP("10.1.0.1"), Port: 80}}, nil},
		{"newline in the name", []Service{{Name: "x\ny", ClusterIP: net.ParseIP("10.96.0.1"), Port: 80}}, nil},
		{"no port", []Service{{Name: "x", ClusterIP: net.ParseIP("10.96.0.1")}}, nil},
		{"bad protocol", []Service{{Name: "x", ClusterIP: net.ParseIP("10.96.0.1"), Port: 1, Protocol: "sctp"}}, nil},
		{"twice", []Service{{Name: "x", ClusterIP: net.ParseIP("10.96.0.1"), Port: 1}, {Name: "x", ClusterIP: net.ParseIP("10.96.0.2"), Port: 1}}, nil},
		{"bad endpoint", []Service{{Name: "x", ClusterIP: net.ParseIP("10.96.0.1"), Port: 1}}, map[string][]Endpoint{"x": {{IP: net.ParseIP("10.88.1.2")}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := buildRules(&cfg, tc.svcs, tc.eps); !errors.Is(err, ErrInvalidService) {
				t.Errorf("got %v, want ErrInvalidService", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := goldenConfig()
	cases := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"defaults with a pod cidr", func(*Config) {}, true},
		{"no pod cidr", func(c *Config) { c.PodCIDR = nil }, false},
		{"no state dir", func(c *Config) { c.StateDir = "" }, false},
		{"no run dir", func(c *Config) { c.RunDir = "" }, false},
		{"pod cidr outside cluster", func(c *Config) { c.PodCIDR = mustCIDR("10.1.0.0/24") }, false},
		{"long bridge name", func(c *Config) { c.Bridge = "a-very-long-bridge" }, false},
		{"tiny mtu", func(c *Config) { c.MTU = 100 }, false},
		{"unknown backend", func(c *Config) { c.Backend = "ebpf" }, false},
		{"ipv6 node ip", func(c *Config) { c.NodeIPs = []net.IP{net.ParseIP("::1")} }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mutate(&c)
			err := c.Validate()
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestActivatorRedirect: a service that scales to zero and has no
// endpoints sends its cluster IP's new connections to the activator port
// and is not rejected; with endpoints it is balanced as usual.
func TestActivatorRedirect(t *testing.T) {
	c := DefaultConfig()
	c.PodCIDR = mustCIDR("10.88.1.0/24")
	svc := Service{Name: "zero", ClusterIP: net.ParseIP("10.96.0.20"), Port: 80, Activator: 41234}
	rs, err := buildRules(&c, []Service{svc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "-A SKIFF-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment zero -m tcp --dport 80 -j REDIRECT --to-ports 41234"
	if got := rs.rules("nat", chainServices); len(got) == 0 || got[0] != want {
		t.Errorf("SKIFF-SERVICES: %q, want %q first", got, want)
	}
	if got := rs.rules("filter", chainFilter); len(got) != 0 {
		t.Errorf("filter rejects %q, want none", got)
	}
	rs, err = buildRules(&c, []Service{svc}, map[string][]Endpoint{"zero": {{IP: net.ParseIP("10.88.1.5"), Port: 8080}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs.rules("nat", chainServices) {
		if strings.Contains(r, "REDIRECT") {
			t.Errorf("with an endpoint: %q", r)
		}
	}
}
