package apiserver

import (
	"fmt"
	"net/http"
	"net/http/httptest"
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
