package agent

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/netlb"
)

// TestLoadSampler: rates from counter differences; the first sample, a
// reset chain (generation changed or count fell) and a read error never
// produce a rate from the counters' history.
func TestLoadSampler(t *testing.T) {
	now := time.Unix(100, 0)
	ep1 := netlb.Endpoint{IP: net.IPv4(10, 88, 0, 2).To4(), Port: 80}
	ep2 := netlb.Endpoint{IP: net.IPv4(10, 88, 0, 3).To4(), Port: 80}
	var counts map[string]*netlb.ServiceCount
	var readErr error
	set := func(c1, g1, c2, g2 uint64) {
		eps := []netlb.EndpointCount{{Endpoint: ep1, New: c1, Gen: g1}}
		if g2 > 0 {
			eps = append(eps, netlb.EndpointCount{Endpoint: ep2, New: c2, Gen: g2})
		}
		counts = map[string]*netlb.ServiceCount{"web": {Service: "web", Endpoints: eps}}
	}
	cpu := map[string]uint64{"web-a": 5e9}
	s := &loadSampler{now: func() time.Time { return now }, src: loadSources{
		counts: func() (map[string]*netlb.ServiceCount, error) { return counts, readErr },
		active: func() (map[string]int, error) { return map[string]int{"10.88.0.2:80": 7}, nil },
		cpu:    func() map[string]uint64 { return cpu },
	}}
	step := func(d time.Duration) (rps float64, partial bool, cores float64, ok bool) {
		t.Helper()
		now = now.Add(d)
		l, err := s.sample()
		if err != nil || l == nil {
			return 0, false, 0, false
		}
		for _, p := range l.Pods {
			cores += p.CPU
		}
		if len(l.Services) == 0 {
			return 0, false, cores, true
		}
		return l.Services[0].NewPerSec, l.Services[0].Partial, cores, true
	}

	// An agent that starts finds a counter with a long history: no report.
	set(100000, 1, 0, 0)
	if _, _, _, ok := step(0); ok {
		t.Fatal("the first sample reported a rate")
	}
	set(100200, 1, 0, 0)
	cpu = map[string]uint64{"web-a": 6e9}
	if rps, partial, cores, ok := step(2 * time.Second); !ok || rps != 100 || partial || cores != 0.5 {
		t.Errorf("steady: rps %v partial %v cores %v ok %v; want 100, false, 0.5", rps, partial, cores, ok)
	}
	// A new endpoint appears (scaled up): its chain is new, counted whole.
	set(100300, 1, 100, 1)
	if rps, partial, _, _ := step(2 * time.Second); rps != 100 || partial {
		t.Errorf("new endpoint: rps %v partial %v; want 100, false", rps, partial)
	}
	// A full resync rewrote ep1's chain: generation 2, count restarted.
	set(40, 2, 200, 1)
	if rps, partial, _, _ := step(2 * time.Second); rps != 70 || !partial {
		t.Errorf("after a rewrite: rps %v partial %v; want 70 (40 + 100 over 2 s), partial", rps, partial)
	}
	// Someone else flushed the chain: same generation, count fell.
	set(10, 2, 300, 1)
	if rps, partial, _, _ := step(2 * time.Second); rps != 55 || !partial {
		t.Errorf("count fell: rps %v partial %v; want 55, partial", rps, partial)
	}
	// A read error: no report, and the next sample is a baseline.
	readErr = errors.New("iptables-save failed")
	if _, _, _, ok := step(2 * time.Second); ok {
		t.Error("a failed read reported")
	}
	readErr = nil
	set(99999, 2, 99999, 1)
	if _, _, _, ok := step(2 * time.Second); ok {
		t.Error("the sample after a failed read reported a rate")
	}
	// A container restart makes the pod's CPU time fall: no CPU rate.
	cpu = map[string]uint64{"web-a": 1e9}
	if _, _, cores, ok := step(2 * time.Second); !ok || cores != 0 {
		t.Errorf("cpu after a restart: %v, want none", cores)
	}
}

// TestLoadSamplerSkipsQuietDumps: the conntrack dump stops after
// quietSamples samples in which no counter moved and it found no
// connection, and comes back with the first new connection; an active
// connection keeps it going.
func TestLoadSamplerSkipsQuietDumps(t *testing.T) {
	now := time.Unix(100, 0)
	ep := netlb.Endpoint{IP: net.IPv4(10, 88, 0, 2).To4(), Port: 80}
	var n uint64
	dumps, open := 0, 0
	s := &loadSampler{now: func() time.Time { return now }, src: loadSources{
		counts: func() (map[string]*netlb.ServiceCount, error) {
			return map[string]*netlb.ServiceCount{"web": {Service: "web", Endpoints: []netlb.EndpointCount{{Endpoint: ep, New: n, Gen: 1}}}}, nil
		},
		active: func() (map[string]int, error) {
			dumps++
			return map[string]int{"10.88.0.2:80": open, "10.88.0.9:443": 3}, nil // the other: no endpoint of ours
		},
	}}
	run := func(samples int) (int, int) {
		t.Helper()
		before, active := dumps, 0
		for range samples {
			now = now.Add(2 * time.Second)
			l, err := s.sample()
			if err != nil {
				t.Fatal(err)
			}
			if l != nil && len(l.Services) > 0 {
				active = l.Services[0].Active
			}
		}
		return dumps - before, active
	}
	// Start (a baseline, dumped), then quietSamples quiet dumps, then none.
	if d, _ := run(1 + quietSamples + 10); d != 1+quietSamples {
		t.Errorf("idle: %d dumps in %d samples, want %d", d, 1+quietSamples+10, 1+quietSamples)
	}
	// A new connection: dumps again, and finds it once established.
	n++
	if d, _ := run(1); d != 1 {
		t.Errorf("after a new connection: %d dumps, want 1", d)
	}
	open = 1
	if d, a := run(20); d != 20 || a != 1 {
		t.Errorf("while a connection is open: %d dumps in 20 samples (want 20), active %d (want 1)", d, a)
	}
	// It closes: quietSamples more dumps, then none.
	open = 0
	if d, a := run(quietSamples + 10); d != quietSamples || a != 0 {
		t.Errorf("after it closed: %d dumps (want %d), active %d", d, quietSamples, a)
	}
}
