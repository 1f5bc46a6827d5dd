package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Authorization: who may call which route, in one table. Every route the
// server registers is checked against its entry before its handler runs
// (see route); a route missing from the table gets the default (GET:
// admin and read; anything else: admin only), so a new route is never
// open to nodes or join tokens by accident. The local socket is admin.
// docs/security.md is this table in prose: change both together.

// access says who may call one route.
type access struct {
	// roles may call it outright.
	roles []string
	// node is what a node certificate may do here; nil: nothing.
	node nodeRule
	// anon: no credentials needed (health checks).
	anon bool
}

// nodeRule checks a node's request against its route's rule. It returns
// nil, a 403 whose message names the rule, or the error of a lookup (a pod
// that does not exist is a 404, as for anyone).
type nodeRule func(s *Server, r *http.Request, node string) error

var (
	adminOnly = []string{api.RoleAdmin}
	readers   = []string{api.RoleAdmin, api.RoleRead}
	joiners   = []string{api.RoleAdmin, api.RoleJoin}
	anyone    = []string{api.RoleAdmin, api.RoleRead, api.RoleJoin}
	// serverRoles: admins, tokens of role server, servers' certificates.
	serverRoles = []string{api.RoleAdmin, api.RoleServer}
)

// routeAccess is keyed by the route's pattern as registered: "METHOD PATH".
var routeAccess = map[string]access{
	"GET /healthz": {anon: true},
	"GET /readyz":  {anon: true},
	"GET /metrics": {roles: readers},

	// Joining and a node's own certificate.
	"POST /v1/join":          {roles: joiners},
	"POST /v1/renew":         {node: anyNode}, // the handler renews the caller's own certificate
	"GET /v1/whoami":         {roles: anyone, node: anyNode},
	"POST /v1/join/rotate":   {roles: adminOnly},
	"GET /v1/tokens":         {roles: adminOnly},
	"POST /v1/tokens":        {roles: adminOnly},
	"DELETE /v1/tokens/{id}": {roles: adminOnly},

	// What an agent reads: nodes, services, endpoints, the gossip view.
	"GET /v1/nodes":            {roles: readers, node: anyNode},
	"GET /v1/nodes/{name}":     {roles: readers, node: anyNode},
	"GET /v1/services":         {roles: readers, node: anyNode},
	"GET /v1/services/{name}":  {roles: readers, node: anyNode},
	"GET /v1/endpoints":        {roles: readers, node: anyNode},
	"GET /v1/endpoints/{name}": {roles: readers, node: anyNode},
	"GET /v1/members":          {roles: readers, node: anyNode},
	"GET /v1/cluster":          {roles: readers, node: anyNode},

	// A node registers and reports itself, and nothing else.
	"PUT /v1/nodes/{name}": {roles: adminOnly, node: ownNode},
	// Its heartbeat: its own lease only (kept in memory, see lease.go).
	"POST /v1/nodes/{name}/lease": {roles: adminOnly, node: ownNode},
	"DELETE /v1/nodes/{name}":     {roles: adminOnly},

	// Its own pods: read them, report their status (IPs from its own pod
	// CIDR), remove them once stopped, read their logs, exec in them.
	"GET /v1/pods":                  {roles: readers, node: ownPodList},
	"GET /v1/pods/{name}":           {roles: readers, node: podRule("read")},
	"PUT /v1/pods/{name}/status":    {roles: adminOnly, node: podStatus},
	"DELETE /v1/pods/{name}":        {roles: adminOnly, node: podDelete},
	"GET /v1/pods/{name}/logs":      {roles: readers, node: podRule("read the logs of")},
	"POST /v1/pods/{name}/exec":     {roles: adminOnly, node: podRule("exec in")},
	"POST /v1/events":               {roles: adminOnly, node: ownEvent},
	"PUT /v1/pods/{name}":           {roles: adminOnly},
	"GET /v1/events":                {roles: readers},
	"GET /v1/apps":                  {roles: readers},
	"GET /v1/apps/{name}":           {roles: readers},
	"PUT /v1/apps/{name}":           {roles: adminOnly},
	"DELETE /v1/apps/{name}":        {roles: adminOnly},
	"POST /v1/apply":                {roles: adminOnly},
	"PUT /v1/services/{name}":       {roles: adminOnly},
	"DELETE /v1/services/{name}":    {roles: adminOnly},
	"POST /v1/apps/{name}/scale":    {roles: adminOnly},
	"POST /v1/apps/{name}/restart":  {roles: adminOnly},
	"POST /v1/apps/{name}/rollback": {roles: adminOnly},

	// Configs and secrets. Any node reads configs (they are not secret);
	// a secret's files leave the server only to the node itself, and only
	// for a secret that a pod bound to it uses (the handler checks that);
	// everyone else sees names and sizes.
	"GET /v1/configs":                       {roles: readers, node: anyNode},
	"GET /v1/configs/{name}":                {roles: readers, node: anyNode},
	"PUT /v1/configs/{name}":                {roles: adminOnly},
	"DELETE /v1/configs/{name}":             {roles: adminOnly},
	"GET /v1/secrets":                       {roles: readers},
	"GET /v1/secrets/{name}":                {roles: readers},
	"PUT /v1/secrets/{name}":                {roles: adminOnly},
	"DELETE /v1/secrets/{name}":             {roles: adminOnly},
	"GET /v1/nodes/{name}/secrets/{secret}": {node: ownNode},
	// A load-balancer service's address: a node reports itself as the
	// one that announces it.
	"PUT /v1/services/{name}/holder": {roles: adminOnly, node: ownHolder},
	// Load: a node reports what its own load balancer and pods saw (the
	// handler drops pods not bound to it); readers get the sums.
	"PUT /v1/nodes/{name}/load":     {roles: adminOnly, node: ownNode},
	"GET /v1/services/{name}/stats": {roles: readers},
	"GET /v1/stats":                 {roles: readers},

	// Several servers (ha.go). A server's material (the CA key!) goes
	// only to a token of role server, an admin, or a server's own
	// certificate; a server certificate adds itself only. Node
	// certificates get nothing here.
	"GET /v1/servers":           {roles: readers},
	"POST /v1/servers":          {roles: serverRoles},
	"POST /v1/join/server":      {roles: serverRoles},
	"DELETE /v1/servers/{name}": {roles: adminOnly},
	// A backup holds the CA key and the secret keys: admin only.
	"GET /v1/snapshot": {roles: adminOnly},
	// Scale to zero: a node's activator wakes a service's app, 0 -> 1
	// only (the handler refuses anything else).
	"POST /v1/services/{name}/wake": {roles: adminOnly, node: anyNode},
	// Images across the cluster (images.go): readers list, admins pull.
	"GET /v1/images":       {roles: readers},
	"POST /v1/images/pull": {roles: adminOnly},
}

