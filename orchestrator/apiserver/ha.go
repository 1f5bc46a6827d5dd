package apiserver

import (
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Several servers (docs/ha.md). The store is replicated with raft: only
// the ready leader writes. A follower answers every write, every
// ?consistent=true read and the leader-only routes (leases, load reports:
// the leader's controllers read them from memory) with 503 not_leader and
// the leader's API address in the Skiff-Leader header (raft rides the API
// port, so the leader's raft address is its API address); with no leader
// it answers 503 no_quorum. The client package follows Skiff-Leader.

// ServerOps are the raft operations the server routes need; the store of
// OpenReplica satisfies them (set with SetServerOps).
type ServerOps interface {
	Servers() ([]store.RaftServer, error)
	AddVoter(id, raftAddr string) error
	RemoveServer(id string) error
}

// SetServerOps enables the /v1/servers routes (503 until then).
func (s *Server) SetServerOps(ops ServerOps) { s.serverOps.Store(&ops) }

// SetForward lets a follower forward the writes of its local socket (the
// CLI on the box, the in-process agent) to the leader: rt reaches the
// leader's API presenting this server's certificate (pki.ServerClientTLS).
// Without it they answer not_leader.
func (s *Server) SetForward(rt http.RoundTripper) { s.forward.Store(&rt) }

// SetWitness makes every write and consistent read answer not_leader: a
// witness votes and keeps the log but serves no writes (its leadership is
// handed away at once by the server).
func (s *Server) SetWitness(w bool) { s.witness.Store(w) }

// leaderOnlyRoutes are served by the leader alone, though they do not
// write the store: what they keep in memory is what the leader's
// controllers read.
var leaderOnlyRoutes = map[string]bool{
	"POST /v1/nodes/{name}/lease": true,
	"PUT /v1/nodes/{name}/load":   true,
}

// anyServerRoutes write nothing to the store and are served by any server
// (they reach the nodes' agents, or hand out material every server has).
var anyServerRoutes = map[string]bool{
	"POST /v1/pods/{name}/exec": true,
	"POST /v1/images/pull":      true,
	"POST /v1/join/server":      true,
}

// needsLeader tells whether a route's request must be served by the ready
// leader.
func needsLeader(pattern string, r *http.Request) bool {
	switch {
	case leaderOnlyRoutes[pattern]:
		return true
	case anyServerRoutes[pattern]:
		return false
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return r.URL.Query().Get("consistent") == "true"
	}
	return true
}

// leaderGate answers a request this server must not serve (a follower's
// or a witness's write) and returns false; on the leader it makes a
// consistent read linearizable first.
func (s *Server) leaderGate(w http.ResponseWriter, r *http.Request, pattern string) bool {
	if !s.st.Replicated() || !needsLeader(pattern, r) {
		return true
	}
	var err error
	switch {
	case s.witness.Load():
		id, addr := s.st.Leader()
		err = &store.NotLeaderError{LeaderID: id, LeaderAddr: addr}
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		err = s.st.ReadBarrier(r.Context())
	case !s.st.IsLeader():
		// Update would say so too; answering first keeps a handler
		// from doing work (a join's certificate) it cannot keep.
		err = s.st.ReadBarrier(r.Context())
	}
	if err != nil {
		var nl *store.NotLeaderError
		if rt := s.forward.Load(); rt != nil && identityOf(r.Context()).Local && errors.As(err, &nl) && nl.LeaderAddr != "" &&
			r.Method != http.MethodGet && r.Method != http.MethodHead && !s.witnessOnly(nl) {
			s.forwardTo(w, r, *rt, nl.LeaderAddr)
			return false
		}
		s.writeError(w, r, err)
		return false
	}
	return true
}

// witnessOnly: a witness that is itself named leader (it hands leadership
// away) must not forward to itself.
func (s *Server) witnessOnly(nl *store.NotLeaderError) bool {
	return nl.LeaderAddr == s.st.RaftAddr()
}

// forwardTo proxies a local socket's write to the leader at addr. A
// request that could not be sent is a not_leader answer (nothing was
// applied); one whose answer did not come is no_quorum (it may or may not
// have been applied).
func (s *Server) forwardTo(w http.ResponseWriter, r *http.Request, rt http.RoundTripper, addr string) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "https", addr, addr
			pr.Out.Header.Del("Authorization")
		},
		Transport:     rt,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: api.CodeNotLeader, leader: addr,
					msg: "this server is not the leader and cannot reach the leader " + addr + ": " + err.Error()})
				return
			}
			s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: api.CodeNoQuorum,
				msg: "forwarded to the leader " + addr + ", which did not answer: the write may or may not have been applied (" + err.Error() + ")"})
		},
	}
	rp.ServeHTTP(w, r)
}

// haError maps the store's leadership errors: not_leader with the leader's
// address, or no_quorum. ok is false for other errors.
func haError(err error) (ae *apiError, leader string, ok bool) {
	var nl *store.NotLeaderError
	switch {
	case errors.As(err, &nl) && nl.LeaderAddr != "":
		return &apiError{status: http.StatusServiceUnavailable, code: api.CodeNotLeader,
			msg: "this server is not the leader; send writes to " + nl.LeaderAddr + " (" + nl.LeaderID + ")"}, nl.LeaderAddr, true
	case errors.Is(err, store.ErrNotLeader), errors.Is(err, store.ErrNoQuorum):
		return &apiError{status: http.StatusServiceUnavailable, code: api.CodeNoQuorum,
			msg: store.ErrNoQuorum.Error()}, "", true
	}
	return nil, "", false
}

