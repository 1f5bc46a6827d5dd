package netlb

import (
	"net"
	"testing"
)

// TestCounts drives real connections through a service and reads them back
// from the DNAT counters: the counts add up, a rewrite of the service's
// other chains (an endpoint added) keeps them, and a full resync, which
// resets them, changes their generation so that no caller computes a
// difference across the reset.
func TestCounts(t *testing.T) {
	nd := newNode(t, "10.88.7.0/24")
	nd.setup()
	a, b, c := nd.addPod("web-0"), nd.addPod("web-1"), nd.addPod("web-2")
	svcs := []Service{{Name: "web", ClusterIP: net.ParseIP("10.96.7.10"), Port: 80}}
	if err := nd.sync(svcs, map[string][]Endpoint{"web": eps(8080, a, b)}); err != nil {
		t.Fatal(err)
	}
	counts := func() map[string]EndpointCount {
		t.Helper()
		var got map[string]*ServiceCount
		nd.must(func() (err error) { got, err = nd.net.Counts(); return err })
		out := map[string]EndpointCount{}
		if sc := got["web"]; sc != nil {
			for _, e := range sc.Endpoints {
				out[e.Endpoint.IP.String()] = e
			}
		}
		return out
	}
	total := func(m map[string]EndpointCount) (n uint64) {
		for _, e := range m {
			n += e.New
		}
		return n
	}
	before := counts()
	if len(before) != 2 || total(before) != 0 {
		t.Fatalf("fresh counts: %+v, want 2 endpoints at 0", before)
	}
	const n = 12
	for i := range n {
		if _, _, err := get(nd.nodeNS(), "10.96.7.10:80"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	after := counts()
	if total(after) != n {
		t.Fatalf("after %d connections the counters say %d: %+v", n, total(after), after)
	}

	// A third endpoint rewrites the service chain, not the endpoints'.
	if err := nd.sync(svcs, map[string][]Endpoint{"web": eps(8080, a, b, c)}); err != nil {
		t.Fatal(err)
	}
	grown := counts()
	for _, p := range []*testPod{a, b} {
		if g, w := grown[p.ip.String()], after[p.ip.String()]; g.New != w.New || g.Gen != w.Gen {
			t.Errorf("endpoint %s: %+v after adding an endpoint, want %+v (kept)", p.ip, g, w)
		}
	}
	if e := grown[c.ip.String()]; e.New != 0 {
		t.Errorf("new endpoint: %+v, want 0 connections", e)
	}

	// A full resync rewrites every chain: counters reset, generations move.
	nd.net.Resync()
	if err := nd.sync(svcs, map[string][]Endpoint{"web": eps(8080, a, b, c)}); err != nil {
		t.Fatal(err)
	}
	reset := counts()
	for ip, e := range reset {
		if e.Gen == grown[ip].Gen {
			t.Errorf("endpoint %s: generation %d unchanged by a full resync", ip, e.Gen)
		}
		if e.New != 0 {
			t.Errorf("endpoint %s: %d connections after a full resync, want 0", ip, e.New)
		}
	}
}

// TestParseDNATCounters reads the legacy backend's iptables-save -c text.
func TestParseDNATCounters(t *testing.T) {
	out := []byte(`*nat
:SKIFF-SEP-AAAAAAAAAAAAAAAA - [0:0]
[3:180] -A SKIFF-SEP-AAAAAAAAAAAAAAAA -s 10.88.0.2/32 -j SKIFF-MARK-MASQ
[41:2460] -A SKIFF-SEP-AAAAAAAAAAAAAAAA -p tcp -m tcp -j DNAT --to-destination 10.88.0.2:8080
[7:420] -A SKIFF-SVC-BBBBBBBBBBBBBBBB -j SKIFF-SEP-AAAAAAAAAAAAAAAA
[9:540] -A OTHER -p tcp -j DNAT --to-destination 1.2.3.4:80
COMMIT
`)
	got := parseDNATCounters(out)
	if len(got) != 1 || got["SKIFF-SEP-AAAAAAAAAAAAAAAA"] != 41 {
		t.Errorf("parsed %v, want only the SEP chain's DNAT rule with 41", got)
	}
}
