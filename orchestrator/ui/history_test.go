package ui

import (
	"slices"
	"testing"
)

// TestHistory: a point per record for every series present, the oldest
// dropped past the bound, and a series gone at a sample forgotten.
func TestHistory(t *testing.T) {
	h := newHistory(3)
	for i := range 5 {
		svcs := map[string]float64{"web": float64(i)}
		if i < 2 {
			svcs["old"] = 1
		}
		h.record(svcs, map[string]float64{"web": float64(10 + i)})
	}
	if got := h.service("web"); !slices.Equal(got, []float64{2, 3, 4}) {
		t.Errorf("web rates %v, want the last 3 points [2 3 4]", got)
	}
	if got := h.app("web"); !slices.Equal(got, []float64{12, 13, 14}) {
		t.Errorf("web replicas %v, want [12 13 14]", got)
	}
	if got := h.service("old"); got != nil {
		t.Errorf("a deleted service keeps its series %v", got)
	}
	got := h.service("web")
	got[0] = 99 // a copy: the caller cannot change the history
	if h.service("web")[0] != 2 {
		t.Error("service() returned the history's own slice")
	}
}
