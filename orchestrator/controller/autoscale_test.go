package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestRecommend(t *testing.T) {
	rps := &configs.AutoscaleSpec{Min: 1, Max: 8, TargetRPS: 100}
	cpu := &configs.AutoscaleSpec{Min: 1, Max: 8, TargetCPU: 0.5}
	both := &configs.AutoscaleSpec{Min: 2, Max: 8, TargetRPS: 100, TargetCPU: 0.5}
	tests := []struct {
		name   string
		as     *configs.AutoscaleSpec
		cur    int
		load   api.AppLoad
		reqCPU float64
		want   int
		ok     bool
		why    string
	}{
		{"no report: no decision", rps, 2, api.AppLoad{}, 0, 0, false, ""},
		{"partial report: no decision", rps, 2, api.AppLoad{RPS: 10000, Nodes: 1, Partial: true}, 0, 0, false, ""},
		{"3x target from 1", rps, 1, api.AppLoad{RPS: 300, Nodes: 1}, 0, 3, true, "300 req/s over 1 node, target 100/replica"},
		{"412 req/s over 3 nodes", rps, 2, api.AppLoad{RPS: 412, Nodes: 3}, 0, 5, true, "412 req/s over 3 nodes, target 100/replica"},
		{"inside the band above", rps, 4, api.AppLoad{RPS: 439, Nodes: 1}, 0, 4, true, ""},
		{"inside the band below", rps, 4, api.AppLoad{RPS: 361, Nodes: 1}, 0, 4, true, ""},
		{"just past the band above", rps, 4, api.AppLoad{RPS: 441, Nodes: 1}, 0, 5, true, ""},
		{"just past the band below", rps, 4, api.AppLoad{RPS: 359, Nodes: 1}, 0, 4, true, ""},
		{"well below", rps, 4, api.AppLoad{RPS: 150, Nodes: 1}, 0, 2, true, ""},
		{"idle: min", rps, 4, api.AppLoad{RPS: 0, Nodes: 2}, 0, 1, true, ""},
		{"clamped to max", rps, 4, api.AppLoad{RPS: 5000, Nodes: 2}, 0, 8, true, ""},
		{"cpu: 1.5 cores at 0.5 x 1 core", cpu, 1, api.AppLoad{CPU: 1.5, Pods: 1, Nodes: 1}, 1, 3, true, "1.50 cores over 1 pod, target 0.5×1 cores/replica"},
		{"cpu in the band", cpu, 2, api.AppLoad{CPU: 1.05, Pods: 2, Nodes: 1}, 1, 2, true, ""},
		{"cpu without pods reporting", cpu, 2, api.AppLoad{Nodes: 1}, 1, 0, false, ""},
		{"the larger wins: cpu", both, 2, api.AppLoad{RPS: 100, CPU: 3, Pods: 2, Nodes: 1}, 1, 6, true, "3.00 cores"},
		{"the larger wins: rps", both, 2, api.AppLoad{RPS: 700, CPU: 0.5, Pods: 2, Nodes: 1}, 1, 7, true, "700 req/s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, why, ok := recommend(tc.as, tc.cur, tc.load, tc.reqCPU)
			if n != tc.want || ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Errorf("recommend = %d, %q, %v; want %d, %q, %v", n, why, ok, tc.want, tc.why, tc.ok)
			}
		})
	}
}

// TestScalerWindow walks the decision with a fake clock: up at once, down
// only after a full window of lower recommendations, and to the largest of
// the window.
func TestScalerWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const window = 60 * time.Second
	st := &api.AutoscaleStatus{}
	var s appScaler
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	step := func(sec, rec, cur int) (int, string) {
		s.observe(rec, true, at(sec), window)
		return s.decide(cur, at(sec), window, time.Hour, st, 3, 10*time.Minute)
	}
	if to, _ := step(0, 4, 1); to != 4 {
		t.Fatalf("up: %d, want 4 at once", to)
	}
	st.LastDirection = 1
	// Load falls at 10 s; the recommendation is 1 from then on.
	for sec := 10; sec < 60; sec += 2 {
		if to, held := step(sec, 1, 4); to != 4 {
			t.Fatalf("at %ds: scaled to %d before the window (%s)", sec, to, held)
		}
	}
	// At 60 s the window still holds the 4 of t=0.
	if to, _ := step(60, 1, 4); to != 4 {
		t.Fatalf("at 60s: %d, want 4 (the 4 of 0s is in the window)", to)
	}
	// A 2 at 62 s: the 4 of 0 s left the window; the largest is 2.
	if to, _ := step(62, 2, 4); to != 2 {
		t.Fatalf("at 62s: %d, want 2 (the largest of the window)", to)
	}
	if to, _ := step(71, 1, 2); to != 2 {
		t.Fatalf("at 71s: %d, want 2 (the 2 of 62s is in the window)", to)
	}
	// A gap (no data) restarts the coverage: no scale down for a window.
	s.observe(0, false, at(72), window)
	if to, held := step(80, 1, 2); to != 2 || !strings.Contains(held, "waits") {
		t.Fatalf("after a gap: %d (%s), want 2, waiting", to, held)
	}
	if to, _ := step(141, 1, 2); to != 1 {
		t.Fatalf("a window after the gap: %d, want 1", to)
	}
}

