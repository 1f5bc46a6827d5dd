package agent_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeUpstream is a tiny DNS server on loopback that answers A queries
// for ext.example. and NXDOMAIN otherwise, and counts the queries it got:
// the tests never ask the real internet.
type fakeUpstream struct {
	addr    string
	queries chan string
	srv     *dns.Server
}

func newFakeUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{addr: pc.LocalAddr().String(), queries: make(chan string, 1<<16)}
	u.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		select {
		case u.queries <- q.Name:
		default:
		}
		if q.Name == "ext.example." && q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A: net.IPv4(192, 0, 2, 7)})
		} else if q.Name != "ext.example." {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	u.srv.NotifyStartedFunc = func() { close(started) }
	go u.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { u.srv.Shutdown() })
	return u
}

// TestNamesE2E runs a real node whose resolver forwards to a fake
// upstream on loopback: inside a pod `web` and `web.skiff` resolve to the
// service's cluster IP, `http://web/` answers, the headless name lists the
// ready pods, and an external name resolves through the upstream.
func TestNamesE2E(t *testing.T) {
	up := newFakeUpstream(t)
	n := newNode(t)
	f, err := os.OpenFile(n.cfgFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[dns]\nupstreams = [%q]\n", up.addr)
	f.Close()
	n.start()
	manifest := filepath.Join(n.dir, "web.toml")
	if err := os.WriteFile(manifest, []byte(webManifest(n.nodePort)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := n.skiff("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	pods := n.waitReady("web", "web", 3, 60*time.Second)
	clusterIP, _, _ := strings.Cut(n.vip("web"), ":")
	p := pods[0].Name

	out, err := n.skiff("exec", p, "--", "cat", "/etc/resolv.conf")
	if err != nil || !strings.Contains(out, "search skiff") || !strings.Contains(out, "nameserver 10.213.") {
		t.Fatalf("resolv.conf in the pod: %v\n%s", err, out)
	}
	for _, name := range []string{"web", "web.skiff"} {
		out, err := n.skiff("exec", p, "--", "busybox", "nslookup", name)
		if err != nil || !strings.Contains(out, "Address: "+clusterIP) {
			t.Errorf("nslookup %s in the pod: %v, want %s:\n%s", name, err, clusterIP, out)
		}
	}
	out, err = n.skiff("exec", p, "--", "wget", "-q", "-O-", "http://web/")
	if err != nil || !strings.HasPrefix(out, "hello from web-") {
		t.Errorf("wget http://web/ in the pod: %v %q", err, out)
	}
	out, err = n.skiff("exec", p, "--", "busybox", "nslookup", "web.pods.skiff")
	for _, q := range pods {
		if err != nil || !strings.Contains(out, "Address: "+q.Status.IP) {
			t.Errorf("nslookup web.pods.skiff: %v, want pod IP %s:\n%s", err, q.Status.IP, out)
		}
	}
	out, err = n.skiff("exec", p, "--", "busybox", "nslookup", "-type=srv", "web.skiff")
	if err != nil || !strings.Contains(out, "80 web.skiff") {
		t.Errorf("nslookup -type=srv web.skiff: %v\n%s", err, out)
	}
	if out, err := n.skiff("exec", p, "--", "busybox", "nslookup", "nope.skiff"); err == nil || !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("nslookup nope.skiff: %v, want NXDOMAIN:\n%s", err, out)
	}
	out, err = n.skiff("exec", p, "--", "busybox", "nslookup", "ext.example.")
	if err != nil || !strings.Contains(out, "Address: 192.0.2.7") {
		t.Errorf("nslookup ext.example. through the upstream: %v\n%s", err, out)
	}
	if len(up.queries) == 0 {
		t.Error("the upstream got no query")
	}
}
