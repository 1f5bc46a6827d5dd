package apiserver

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// seedAuthz registers edge-01 and edge-02 through their own certificates
// (they get 10.88.0.0/24 and 10.88.1.0/24) and writes an app, a service
// and pods: web-a on edge-01, web-b on edge-02, web-c on edge-01 marked
// for deletion, web-u unbound.
func seedAuthz(t *testing.T, e *tlsEnv) map[string]*pki.Holder {
	t.Helper()
	holders := map[string]*pki.Holder{}
	for _, name := range []string{"edge-01", "edge-02"} {
		c, h := e.node(name)
		n, err := c.PutNode(context.Background(), &api.Node{Meta: api.Meta{Name: name}})
		if err != nil {
			t.Fatalf("%s registers itself: %v", name, err)
		}
		t.Logf("%s: pod CIDR %s", name, n.Spec.PodCIDR)
		holders[name] = h
	}
	now := time.Now()
	pod := func(name, node string, deleting bool) *api.Pod {
		p := &api.Pod{Meta: api.Meta{Name: name}, Spec: api.PodSpec{App: "web", Node: node,
			Containers: map[string]*configs.ContainerSpec{"http": {Image: "echo"}}}}
		if deleting {
			p.Spec.Deleting = &now
		}
		return p
	}
	_, err := e.st.Update(func(tx *store.Tx) error {
		if err := tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: "web"}}); err != nil {
			return err
		}
		for _, p := range []*api.Pod{pod("web-a", "edge-01", false), pod("web-b", "edge-02", false),
			pod("web-c", "edge-01", true), pod("web-u", "", false)} {
			if err := tx.Create(api.KindPod, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := putSvc(e.s, e.st, "web", configs.ServiceSpec{App: "web", Port: 80, TargetPort: configs.PortRef{Number: 8080}}); err != nil {
		t.Fatal(err)
	}
	return holders
}

// TestAuthz walks the rules of authz.go over TLS with real certificates
// and tokens: who may call what, and the message that names the rule when
// not. Rows run in order (the last ones delete).
func TestAuthz(t *testing.T) {
	e := newTLSEnv(t, time.Hour)
	nodes := seedAuthz(t, e)
	bearer := map[string]string{
		"admin": e.token(api.RoleAdmin, ""),
		"read":  e.token(api.RoleRead, "24h"),
		"join":  e.p.Token().Secret,
		// A token of role server gets the CA key: never a node's.
		"server": e.token(api.RoleServer, ""),
	}
	clients := map[string]*http.Client{}
	for name, h := range nodes {
		clients[name] = e.tlsClient(h)
	}
	plain := e.tlsClient(nil)

	tests := []struct {
		who, method, path, body string
		status                  int
		msg                     string // in the error message
	}{
		// A node's certificate.
		{"edge-02", "DELETE", "/v1/apps/web", "", 403, "node:edge-02 may not DELETE /v1/apps/web: a node may only register and update its own Node"},
		{"edge-02", "POST", "/v1/apply", `{"apps":{}}`, 403, "node:edge-02 may not POST /v1/apply"},
		{"edge-02", "GET", "/v1/pods/web-a/logs", "", 403, "node:edge-02 may only read the logs of pods bound to it (pod web-a is on edge-01)"},
		{"edge-02", "POST", "/v1/pods/web-a/exec", `{"command":["sh"]}`, 403, "node:edge-02 may only exec in pods bound to it (pod web-a is on edge-01)"},
		{"edge-02", "GET", "/v1/pods/web-b/logs", "", 503, "no agent on this node"},
		{"edge-02", "PUT", "/v1/nodes/edge-01", `{}`, 403, "node:edge-02 may only register and update its own Node (not edge-01)"},
		{"edge-02", "PUT", "/v1/nodes/edge-03", `{}`, 403, "node:edge-02 may only register and update its own Node (not edge-03)"},
		{"edge-02", "DELETE", "/v1/nodes/edge-01", "", 403, "node:edge-02 may not DELETE /v1/nodes/edge-01"},
		{"edge-02", "PUT", "/v1/pods/web-a/status", `{"status":{"phase":"Running"}}`, 403, "node:edge-02 may only update pods bound to it (pod web-a is on edge-01)"},
		{"edge-02", "PUT", "/v1/pods/web-u/status", `{"status":{"phase":"Running"}}`, 403, "(pod web-u is not bound to a node)"},
		{"edge-02", "PUT", "/v1/pods/nope/status", `{}`, 404, "not found"},
		{"edge-02", "PUT", "/v1/pods/web-b", `{"spec":{"app":"web","containers":{}}}`, 403, "node:edge-02 may not PUT /v1/pods/web-b"},
		{"edge-02", "DELETE", "/v1/pods/web-b", "", 403, "node:edge-02 may only delete pods bound to it once they are marked for deletion (pod web-b is not)"},
		{"edge-02", "DELETE", "/v1/pods/web-c", "", 403, "(pod web-c is on edge-01)"},
		{"edge-02", "GET", "/v1/pods", "", 403, "node:edge-02 may only list the pods bound to it (GET /v1/pods?node=edge-02)"},
		{"edge-02", "GET", "/v1/pods?node=edge-01", "", 403, "may only list the pods bound to it"},
		{"edge-02", "GET", "/v1/pods?node=edge-02", "", 200, ""},
		{"edge-02", "GET", "/v1/pods/web-b", "", 200, ""},
		{"edge-02", "GET", "/v1/pods/web-a", "", 403, "node:edge-02 may only read pods bound to it (pod web-a is on edge-01)"},
		{"edge-02", "GET", "/v1/nodes", "", 200, ""},
		{"edge-02", "GET", "/v1/nodes/edge-01", "", 200, ""},
		{"edge-02", "GET", "/v1/services", "", 200, ""},
		{"edge-02", "GET", "/v1/endpoints", "", 200, ""},
		{"edge-02", "GET", "/v1/cluster", "", 503, "no gossip"},
		{"edge-02", "GET", "/v1/whoami", "", 200, ""},
		{"edge-02", "GET", "/v1/apps", "", 403, "node:edge-02 may not GET /v1/apps"},
		{"edge-02", "GET", "/v1/events", "", 403, "node:edge-02 may not GET /v1/events"},
		{"edge-02", "GET", "/metrics", "", 403, "node:edge-02 may not GET /metrics"},
		{"edge-02", "GET", "/v1/tokens", "", 403, "node:edge-02 may not GET /v1/tokens"},
		{"edge-02", "POST", "/v1/join/rotate", "", 403, "node:edge-02 may not POST /v1/join/rotate"},
		{"edge-02", "POST", "/v1/join", `{}`, 403, "node:edge-02 may not POST /v1/join"},
		{"edge-02", "POST", "/v1/events", `{"object":"pods/web-a","type":"Normal","reason":"Started"}`, 403,
			"node:edge-02 may only post events about itself and the pods bound to it (not pods/web-a)"},
		{"edge-02", "POST", "/v1/events", `{"object":"apps/web","type":"Normal","reason":"Started"}`, 403, "(not apps/web)"},
		{"edge-02", "POST", "/v1/events", `{"object":"nodes/edge-02","type":"Normal","reason":"Up","source":"agent/edge-01"}`, 403,
			"node:edge-02 may only post events with source agent/edge-02 (not agent/edge-01)"},
		{"edge-02", "POST", "/v1/events", `{"object":"pods/web-b","type":"Normal","reason":"Started","source":"agent/edge-02"}`, 204, ""},
		{"edge-02", "POST", "/v1/events", `{"object":"nodes/edge-02","type":"Normal","reason":"Up"}`, 204, ""},
		{"edge-02", "POST", "/v1/events", `{"object":`, 400, "malformed JSON"},
		{"edge-01", "PUT", "/v1/pods/web-a/status", `{"status":{"phase":"Running","ip":"10.88.1.7"}}`, 403,
			"node:edge-01 may only report pod IPs inside its pod CIDR 10.88.0.0/24 (pod web-a status.ip 10.88.1.7)"},
		{"edge-01", "PUT", "/v1/pods/web-a/status", `{"status":{"phase":"Running","ip":"not-an-ip"}}`, 403, "inside its pod CIDR"},
		{"edge-01", "PUT", "/v1/pods/web-a/status", `{"status":{"phase":"Running","ip":"10.88.0.7"}}`, 200, ""},
		{"edge-01", "PUT", "/v1/nodes/edge-01", `{"spec":{"labels":{"site":"a"}}}`, 200, ""},
		{"edge-01", "DELETE", "/v1/pods/web-c", "", 200, ""},
		{"edge-02", "PUT", "/v1/services/web/holder", `{"address":"192.0.2.1","holder":"edge-01"}`, 403,
			`node:edge-02 may only report itself as the holder of a service's address (not edge-01)`},
		{"read", "PUT", "/v1/services/web/holder", `{"address":"192.0.2.1","holder":"edge-01"}`, 403, "a read token may only GET"},
		{"edge-02", "PUT", "/v1/nodes/edge-01/load", `{"interval":2}`, 403, "node:edge-02 may only register and update its own Node (not edge-01)"},
		{"edge-02", "PUT", "/v1/nodes/edge-02/load", `{"interval":0}`, 400, "interval must be"},
		{"edge-02", "PUT", "/v1/nodes/edge-02/load", `{"interval":2,"services":[{"service":"web","new_per_sec":-1,"active":0}]}`, 400, "services[0].new_per_sec"},
		{"edge-02", "PUT", "/v1/nodes/edge-02/load", `{"interval":2,"services":[{"service":"web","new_per_sec":5,"active":1}]}`, 204, ""},
		{"edge-02", "GET", "/v1/services/web/stats", "", 403, "node:edge-02 may not GET /v1/services/web/stats"},
		{"edge-02", "POST", "/v1/services/web/wake", `{}`, 400, `its app \"web\" does not scale to zero`},
		// Images across the cluster: readers list, admins pull, nodes neither.
		{"read", "POST", "/v1/images/pull", `{"ref":"busybox","nodes":"all"}`, 403, "a read token may only GET"},
		{"edge-02", "POST", "/v1/images/pull", `{"ref":"busybox","nodes":["edge-02"]}`, 403, "node:edge-02 may not POST /v1/images/pull"},
		{"edge-02", "GET", "/v1/images?nodes=all", "", 403, "node:edge-02 may not GET /v1/images"},
		{"admin", "POST", "/v1/images/pull", `{"ref":"busybox","nodes":["nope"]}`, 400, "nodes: no node nope"},
		{"admin", "POST", "/v1/images/pull", `{"ref":"busybox","nodes":["edge-01"]}`, 400, "nodes: node edge-01 is not Ready"},
		{"admin", "POST", "/v1/images/pull", `{"ref":"busybox","nodes":"some"}`, 400, `nodes: want \"all\" or a list of node names`},
		{"admin", "POST", "/v1/images/pull", `{"ref":"Bad Ref!","nodes":"all"}`, 400, "could not parse reference: Bad Ref!"},
		{"admin", "POST", "/v1/images/pull", `{"nodes":"all"}`, 400, "ref: must not be empty"},
		// Several servers: the server material goes to a server token or
		// an admin only; a node certificate or the join token get nothing.
		{"edge-02", "POST", "/v1/join/server", `{"name":"edge-02"}`, 403, "node:edge-02 may not POST /v1/join/server"},
		{"join", "POST", "/v1/join/server", `{"name":"s2"}`, 403, "the join token may not POST /v1/join/server"},
		{"read", "POST", "/v1/join/server", `{"name":"s2"}`, 403, "may not POST /v1/join/server"},
		{"server", "POST", "/v1/join/server", `{"name":"s2"}`, 200, ""},
		{"server", "POST", "/v1/join/server", `{"name":"s 2"}`, 400, "want the server's node name"},
		{"server", "POST", "/v1/join/server", `{"name":"s2","x":1}`, 400, "unknown field"},
		{"edge-02", "POST", "/v1/servers", `{"name":"edge-02","raft_addr":"10.0.0.9:7443"}`, 403, "node:edge-02 may not POST /v1/servers"},
		{"join", "POST", "/v1/servers", `{"name":"s2","raft_addr":"10.0.0.9:7443"}`, 403, "may not POST /v1/servers"},
		{"edge-02", "GET", "/v1/servers", "", 403, "node:edge-02 may not GET /v1/servers"},
		{"server", "DELETE", "/v1/servers/s2", "", 403, "may not DELETE /v1/servers/s2"},
		{"admin", "GET", "/v1/servers", "", 503, "runs no raft"},
		{"read", "GET", "/v1/images", "", 400, "nodes: want"},
		{"read", "GET", "/v1/images?nodes=all", "", 503, "no agent on this server"},
		{"edge-02", "POST", "/v1/services/nope/wake", `{}`, 404, "not found"},

		// A join token.
		{"join", "GET", "/v1/pods", "", 403, "the join token may not GET /v1/pods: a join token may only join (POST /v1/join)"},
		{"join", "DELETE", "/v1/apps/web", "", 403, "the join token may not DELETE /v1/apps/web"},
		{"join", "GET", "/v1/nodes", "", 403, "a join token may only join"},
		{"join", "PUT", "/v1/nodes/edge-09", `{}`, 403, "a join token may only join"},
		{"join", "GET", "/v1/whoami", "", 200, ""},
		{"join", "POST", "/v1/join", `{"node":"edge-09","csr":"x"}`, 400, "bad certificate request"},

		// A read token.
		{"read", "GET", "/v1/apps", "", 200, ""},
		{"read", "GET", "/v1/pods", "", 200, ""},
		{"read", "GET", "/v1/pods/web-a", "", 200, ""},
		{"read", "GET", "/v1/events", "", 200, ""},
		{"read", "GET", "/metrics", "", 200, ""},
		{"read", "GET", "/v1/services/web/stats", "", 200, ""},
		{"read", "GET", "/v1/stats", "", 200, ""},
		{"read", "POST", "/v1/services/web/wake", `{}`, 403, "a read token may only GET"},
		{"read", "PUT", "/v1/nodes/edge-01/load", `{"interval":2}`, 403, "a read token may only GET"},
		{"read", "GET", "/v1/pods/web-a/logs", "", 503, "no agent on this node"},
		{"read", "POST", "/v1/pods/web-a/exec", `{"command":["sh"]}`, 403, "may not POST /v1/pods/web-a/exec: a read token may only GET"},
		{"read", "POST", "/v1/apply", `{"apps":{}}`, 403, "may not POST /v1/apply: a read token may only GET"},
		{"read", "PUT", "/v1/apps/web", `{}`, 403, "a read token may only GET"},
		{"read", "DELETE", "/v1/apps/web", "", 403, "a read token may only GET"},
		{"read", "PUT", "/v1/pods/web-a/status", `{}`, 403, "a read token may only GET"},
		{"read", "POST", "/v1/apps/web/scale", `{"replicas":1}`, 403, "a read token may only GET"},
		{"read", "GET", "/v1/tokens", "", 403, "a read token may only GET (everything but tokens"},
		{"read", "POST", "/v1/tokens", `{"role":"admin"}`, 403, "a read token may only GET"},
		{"read", "POST", "/v1/join", `{}`, 403, "a read token may only GET"},

		// An admin token.
		{"admin", "GET", "/v1/tokens", "", 200, ""},
		{"admin", "POST", "/v1/apps/web/scale", `{"replicas":1}`, 200, ""},
		{"admin", "DELETE", "/v1/apps/nope", "", 404, "not found"},
		{"admin", "POST", "/v1/renew", `{}`, 403, "may not POST /v1/renew: only a node calls it, with its own certificate"},

		// Nothing at all.
		{"", "GET", "/healthz", "", 200, ""},
		{"", "GET", "/v1/nodes", "", 401, "missing or wrong bearer token"},
	}
	for _, tc := range tests {
		t.Run(tc.who+" "+tc.method+" "+tc.path, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, e.srv.URL+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			c := plain
			if h, ok := clients[tc.who]; ok {
				c = h
			} else if tok, ok := bearer[tc.who]; ok {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.msg) {
				t.Fatalf("%d %s\nwant %d with %q", resp.StatusCode, b, tc.status, tc.msg)
			}
			if tc.status == 403 && !strings.Contains(string(b), `"code":"forbidden"`) {
				t.Errorf("403 without code forbidden: %s", b)
			}
		})
	}
}

// TestEveryRouteHasARule: every registered route has its entry in
// routeAccess (a new route must decide who may call it; without one it
// would be admin-only, or read for a GET) and every entry is a route.
func TestEveryRouteHasARule(t *testing.T) {
	s, _ := newTestServer(t, "10.96.0.0/16")
	for _, p := range s.patterns {
		if _, ok := routeAccess[p]; !ok {
			t.Errorf("route %q has no entry in routeAccess (authz.go)", p)
		}
	}
	for p := range routeAccess {
		if !slices.Contains(s.patterns, p) {
			t.Errorf("routeAccess names %q, which is no route", p)
		}
	}
	if a := accessFor("POST /v1/something-new"); a.node != nil || !slices.Equal(a.roles, adminOnly) {
		t.Errorf("default of a write: %+v", a)
	}
	if a := accessFor("GET /v1/something-new"); a.node != nil || !slices.Equal(a.roles, readers) {
		t.Errorf("default of a read: %+v", a)
	}
}
