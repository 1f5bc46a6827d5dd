// Package apiserver is skiff's HTTP API: JSON over HTTP under /v1/, on the
// state store. It validates what it is sent (400 with every field error,
// unknown fields rejected), writes through store transactions (a manifest
// applies whole or not at all; a stale revision is a 409), allocates service
// IPs, node ports and pod CIDRs at write time, and streams NDJSON watch
// events from any revision the store retains (410 when it no longer does).
//
// # Routes
//
//	GET    /v1/nodes                     List of api.Node
//	GET    /v1/nodes/{name}              api.Node
//	PUT    /v1/nodes/{name}              api.Node: an agent registers or reports;
//	                                     the server gives the pod CIDR (201 new, 200)
//	DELETE /v1/nodes/{name}[?revision=N] api.DeleteResponse; its certificates are
//	                                     revoked in the same transaction
//	GET    /v1/apps                      List of api.App
//	GET    /v1/apps/{name}               api.App
//	PUT    /v1/apps/{name}               api.App (spec only; status stays the
//	                                     controller's); 201 new, 200 otherwise
//	DELETE /v1/apps/{name}[?revision=N]  api.DeleteResponse; its pods go gracefully
//	POST   /v1/apps/{name}/scale         api.ScaleRequest -> api.App
//	POST   /v1/apps/{name}/rollback      api.RollbackRequest (or no body) -> api.App;
//	                                     the pod template only (api.Rollback)
//	POST   /v1/apps/{name}/restart       api.RestartRequest (or no body) -> api.App;
//	                                     a new restart stamp: every pod is replaced
//	POST   /v1/apply                     api.ApplyRequest -> api.ApplyResponse
//	GET    /v1/pods[?app=&node=]         List of api.Pod
//	GET    /v1/pods/{name}               api.Pod
//	PUT    /v1/pods/{name}               api.Pod (whole pod, for controllers)
//	DELETE /v1/pods/{name}[?force=true][&revision=N]  api.DeleteResponse
//	PUT    /v1/pods/{name}/status        api.Pod; only status (and revision) are read
//	GET    /v1/pods/{name}/logs[?container=&follow=1&tail=N]  the log, streamed
//	POST   /v1/pods/{name}/exec          api.ExecRequest -> output, streamed; exit
//	                                     code in the Skiff-Exit-Code trailer
//	                                     (503 while no PodIO is set)
//	POST   /v1/images/pull               {"ref","nodes"} -> api.NodeImageResults: each
//	                                     node's agent pulls (images.go)
//	GET    /v1/images?nodes=all|A,B      api.NodeImageResults: each node's images
//	                                     (both 503 while no NodeImages is set)
//	GET    /v1/services                  List of api.Service
//	GET    /v1/services/{name}           api.Service
//	PUT    /v1/services/{name}           api.Service (spec; status is allocated)
//	DELETE /v1/services/{name}[?revision=N]  api.DeleteResponse (its endpoints go too)
//	GET    /v1/endpoints                 List of api.Endpoints
//	GET    /v1/endpoints/{name}          api.Endpoints
//	GET    /v1/events[?object=kind/name] List of api.Event
//	POST   /v1/events                    api.Event (object, type, reason,
//	                                     message, source) -> 204; repeats aggregate
//	GET    /v1/members                   {"items":[api.Member...]}: the gossip view
//	GET    /v1/cluster                   api.ClusterInfo: where a joining node finds
//	                                     the servers (both 503 while no
//	                                     Membership is set: no gossip)
//	GET    /healthz, /readyz             "ok"
//	GET    /metrics                      Prometheus text
//	POST   /v1/join                      api.JoinRequest (join token) -> api.JoinResponse
//	POST   /v1/renew                     api.RenewRequest (node certificate) -> api.RenewResponse
//	GET    /v1/whoami                    api.Whoami
//	GET    /v1/tokens                    {"items":[api.TokenInfo...]}
//	POST   /v1/tokens                    api.TokenRequest -> api.TokenResponse (201)
//	DELETE /v1/tokens/{id}               api.TokenInfo
//	POST   /v1/join/rotate               api.TokenResponse: a new join secret
//	                                     (these answer 503 until EnableJoin)
//
// # Who may call what
//
// The unix socket serves Server.ServeHTTP: the local admin. The TLS
// listener serves TCPHandler, which authenticates every request (auth.go:
// a node certificate, a token of `skiff token create`, or the join secret)
// and puts its Identity in the request's context; every route then checks
// it against one table (authz.go): admin, read, join, or what a node may
// do with its own Node and pods. See docs/security.md.
//
// A List is {"revision":N,"items":[...]} (also in the Skiff-Revision
// header). Any list with ?watch=1 streams application/x-ndjson, one
// api.WatchEvent per line, for every change after ?since=N (default: the
// current revision), with the same filters; a since older than the store
// retains is 410 "gone": list again and watch from the list's revision. The
// stream ends when the server stops or the client fell so far behind that
// the log was compacted past it; resume from the last revision seen.
//
// # Errors
//
// Every error is an api.ErrorBody: 400 invalid (validation, with every field
// in details; unknown fields; malformed JSON; wrong types; null bodies;
// query parameters that do not parse, e.g. ?force=yes), 401
// unauthorized (TCP without credentials or with ones refused; revoked for
// a deleted node's certificate), 403 forbidden (the role may not; the
// message names the rule), 404 not_found (object or
// path), 405 (code invalid; Allow lists the methods), 409 conflict (stale
// revision, exists, an address held by another service), 410 gone, 413
// (code invalid) for bodies over Options.MaxBody, 503 unavailable. A 500 is
// a bug.
//
// # Deletes
//
// A pod bound to a Ready node is marked (spec.deleting) for its agent,
// which stops it and then deletes it again: a DELETE of a pod already
// marked (or with ?force=true) removes it at once. An unbound pod, or
// one on a node that is not Ready, is removed at once too. DELETE of an app
// does this to each of its pods in the same transaction.
package apiserver
