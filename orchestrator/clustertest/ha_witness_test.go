package clustertest

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestHAWitness: 2 real servers and a witness (`--witness`). The witness
// is a voter (skiff members says witness) but never the ready leader (a
// consistent read on it answers not_leader); when a real server (the leader) is
// killed with SIGKILL, the other real server and the witness still make a
// quorum: a new leader, a real server, acknowledges writes.
func TestHAWitness(t *testing.T) {
	requireHA(t)
	h := NewHA(t, HAOptions{Servers: 2, Witnesses: 1})
	wit := 2
	if !h.IsWitness(wit) {
		t.Fatalf("node %d is not the witness", wit)
	}
	h.WaitVoters([]int{0, 1, 2}, 60*time.Second)
	l := h.WaitLeader(30 * time.Second)
	if l == wit {
		t.Fatalf("the witness is the ready leader")
	}
	m, err := h.Members(l)
	if err != nil {
		t.Fatal(err)
	}
	if line := m[h.Nodes[wit].Name]; !hasField(line, "witness") {
		t.Errorf("skiff members does not show node %s as a witness: %q", h.Nodes[wit].Name, line)
	}
	// A consistent read on the witness is refused (it is never the
	// leader); a write on its socket is forwarded to the leader (or
	// refused not_leader), never applied by the witness.
	if p := h.ProbeServer(wit); p.Status != http.StatusServiceUnavailable || p.Code != "not_leader" {
		t.Errorf("a consistent read on the witness: http %d %s (%v), want 503 not_leader", p.Status, p.Code, p.Err)
	}
	r := h.Raw(wit, http.MethodPut, "/v1/configs/wit-1", configBody("wit-1", "x", 0), 5*time.Second)
	if r.Status/100 != 2 && (r.Status != http.StatusServiceUnavailable || r.Code != "not_leader") {
		t.Errorf("a write on the witness's socket: %s %s, want it forwarded (2xx) or 503 not_leader", refusal(r), r.Msg)
	}
	h.putConfigAcked(l, "wit-2", "before", 30*time.Second)
	h.KillServer(l)
	other := 1 - l
	start := time.Now()
	acker := h.putConfigAcked(other, "wit-3", "after", 60*time.Second)
	t.Logf("writes accepted again %s after the leader was killed", time.Since(start).Round(time.Millisecond))
	if acker != other {
		t.Errorf("server %d acknowledged the write, want the surviving real server %d", acker, other)
	}
	if nl := h.WaitLeader(30*time.Second, l); nl != other {
		t.Errorf("leader %d after the kill, want %d (the witness must not lead)", nl, other)
	}
	h.WaitFor("the witness to hold the write", 30*time.Second, func() (bool, error) {
		v, err := h.localConfig(wit, "wit-3")
		return v == "after", fmt.Errorf("%q %v", v, err)
	})
}
