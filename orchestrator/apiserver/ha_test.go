package apiserver

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestNeedsLeader: which requests only the ready leader serves.
func TestNeedsLeader(t *testing.T) {
	tests := []struct {
		pattern, method, url string
		want                 bool
	}{
		{"GET /v1/configs/{name}", "GET", "/v1/configs/a", false},
		{"GET /v1/configs/{name}", "GET", "/v1/configs/a?consistent=true", true},
		{"GET /v1/pods", "GET", "/v1/pods?watch=1&since=3", false},
		{"PUT /v1/configs/{name}", "PUT", "/v1/configs/a", true},
		{"POST /v1/apply", "POST", "/v1/apply", true},
		{"POST /v1/join", "POST", "/v1/join", true},
		{"POST /v1/nodes/{name}/lease", "POST", "/v1/nodes/n/lease", true},
		{"PUT /v1/nodes/{name}/load", "PUT", "/v1/nodes/n/load", true},
		{"POST /v1/pods/{name}/exec", "POST", "/v1/pods/p/exec", false},
		{"POST /v1/images/pull", "POST", "/v1/images/pull", false},
		{"POST /v1/join/server", "POST", "/v1/join/server", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.url, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.url, nil)
			if got := needsLeader(tt.pattern, r); got != tt.want {
				t.Errorf("needsLeader = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestHAErrors: the store's leadership errors answer 503 not_leader with
// Skiff-Leader, or no_quorum.
func TestHAErrors(t *testing.T) {
	s, _ := newTestServer(t, "10.96.0.0/16")
	tests := []struct {
		err          error
		code, leader string
	}{
		{&store.NotLeaderError{LeaderID: "s1", LeaderAddr: "10.0.0.2:7443"}, api.CodeNotLeader, "10.0.0.2:7443"},
		{fmt.Errorf("update: %w", &store.NotLeaderError{LeaderID: "s1", LeaderAddr: "10.0.0.2:7443"}), api.CodeNotLeader, "10.0.0.2:7443"},
		{&store.NotLeaderError{}, api.CodeNoQuorum, ""},
		{store.ErrNoQuorum, api.CodeNoQuorum, ""},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		s.writeError(w, httptest.NewRequest("PUT", "/v1/configs/a", nil), tt.err)
		var body api.ErrorBody
		decodeBody(t, w.Body.Bytes(), &body)
		if w.Code != http.StatusServiceUnavailable || body.Error.Code != tt.code || w.Header().Get(api.LeaderHeader) != tt.leader {
			t.Errorf("%v: %d %s leader %q, want 503 %s leader %q", tt.err, w.Code, body.Error.Code, w.Header().Get(api.LeaderHeader), tt.code, tt.leader)
		}
	}
}

// raftConfig models a raft configuration: RemoveServer takes a server out.
type raftConfig struct{ ids []string }

func (c *raftConfig) Servers() ([]store.RaftServer, error) {
	var out []store.RaftServer
	for _, id := range c.ids {
		out = append(out, store.RaftServer{ID: id, Address: id + ":7443", Suffrage: "voter"})
	}
	return out, nil
}

func (c *raftConfig) AddVoter(id, raftAddr string) error {
	if !slices.Contains(c.ids, id) {
		c.ids = append(c.ids, id)
	}
	return nil
}

func (c *raftConfig) RemoveServer(id string) error {
	c.ids = slices.DeleteFunc(c.ids, func(x string) bool { return x == id })
	return nil
}

// serverGossip is a gossip view of servers by status.
type serverGossip map[string]string

func (g serverGossip) Members() []api.Member {
	var out []api.Member
	for name, st := range g {
		out = append(out, api.Member{Name: name, Status: st, Role: api.RoleServer})
	}
	return out
}

func (serverGossip) ClusterInfo() api.ClusterInfo { return api.ClusterInfo{} }

// TestRemoveServerRefusesRunning: `skiff server remove` takes out a server
// the gossip sees stopped or failed, and refuses, leaving the
// configuration as it was, one it sees running (alive or suspect), which
// would add itself back at once.
func TestRemoveServerRefusesRunning(t *testing.T) {
	s, _ := newTestServer(t, "10.96.0.0/16")
	cfg := &raftConfig{ids: []string{"s1", "s2", "s3", "s4", "s5"}}
	s.SetServerOps(cfg)
	s.SetMembership(serverGossip{"s1": "alive", "s2": "suspect", "s3": "failed", "s4": "left"})
	for _, tc := range []struct {
		name   string
		status int
		want   string
	}{
		{"s1", 409, "server s1 is alive in the gossip"},
		{"s2", 409, "server s2 is suspect in the gossip"},
		{"s3", 204, ""},
		{"s4", 204, ""},
		{"s5", 204, ""}, // not in the gossip at all
		{"s6", 404, "no server s6 in the raft configuration"},
	} {
		rec := serve(s, "DELETE", "/v1/servers/"+tc.name, "")
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("remove %s: %d %s, want %d %q", tc.name, rec.Code, rec.Body, tc.status, tc.want)
		}
	}
	if want := []string{"s1", "s2"}; !slices.Equal(cfg.ids, want) {
		t.Errorf("configuration after the removals: %v, want %v", cfg.ids, want)
	}
}
