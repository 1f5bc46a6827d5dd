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
	const nsvc, neps, reps = 1000, 3, 5
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
	// One endpoint of one service changes, with all 1,000 present.
	target := svcs[nsvc/2].Name
	orig := eps[target]
	for i := 0; i < 4*reps; i++ {
		next := append([]Endpoint(nil), orig...)
		if i%2 == 0 {
			next[1] = Endpoint{IP: net.IPv4(10, 88, 9, 9), Port: 8080}
		}
		prev := nd.net.applied
		newEps := map[string][]Endpoint{}
		for k, v := range eps {
			newEps[k] = v
		}
		newEps[target] = next
		start := time.Now()
		if err := nd.sync(svcs, newEps); err != nil {
			b.Fatal(err)
		}
		change = append(change, ms(time.Since(start)))
		// The same change as a bare restore: undo it with Sync, then
		// replay the text.
		rs2, _ := buildRules(&nd.cfg, svcs, newEps)
		text := renderRestore(rs2, prev, false, nil)
		if err := nd.sync(svcs, eps); err != nil {
			b.Fatal(err)
		}
		d, err := nd.restoreIn(text)
		if err != nil {
			b.Fatal(err)
		}
		bareOne = append(bareOne, ms(d))
		if err := nd.sync(svcs, eps); err != nil { // applied state was reset by the undo
			b.Fatal(err)
		}
		nd.net.Resync()
		if err := nd.sync(svcs, eps); err != nil {
			b.Fatal(err)
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
	b.Logf("%d services x %d endpoints: %d rules, %d bytes of restore text", nsvc, neps, nrules, len(fullText))
	b.Logf("full Sync                      median %7.1f ms  (min %.1f, max %.1f, n=%d)", fm, fl, fh, len(full))
	b.Logf("bare iptables-restore, full    median %7.1f ms  (min %.1f, max %.1f, n=%d)  ratio %.2f", bm, bl, bh, len(bare), fm/bm)
	b.Logf("one-endpoint Sync              median %7.1f ms  (min %.1f, max %.1f, n=%d)", cm, cl, ch, len(change))
	b.Logf("bare iptables-restore, 1 change median %6.1f ms  (min %.1f, max %.1f, n=%d)", om, ol, oh, len(bareOne))
	b.Logf("one iptables call per rule: %d calls in %v (%.1f ms each); %d calls extrapolate to %.1f s",
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
	b.Logf("AddPod    median %.2f ms (min %.2f, max %.2f, n=%d)", am, al, ah, pods)
	b.Logf("RemovePod median %.2f ms (min %.2f, max %.2f, n=%d)", dm, dl, dh, pods)
	b.ReportMetric(am, "add-ms")
	b.ReportMetric(dm, "remove-ms")
}

var (
	wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99 = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
)

// wrk runs wrk from the pod's netns against url and returns requests/s and
// p99 latency in ms.
func wrk(b *testing.B, p *testPod, url string, d time.Duration) (float64, float64) {
	out, err := exec.Command("nsenter", "--net="+p.path, "wrk", "-t1", "-c16",
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

func BenchmarkDataPath(b *testing.B) {
	requireTools(b, "wrk")
	const rounds = 5
	nd := newNode(b, "10.88.1.0/24")
	nd.setup()
	srv, cli := nd.addPod("srv"), nd.addPod("wrk")
	svcs := []Service{{Name: "web", ClusterIP: net.ParseIP("10.96.0.10"), Port: 80}}
	// Load the table as a real node would: 1,000 other services first.
	more, eps := benchServices(1000, 3)
	for i := range more {
		more[i].ClusterIP = net.IPv4(10, 96, 10+byte(i/250), byte(i%250+1))
	}
	eps["web"] = eps8080(srv)
	if err := nd.sync(append(svcs, more...), eps); err != nil {
		b.Fatal(err)
	}
	direct := "http://" + svcAddr(srv.ip.String(), 8080) + "/"
	vip := "http://10.96.0.10:80/"
	var dr, dl, vr, vl []float64
	for i := 0; i < rounds; i++ {
		r, l := wrk(b, cli, direct, 3*time.Second)
		dr, dl = append(dr, r), append(dl, l)
		r, l = wrk(b, cli, vip, 3*time.Second)
		vr, vl = append(vr, r), append(vl, l)
	}
	drm, drl, drh := stats(dr)
	dlm, dll, dlh := stats(dl)
	vrm, vrl, vrh := stats(vr)
	vlm, vll, vlh := stats(vl)
	b.Logf("wrk -t1 -c16 -d3s, %d alternating rounds, 1,001 services in the table", rounds)
	b.Logf("direct pod IP  req/s median %.0f (min %.0f, max %.0f)  p99 median %.2f ms (min %.2f, max %.2f)", drm, drl, drh, dlm, dll, dlh)
	b.Logf("cluster IP     req/s median %.0f (min %.0f, max %.0f)  p99 median %.2f ms (min %.2f, max %.2f)", vrm, vrl, vrh, vlm, vll, vlh)
	ratios := make([]float64, rounds)
	for i := range ratios {
		ratios[i] = vr[i] / dr[i]
	}
	rm, rl, rh := stats(ratios)
	b.Logf("cluster IP / direct req/s per round: median %.3f (min %.3f, max %.3f)", rm, rl, rh)
	b.ReportMetric(vrm/drm, "vip/direct")
}

func eps8080(p *testPod) []Endpoint { return []Endpoint{{IP: p.ip, Port: 8080}} }
