package apiserver

import (
	"net/http"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Membership is the gossip view the API serves at GET /v1/members and GET
// /v1/cluster. orchestrator's gossip adapter satisfies it over the
// server's serf member.
type Membership interface {
	// Members lists every member the gossip knows, this server's own
	// included.
	Members() []api.Member
	// ClusterInfo says where a joining node finds the alive servers.
	ClusterInfo() api.ClusterInfo
}

// SetMembership sets what answers /v1/members and /v1/cluster. Until it is
// called (or with nil) those answer 503: the server runs no gossip. It may
// be called while the server serves.
func (s *Server) SetMembership(m Membership) {
	if m == nil {
		s.members.Store(nil)
		return
	}
	s.members.Store(&m)
}

// membership returns the Membership, or answers 503 and returns nil.
func (s *Server) membership(w http.ResponseWriter) Membership {
	if m := s.members.Load(); m != nil {
		return *m
	}
	// The CLI prints this message as it is: keep it the advice it gives.
	writeJSON(w, http.StatusServiceUnavailable, errBody(api.CodeUnavailable,
		"this server runs no gossip: start it with --listen-tcp (cluster mode)"))
	return nil
}

// listMembers answers {"items":[...]}, the members as api.List decodes
// them (no revision: the gossip view is not in the store).
func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) {
	if m := s.membership(w); m != nil {
		writeJSON(w, http.StatusOK, struct {
			Items []api.Member `json:"items"`
		}{m.Members()})
	}
}

func (s *Server) clusterInfo(w http.ResponseWriter, r *http.Request) {
	if m := s.membership(w); m != nil {
		writeJSON(w, http.StatusOK, m.ClusterInfo())
	}
}
