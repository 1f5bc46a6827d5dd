package netlb

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The benchmarks below run their own repetitions and print medians and
// spread; run them once each:
//
//	go test -run '^$' -bench . -benchtime 1x ./netlb/

// stats summarises durations or numbers: median, min and max.
func stats(xs []float64) (med, lo, hi float64) {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchServices makes n services with k endpoints each (endpoint IPs need
// not exist for the rules).
func benchServices(n, k int) ([]Service, map[string][]Endpoint) {
	svcs := make([]Service, n)
	eps := make(map[string][]Endpoint, n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("ns/svc-%04d", i)
		svcs[i] = Service{Name: name, ClusterIP: net.IPv4(10, 96, byte(i/250), byte(i%250+1)), Port: 80}
		for j := 0; j < k; j++ {
			eps[name] = append(eps[name], Endpoint{IP: net.IPv4(10, 88, byte(1+j), byte(i%250+2)), Port: 8080 + i/250})
		}
	}
	return svcs, eps
}

// restoreIn runs iptables-nft-restore --noflush with data in the node.
func (nd *testNode) restoreIn(data []byte) (time.Duration, error) {
	var d time.Duration
	err := nd.do(func() error {
		c := exec.Command("iptables-nft-restore", "--noflush")
		c.Stdin = bytes.NewReader(data)
		start := time.Now()
		out, err := c.CombinedOutput()
		d = time.Since(start)
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
	return d, err
}

func BenchmarkSync1000x3(b *testing.B) {
	const nsvc, neps, reps = 1000, 3, 7
	nd := newNode(b, "10.88.1.0/24")
	nd.setup()
	svcs, eps := benchServices(nsvc, neps)
	rs, err := buildRules(&nd.cfg, svcs, eps)
	if err != nil {
		b.Fatal(err)
	}
	fullText := renderRestore(rs, nil, true, nil)
	nrules := bytes.Count(fullText, []byte("\n-A "))
	clean := func() {
		nd.must(nd.net.Cleanup)
		nd.setup()
	}

	var full, bare, change, bareOne []float64
	for i := 0; i < reps; i++ {
		// Alternate: the bare restore of the same text, then our Sync,
		// each on a node with only the base chains.
		clean()
		d, err := nd.restoreIn(fullText)
		if err != nil {
			b.Fatal(err)
		}
		bare = append(bare, ms(d))
		clean()
		start := time.Now()
		if err := nd.sync(svcs, eps); err != nil {
			b.Fatal(err)
		}
		full = append(full, ms(time.Since(start)))
	}
	// One endpoint of one service changes, with all 1,000 present. The
	// bare baseline replays the same restore text that Sync writes, and
	// undoes it the same way, alternating with Sync.
	target := svcs[nsvc/2].Name
	next := map[string][]Endpoint{}
	for k, v := range eps {
		next[k] = v
	}
	next[target] = append([]Endpoint{{IP: net.IPv4(10, 88, 9, 9), Port: 8080}}, eps[target][1:]...)
	rsNext, err := buildRules(&nd.cfg, svcs, next)
	if err != nil {
		b.Fatal(err)
	}
	forward := renderRestore(rsNext, rs, false, nil)
	back := renderRestore(rs, rsNext, false, nil)
	for i := 0; i < 4*reps; i++ {
		ours := func() {
			start := time.Now()
			if err := nd.sync(svcs, next); err != nil {
				b.Fatal(err)
			}
			change = append(change, ms(time.Since(start)))
			if err := nd.sync(svcs, eps); err != nil {
				b.Fatal(err)
			}
		}
		bareRun := func() {
			d, err := nd.restoreIn(forward)
			if err != nil {
				b.Fatal(err)
			}
			bareOne = append(bareOne, ms(d))
			if _, err := nd.restoreIn(back); err != nil {
				b.Fatal(err)
			}
		}
		if i%2 == 0 {
			ours()
			bareRun()
		} else {
			bareRun()
			ours()
		}
	}

	// One iptables call per rule: time the first 400 rules and extrapolate.
	clean()
	var lines []string
	for _, l := range strings.Split(string(fullText), "\n") {
		if strings.HasPrefix(l, "*") {
			lines = append(lines, l)
		}
		if strings.HasPrefix(l, ":SKIFF-") || strings.HasPrefix(l, "-A ") {
			lines = append(lines, l)
		}
	}
	const sample = 400
	var tbl string
	done := 0
	var oneByOne time.Duration
	err = nd.do(func() error {
		start := time.Now()
		for _, l := range lines {
			if strings.HasPrefix(l, "*") {
				tbl = l[1:]
				continue
			}
			if done >= sample {
				break
			}
			var args []string
			if strings.HasPrefix(l, ":") {
				args = []string{"-t", tbl, "-N", strings.Fields(l[1:])[0]}
			} else {
				args = append([]string{"-t", tbl}, splitRule(l)...)
			}
			if out, err := exec.Command("iptables-nft", args...).CombinedOutput(); err != nil {
				if strings.HasPrefix(l, ":") {
					continue // a base chain that setup already made
				}
				return fmt.Errorf("%v: %w: %s", args, err, out)
			}
			done++
		}
		oneByOne = time.Since(start)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	total := len(lines)
	perCall := oneByOne / time.Duration(done)

	fm, fl, fh := stats(full)
	bm, bl, bh := stats(bare)
	cm, cl, ch := stats(change)
	om, ol, oh := stats(bareOne)
	logf("%d services x %d endpoints: %d rules, %d bytes of restore text; one change writes %d bytes", nsvc, neps, nrules, len(fullText), len(forward))
	logf("full Sync                      median %7.1f ms  (min %.1f, max %.1f, n=%d)", fm, fl, fh, len(full))
	logf("bare iptables-restore, full    median %7.1f ms  (min %.1f, max %.1f, n=%d)  ratio %.2f", bm, bl, bh, len(bare), fm/bm)
	logf("one-endpoint Sync              median %7.1f ms  (min %.1f, max %.1f, n=%d)", cm, cl, ch, len(change))
	logf("bare iptables-restore, 1 change median %6.1f ms  (min %.1f, max %.1f, n=%d)", om, ol, oh, len(bareOne))
	pair := func(a, b []float64) (float64, float64, float64) {
		r := make([]float64, len(a))
		for i := range a {
			r[i] = a[i] / b[i]
		}
		return stats(r)
	}
	pm, pl, ph := pair(full, bare)
	logf("full Sync / bare restore, paired per round: median %.2f (min %.2f, max %.2f)", pm, pl, ph)
	pm, pl, ph = pair(change, bareOne)
	logf("one-change Sync / bare restore, paired:     median %.2f (min %.2f, max %.2f)", pm, pl, ph)
	logf("one iptables call per rule: %d calls in %v (%.1f ms each); %d calls extrapolate to %.1f s",
		done, oneByOne.Round(time.Millisecond), ms(perCall), total, (perCall * time.Duration(total)).Seconds())
	b.ReportMetric(fm, "full-ms")
	b.ReportMetric(bm, "bare-full-ms")
	b.ReportMetric(cm, "change-ms")
	b.ReportMetric(om, "bare-change-ms")
}

// splitRule splits a restore line into arguments, honouring the quotes
// that iptables-save puts around comments.
func splitRule(l string) []string {
	var out []string
	var cur strings.Builder
	inQ := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c == '\\' && inQ && i+1 < len(l):
			i++
			cur.WriteByte(l[i])
		case c == '"':
			inQ = !inQ
		case c == ' ' && !inQ:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func BenchmarkPodSandbox(b *testing.B) {
	const pods = 40
	nd := newNode(b, "10.88.1.0/24")
	nd.setup()
	var add, del []float64
	for i := 0; i < pods; i++ {
		name := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		nd.must(func() error { _, _, err := nd.net.AddPod(context.Background(), name); return err })
		add = append(add, ms(time.Since(start)))
	}
	for i := 0; i < pods; i++ {
		name := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		nd.must(func() error { return nd.net.RemovePod(name) })
		del = append(del, ms(time.Since(start)))
	}
	am, al, ah := stats(add)
	dm, dl, dh := stats(del)
	logf("AddPod    median %.2f ms (min %.2f, max %.2f, n=%d)", am, al, ah, pods)
	logf("RemovePod median %.2f ms (min %.2f, max %.2f, n=%d)", dm, dl, dh, pods)
	b.ReportMetric(am, "add-ms")
	b.ReportMetric(dm, "remove-ms")
}

var (
	wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99 = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
)

// wrk runs wrk in the netns at nsPath against url and returns requests/s
// and p99 latency in ms.
func wrk(b *testing.B, nsPath, url string, d time.Duration) (float64, float64) {
	out, err := exec.Command("nsenter", "--net="+nsPath, "wrk", "-t1", "-c16",
		"-d"+strconv.Itoa(int(d.Seconds()))+"s", "--latency", url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk (apt-get install wrk): %v: %s", err, out)
	}
	m, l := wrkRPS.FindSubmatch(out), wrkP99.FindSubmatch(out)
	if m == nil || l == nil {
		b.Fatalf("wrk output: %s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	lat, _ := strconv.ParseFloat(string(l[1]), 64)
	switch string(l[2]) {
	case "us":
		lat /= 1000
	case "s":
		lat *= 1000
	}
	return rps, lat
}

// BenchmarkDataPath compares wrk through a cluster IP with wrk straight to
// the pod IP, alternating in one run, from three places: the node itself,
// a pod on the same node (where the direct path is bridged but the service
// path is routed through the node, as with any bridge CNI) and a pod on
// another node (both paths routed over host-gw).
func BenchmarkDataPath(b *testing.B) {
	requireTools(b, "wrk")
	const rounds = 15
	n1, n2 := newNode(b, "10.88.1.0/24"), newNode(b, "10.88.2.0/24")
	ip1, ip2 := link(b, n1, n2, 79)
	n1.setup()
	n2.setup()
	peers := []Peer{{Name: "n1", NodeIP: ip1, PodCIDR: n1.cfg.PodCIDR}, {Name: "n2", NodeIP: ip2, PodCIDR: n2.cfg.PodCIDR}}
	for _, nd := range []*testNode{n1, n2} {
		nd.must(func() error { return nd.net.SetPeers(peers) })
	}
	srv, local, remote := n1.addPod("srv"), n1.addPod("wrk-local"), n2.addPod("wrk-remote")
	svcs := []Service{{Name: "web", ClusterIP: net.ParseIP("10.96.0.10"), Port: 80}}
	// Load the tables as a real node would: 1,000 other services first.
	more, eps := benchServices(1000, 3)
	for i := range more {
		more[i].ClusterIP = net.IPv4(10, 96, 10+byte(i/250), byte(i%250+1))
	}
	eps["web"] = []Endpoint{{IP: srv.ip, Port: 8080}}
	for _, nd := range []*testNode{n1, n2} {
		if err := nd.sync(append(svcs, more...), eps); err != nil {
			b.Fatal(err)
		}
	}
	direct := "http://" + svcAddr(srv.ip.String(), 8080) + "/"
	vip := "http://10.96.0.10:80/"
	logf("wrk -t1 -c16 -d1s, %d alternating rounds per client, 1,001 services in the tables", rounds)
	for _, from := range []struct{ name, path string }{
		{"node", n1.path}, {"pod, same node", local.path}, {"pod, other node", remote.path},
	} {
		var dr, dl, vr, vl, ratios []float64
		for i := 0; i < rounds; i++ {
			r1, l1 := wrk(b, from.path, direct, time.Second)
			r2, l2 := wrk(b, from.path, vip, time.Second)
			dr, dl, vr, vl = append(dr, r1), append(dl, l1), append(vr, r2), append(vl, l2)
			ratios = append(ratios, r2/r1)
		}
		drm, drl, drh := stats(dr)
		dlm, dll, dlh := stats(dl)
		vrm, vrl, vrh := stats(vr)
		vlm, vll, vlh := stats(vl)
		rm, rl, rh := stats(ratios)
		logf("from the %s:", from.name)
		logf("  direct pod IP  req/s median %6.0f (min %6.0f, max %6.0f)  p99 median %6.2f ms (min %.2f, max %.2f)", drm, drl, drh, dlm, dll, dlh)
		logf("  cluster IP     req/s median %6.0f (min %6.0f, max %6.0f)  p99 median %6.2f ms (min %.2f, max %.2f)", vrm, vrl, vrh, vlm, vll, vlh)
		logf("  cluster IP / direct req/s, per round: median %.3f (min %.3f, max %.3f)", rm, rl, rh)
	}
}

// logf prints a figure line: b.Logf would cut long reports short.
func logf(format string, a ...any) { fmt.Printf(format+"\n", a...) }