// accessFor is pattern's entry of routeAccess, or the default.
func accessFor(pattern string) access {
	if a, ok := routeAccess[pattern]; ok {
		return a
	}
	if strings.HasPrefix(pattern, "GET ") {
		return access{roles: readers}
	}
	return access{roles: adminOnly}
}

// What each role may do, for the messages of a refusal.
const (
	readRule  = "a read token may only GET (everything but tokens; no exec, no writes)"
	joinRule  = "a join token may only join (POST /v1/join)"
	nodeRules = "a node may only register and update its own Node, read nodes, services, endpoints, configs, " +
		"members and the pods bound to it, fetch the secrets those pods use, report the status of and events about its own pods, " +
		"report itself as the holder of a service's address, and report its own load"
	anonRule = "without a token or a node certificate only /healthz and /readyz answer"
)

// authorized wraps the handler of the route pattern with its access check.
func (s *Server) authorized(pattern string, h http.HandlerFunc) http.HandlerFunc {
	s.patterns = append(s.patterns, pattern)
	a := accessFor(pattern)
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(identityOf(r.Context()), a, r); err != nil {
			s.writeError(w, r, err)
			return
		}
		if !s.leaderGate(w, r, pattern) {
			return
		}
		h(w, r)
	}
}

// authorize checks id against a for r: nil, or why not.
func (s *Server) authorize(id Identity, a access, r *http.Request) error {
	switch {
	case a.anon || id.Local:
		return nil
	case id.Role == api.RoleServer && id.Node != "":
		// Another server's own certificate (never a token: id.Node is
		// set only from a certificate): it holds the CA key, so it is
		// trusted as an admin. A follower forwards its local socket's
		// writes to the leader with it (ha.go).
		return nil
	case id.Role == api.RoleNode:
		if a.node == nil {
			return forbidden("%s may not %s %s: %s", id, r.Method, r.URL.Path, nodeRules)
		}
		return a.node(s, r, id.Node)
	case id.Role != "" && slices.Contains(a.roles, id.Role):
		return nil
	}
	why := anonRule
	switch id.Role {
	case api.RoleRead:
		why = readRule
	case api.RoleJoin:
		why = joinRule
	case api.RoleAdmin:
		why = "only a node calls it, with its own certificate"
	}
	return forbidden("%s may not %s %s: %s", id, r.Method, r.URL.Path, why)
}

// anyNode lets every node through.
func anyNode(*Server, *http.Request, string) error { return nil }