// TestScalerReversals: a scale down after a scale up is a reversal; past
// the bound scale downs wait, scale ups do not.
func TestScalerReversals(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const window = 10 * time.Second
	st := &api.AutoscaleStatus{LastDirection: 1, Reversals: []time.Time{t0.Add(-3 * time.Minute), t0.Add(-2 * time.Minute), t0.Add(-time.Minute)}}
	var s appScaler
	for sec := 0; sec <= 20; sec++ {
		s.observe(1, true, t0.Add(time.Duration(sec)*time.Second), window)
	}
	now := t0.Add(20 * time.Second)
	if to, held := s.decide(4, now, window, time.Hour, st, 3, 10*time.Minute); to != 4 || !strings.Contains(held, "direction changes") {
		t.Errorf("a 4th reversal within 10 min: %d (%s), want held at 4", to, held)
	}
	if to, _ := s.decide(4, now, window, time.Hour, st, 4, 10*time.Minute); to != 1 {
		t.Errorf("with a bound of 4: %d, want 1", to)
	}
	if to, _ := s.decide(4, now.Add(time.Minute), window, time.Hour, st, 3, 10*time.Minute); to != 4 {
		t.Errorf("a minute later the 3 reversals are still within 10 min: %d, want 4 (held)", to)
	}
	if to, _ := s.decide(4, now.Add(10*time.Minute), window, time.Hour, st, 3, 10*time.Minute); to != 1 {
		t.Errorf("once the old reversals leave the window: %d, want 1", to)
	}
	// Down after down is no reversal.
	st.LastDirection = -1
	if to, _ := s.decide(4, now, window, time.Hour, st, 3, 10*time.Minute); to != 1 {
		t.Errorf("down after down: %d, want 1", to)
	}
	// Up is never held.
	st.LastDirection = -1
	s.observe(6, true, now.Add(time.Second), window)
	if to, _ := s.decide(4, now.Add(time.Second), window, time.Hour, st, 0, 10*time.Minute); to != 6 {
		t.Errorf("up with the bound used up: %d, want 6", to)
	}
}

// TestScalerToZero: with min 0, an app without connections goes to zero
// only after the idle window, counted from its last traffic and from its
// last change (a wake-up); any traffic keeps one replica.
func TestScalerToZero(t *testing.T) {
	as := &configs.AutoscaleSpec{Min: 0, Max: 4, TargetRPS: 100}
	if n, _, _ := recommend(as, 1, api.AppLoad{RPS: 0.5, Nodes: 1}, 0); n != 1 {
		t.Errorf("a trickle: %d, want 1", n)
	}
	if n, _, _ := recommend(as, 1, api.AppLoad{Active: 1, Nodes: 1}, 0); n != 1 {
		t.Errorf("one open connection: %d, want 1", n)
	}
	if n, _, _ := recommend(as, 1, api.AppLoad{Nodes: 1}, 0); n != 0 {
		t.Errorf("idle: %d, want 0", n)
	}
	t0 := time.Unix(1000, 0)
	const window, idle = 5 * time.Second, 30 * time.Second
	st := &api.AutoscaleStatus{Desired: 1, LastScale: t0, LastDirection: 1} // woken at t0
	var s appScaler
	for sec := 0; sec <= 29; sec++ {
		s.observe(0, true, t0.Add(time.Duration(sec)*time.Second), window)
		if to, _ := s.decide(1, t0.Add(time.Duration(sec)*time.Second), window, idle, st, 3, time.Hour); to != 1 {
			t.Fatalf("%ds after a wake-up without traffic: %d, want 1 until the idle window", sec, to)
		}
	}
	s.observe(0, true, t0.Add(30*time.Second), window)
	if to, _ := s.decide(1, t0.Add(30*time.Second), window, idle, st, 3, time.Hour); to != 0 {
		t.Errorf("after the idle window: %d, want 0", to)
	}
	// Traffic at 31 s restarts the idle window.
	s.observe(1, true, t0.Add(31*time.Second), window)
	for sec := 32; sec < 61; sec++ {
		s.observe(0, true, t0.Add(time.Duration(sec)*time.Second), window)
		if to, _ := s.decide(1, t0.Add(time.Duration(sec)*time.Second), window, idle, st, 3, time.Hour); to != 1 {
			t.Fatalf("%ds: %d, want 1 (busy at 31s)", sec, to)
		}
	}
	s.observe(0, true, t0.Add(61*time.Second), window)
	if to, _ := s.decide(1, t0.Add(61*time.Second), window, idle, st, 3, time.Hour); to != 0 {
		t.Errorf("30s after the last traffic: %d, want 0", to)
	}
}