// joinServer hands a joining server the cluster's material (a token of
// role server; the server's own certificate may ask again). It is served
// by any server: they all hold the same.
func (s *Server) joinServer(w http.ResponseWriter, r *http.Request) {
	jc := s.joinConfig(w)
	if jc == nil {
		return
	}
	var req api.ServerJoinRequest
	if err := s.decodeServerNamed(w, r, &req, &req.Name); err != nil {
		s.writeError(w, r, err)
		return
	}
	caKey, err := jc.PKI.CAKeyPEM()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var keys []byte
	if s.keys.path != "" { // "": random keys of a test server
		var err error
		if keys, err = os.ReadFile(s.keys.path); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	resp := api.ServerJoinResponse{CA: string(jc.PKI.CACertPEM()), CAKey: string(caKey), JoinSecret: jc.PKI.JoinSecret(),
		SecretKeys: string(keys)}
	if jc.GossipKey != nil {
		resp.GossipKey = jc.GossipKey()
	}
	if m := s.members.Load(); m != nil {
		resp.Cluster = (*m).ClusterInfo()
	}
	s.log.Warn("server material handed over (server join)", "server", req.Name, "by", identityOf(r.Context()).String())
	writeJSON(w, http.StatusOK, &resp)
}

// decodeServerNamed decodes a request body that names a server (its
// field *name, read after decoding) and checks with checkServerName that
// the caller may act for that server.
func (s *Server) decodeServerNamed(w http.ResponseWriter, r *http.Request, req any, name *string) error {
	if err := s.decode(w, r, req, false); err != nil {
		return err
	}
	return checkServerName(identityOf(r.Context()), *name)
}

// checkServerName lets a server's own certificate act for its own name
// only; admins and server tokens may name any.
func checkServerName(id Identity, name string) error {
	if name == "" || strings.ContainsAny(name, " /") {
		return invalid("name", "want the server's node name")
	}
	if id.Role == api.RoleServer && id.Node != "" && id.Node != name {
		return forbidden("%s may act for itself only, not for server %q", id, name)
	}
	return nil
}

func (s *Server) serverOpsOr503(w http.ResponseWriter) ServerOps {
	if ops := s.serverOps.Load(); ops != nil {
		return *ops
	}
	writeJSON(w, http.StatusServiceUnavailable, errBody(api.CodeUnavailable,
		"this server runs no raft: start it with --listen-tcp (cluster mode)"))
	return nil
}

// listServers answers the raft configuration.
func (s *Server) listServers(w http.ResponseWriter, r *http.Request) {
	ops := s.serverOpsOr503(w)
	if ops == nil {
		return
	}
	svs, err := ops.Servers()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]api.RaftServer, 0, len(svs))
	for _, sv := range svs {
		items = append(items, api.RaftServer{Name: sv.ID, RaftAddr: sv.Address, Suffrage: sv.Suffrage, Leader: sv.Leader})
	}
	writeJSON(w, http.StatusOK, struct {
		Items []api.RaftServer `json:"items"`
	}{items})
}

// addServer makes a server a voter (on the leader). A server's own
// certificate adds itself (a restart after it left); a server token or an
// admin may add any. Its address is checked for form only: raft reaches it
// only if it presents a server certificate of the CA.
func (s *Server) addServer(w http.ResponseWriter, r *http.Request) {
	ops := s.serverOpsOr503(w)
	if ops == nil {
		return
	}
	var req api.ServerAddRequest
	if err := s.decodeServerNamed(w, r, &req, &req.Name); err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		s.writeError(w, r, invalid("raft_addr", "want HOST:PORT: %v", err))
		return
	}
	if err := ops.AddVoter(req.Name, req.RaftAddr); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("server added as a voter", "server", req.Name, "raft_addr", req.RaftAddr, "by", identityOf(r.Context()).String())
	writeJSON(w, http.StatusOK, &req)
}

// removeServer removes a server from the raft configuration (`skiff
// server remove NAME`, on the leader). It refuses a server the gossip sees
// running: that one would ask to be added again at once (ensureVoter), so
// the removal would not hold; stopping it removes it by itself.
func (s *Server) removeServer(w http.ResponseWriter, r *http.Request) {
	ops := s.serverOpsOr503(w)
	if ops == nil {
		return
	}
	name := r.PathValue("name")
	svs, err := ops.Servers()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	found := false
	for _, sv := range svs {
		found = found || sv.ID == name
	}
	if !found {
		s.writeError(w, r, &apiError{status: http.StatusNotFound, code: api.CodeNotFound, msg: "no server " + name + " in the raft configuration"})
		return
	}
	if st := s.runningServer(name); st != "" {
		s.writeError(w, r, conflict("server %s is %s in the gossip: a running server asks to be added again at once. "+
			"Stop it instead (a graceful stop removes it from raft by itself); remove it here once it has stopped or failed", name, st))
		return
	}
	if err := ops.RemoveServer(name); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Warn("server removed from the raft configuration", "server", name, "by", identityOf(r.Context()).String())
	w.WriteHeader(http.StatusNoContent)
}

// runningServer returns the gossip status of server name if the gossip
// sees it running (cluster.Status.Running), else "".
func (s *Server) runningServer(name string) string {
	m := s.members.Load()
	if m == nil {
		return ""
	}
	for _, mb := range (*m).Members() {
		if mb.Name == name && mb.Role == api.RoleServer && cluster.Status(mb.Status).Running() {
			return mb.Status
		}
	}
	return ""
}

// serverIdentity is the identity of a server's own certificate.
func serverIdentity(name string) Identity { return Identity{Role: api.RoleServer, Node: name} }