// ownNode: a node registers and updates its own Node only.
func ownNode(_ *Server, r *http.Request, node string) error {
	if name := r.PathValue("name"); name != node {
		return forbidden("%s may only register and update its own Node (not %s)", pki.NodeCN(node), name)
	}
	return nil
}

// ownPodList: a node lists and watches the pods bound to it (?node=).
func ownPodList(_ *Server, r *http.Request, node string) error {
	if q := r.URL.Query().Get("node"); q != node {
		return forbidden("%s may only list the pods bound to it (GET /v1/pods?node=%s)", pki.NodeCN(node), node)
	}
	return nil
}

// podRule: the pod of the path is bound to the node; what is what the
// rule lets it do, for the message.
func podRule(what string) nodeRule {
	return func(s *Server, r *http.Request, node string) error {
		_, err := s.boundPod(r, node, what)
		return err
	}
}

// boundPod reads the pod of the path and checks that it is bound to node.
func (s *Server) boundPod(r *http.Request, node, what string) (*api.Pod, error) {
	var p api.Pod
	if err := s.st.Get(api.KindPod, r.PathValue("name"), &p); err != nil {
		return nil, err
	}
	if p.Spec.Node != node {
		where := "is on " + p.Spec.Node
		if p.Spec.Node == "" {
			where = "is not bound to a node"
		}
		return nil, forbidden("%s may only %s pods bound to it (pod %s %s)", pki.NodeCN(node), what, p.Name, where)
	}
	return &p, nil
}

// podDelete: a node removes a pod bound to it once the pod is marked for
// deletion (its agent stopped it); only the controllers and admins decide
// that a pod goes.
func podDelete(s *Server, r *http.Request, node string) error {
	p, err := s.boundPod(r, node, "delete")
	if err != nil {
		return err
	}
	if p.Spec.Deleting == nil {
		return forbidden("%s may only delete pods bound to it once they are marked for deletion (pod %s is not)", pki.NodeCN(node), p.Name)
	}
	return nil
}

// podStatus: a node reports the status of pods bound to it, with a pod IP
// from its own pod CIDR.
func podStatus(s *Server, r *http.Request, node string) error {
	p, err := s.boundPod(r, node, "update")
	if err != nil {
		return err
	}
	var body api.Pod
	if err := s.peekJSON(r, &body); err != nil {
		return err
	}
	if body.Status.IP == "" {
		return nil
	}
	var n api.Node
	if err := s.st.Get(api.KindNode, node, &n); err != nil {
		return forbidden("%s may only report pod IPs inside its pod CIDR, and it has no Node registered", pki.NodeCN(node))
	}
	_, cidr, err := net.ParseCIDR(n.Spec.PodCIDR)
	ip := net.ParseIP(body.Status.IP)
	if err != nil || ip == nil || !cidr.Contains(ip) {
		return forbidden("%s may only report pod IPs inside its pod CIDR %s (pod %s status.ip %s)",
			pki.NodeCN(node), n.Spec.PodCIDR, p.Name, body.Status.IP)
	}
	return nil
}

// ownEvent: a node posts events about itself and the pods bound to it,
// under its own source.
func ownEvent(s *Server, r *http.Request, node string) error {
	var ev api.Event
	if err := s.peekJSON(r, &ev); err != nil {
		return err
	}
	cn := pki.NodeCN(node)
	if ev.Source != "" && ev.Source != "agent/"+node {
		return forbidden("%s may only post events with source agent/%s (not %s)", cn, node, ev.Source)
	}
	kind, name, _ := strings.Cut(ev.Object, "/")
	switch kind {
	case api.KindNode:
		if name == node {
			return nil
		}
	case api.KindPod:
		var p api.Pod
		err := s.st.Get(api.KindPod, name, &p)
		if err == nil && p.Spec.Node == node {
			return nil
		}
	}
	return forbidden("%s may only post events about itself and the pods bound to it (not %s)", cn, ev.Object)
}

// peekJSON decodes r's body into v for a rule to look at and puts the body
// back for the handler. A body the handler would refuse is a 400 here
// already; one too large is left to the handler's 413.
func (s *Server) peekJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, s.opts.MaxBody+1))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	if int64(len(b)) > s.opts.MaxBody {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return invalid("", "malformed JSON at byte %d: %v", syn.Offset, syn)
		}
		return invalid("", "bad request body: %v", err)
	}
	return nil
}

// ownHolder: a node may only name itself as the holder of a service's
// address (it says what it does, never what another node does).
func ownHolder(s *Server, r *http.Request, node string) error {
	var body api.ServiceHolder
	if err := s.peekJSON(r, &body); err != nil {
		return err
	}
	if body.Holder != node {
		return forbidden("%s may only report itself as the holder of a service's address (not %s)", pki.NodeCN(node), body.Holder)
	}
	return nil
}
