package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// List is one page of a list answer: the objects and the store revision they
// were read at (watch from Revision to miss nothing).
type List[T any] struct {
	Revision int64 `json:"revision"`
	Items    []T   `json:"items"`
}

// UnmarshalJSON takes {"revision":N,"items":[...]} and also a bare array.
func (l *List[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		return json.Unmarshal(b, &l.Items)
	}
	type plain List[T]
	return json.Unmarshal(b, (*plain)(l))
}

// list GETs a list of kind with optional query parameters.
func list[T any](ctx context.Context, c *Client, kind string, q url.Values) (List[T], error) {
	var l List[T]
	resp, cancel, err := c.send(ctx, request{method: http.MethodGet, path: "/v1/" + kind, query: q})
	if err != nil {
		return l, err
	}
	defer cancel()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return l, fmt.Errorf("list %s: decode answer: %w", kind, err)
	}
	// A server may also say the revision in a header.
	if l.Revision == 0 {
		if r, err := strconv.ParseInt(resp.Header.Get("Skiff-Revision"), 10, 64); err == nil {
			l.Revision = r
		}
	}
	return l, nil
}

func objPath(kind, name string) string { return "/v1/" + kind + "/" + url.PathEscape(name) }

func get[T any](ctx context.Context, c *Client, kind, name string) (*T, error) {
	out := new(T)
	if err := c.do(ctx, request{method: http.MethodGet, path: objPath(kind, name)}, out); err != nil {
		return nil, err
	}
	return out, nil
}

func put[T any](ctx context.Context, c *Client, kind, name string, obj *T) (*T, error) {
	out := new(T)
	if err := c.do(ctx, request{method: http.MethodPut, path: objPath(kind, name), body: obj}, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Client) del(ctx context.Context, kind, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: objPath(kind, name)}, nil)
}

// ListNodes lists the nodes.
func (c *Client) ListNodes(ctx context.Context) (List[api.Node], error) {
	return list[api.Node](ctx, c, api.KindNode, nil)
}

// GetNode reads one node.
func (c *Client) GetNode(ctx context.Context, name string) (*api.Node, error) {
	return get[api.Node](ctx, c, api.KindNode, name)
}

// PutNode writes a node (an agent registering or reporting its status).
func (c *Client) PutNode(ctx context.Context, n *api.Node) (*api.Node, error) {
	return put(ctx, c, api.KindNode, n.Name, n)
}

// ListApps lists the apps.
func (c *Client) ListApps(ctx context.Context) (List[api.App], error) {
	return list[api.App](ctx, c, api.KindApp, nil)
}

// GetApp reads one app.
func (c *Client) GetApp(ctx context.Context, name string) (*api.App, error) {
	return get[api.App](ctx, c, api.KindApp, name)
}

// PutApp creates or replaces an app. A non-zero a.Revision must match the
// stored one (else IsConflict).
func (c *Client) PutApp(ctx context.Context, a *api.App) (*api.App, error) {
	return put(ctx, c, api.KindApp, a.Name, a)
}

// DeleteApp deletes an app and, through the controller, its pods.
func (c *Client) DeleteApp(ctx context.Context, name string) error {
	return c.del(ctx, api.KindApp, name)
}

// ScaleRequest is the body of POST /v1/apps/{name}/scale.
type ScaleRequest struct {
	Replicas int `json:"replicas"`
}

// Scale sets an app's replicas.
func (c *Client) Scale(ctx context.Context, app string, replicas int) (*api.App, error) {
	out := new(api.App)
	err := c.do(ctx, request{method: http.MethodPost, path: objPath(api.KindApp, app) + "/scale",
		body: ScaleRequest{Replicas: replicas}}, out)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RollbackRequest is the body of POST /v1/apps/{name}/rollback.
type RollbackRequest struct {
	// TemplateHash of the revision to return to; empty means the one
	// before the current.
	TemplateHash string `json:"template_hash,omitempty"`
}

// Rollback returns an app to an earlier pod template (see RollbackRequest).
func (c *Client) Rollback(ctx context.Context, app, templateHash string) (*api.App, error) {
	out := new(api.App)
	err := c.do(ctx, request{method: http.MethodPost, path: objPath(api.KindApp, app) + "/rollback",
		body: RollbackRequest{TemplateHash: templateHash}}, out)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListPods lists pods, of one app and/or one node when those are not empty.
func (c *Client) ListPods(ctx context.Context, app, node string) (List[api.Pod], error) {
	q := url.Values{}
	if app != "" {
		q.Set("app", app)
	}
	if node != "" {
		q.Set("node", node)
	}
	l, err := list[api.Pod](ctx, c, api.KindPod, q)
	if err != nil {
		return l, err
	}
	// Filter here too, in case the server ignored the parameters.
	keep := l.Items[:0]
	for _, p := range l.Items {
		if (app == "" || p.Spec.App == app) && (node == "" || p.Spec.Node == node) {
			keep = append(keep, p)
		}
	}
	l.Items = keep
	return l, nil
}

// GetPod reads one pod.
func (c *Client) GetPod(ctx context.Context, name string) (*api.Pod, error) {
	return get[api.Pod](ctx, c, api.KindPod, name)
}

// PutPod writes a whole pod (the controllers and the scheduler).
func (c *Client) PutPod(ctx context.Context, p *api.Pod) (*api.Pod, error) {
	return put(ctx, c, api.KindPod, p.Name, p)
}

// PutPodStatus reports a pod's status (the agent of its node): PUT
// /v1/pods/{name}/status with the pod; the server keeps the stored spec.
func (c *Client) PutPodStatus(ctx context.Context, p *api.Pod) (*api.Pod, error) {
	out := new(api.Pod)
	if err := c.do(ctx, request{method: http.MethodPut, path: objPath(api.KindPod, p.Name) + "/status", body: p}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeletePod deletes a pod: the server marks it deleting and its node's agent
// stops it and removes it.
func (c *Client) DeletePod(ctx context.Context, name string) error {
	return c.del(ctx, api.KindPod, name)
}

// ListServices lists the services.
func (c *Client) ListServices(ctx context.Context) (List[api.Service], error) {
	return list[api.Service](ctx, c, api.KindService, nil)
}

// GetService reads one service.
func (c *Client) GetService(ctx context.Context, name string) (*api.Service, error) {
	return get[api.Service](ctx, c, api.KindService, name)
}

// PutService creates or replaces a service.
func (c *Client) PutService(ctx context.Context, s *api.Service) (*api.Service, error) {
	return put(ctx, c, api.KindService, s.Name, s)
}

// DeleteService deletes a service.
func (c *Client) DeleteService(ctx context.Context, name string) error {
	return c.del(ctx, api.KindService, name)
}

// ListEndpoints lists the endpoints of every service.
func (c *Client) ListEndpoints(ctx context.Context) (List[api.Endpoints], error) {
	return list[api.Endpoints](ctx, c, api.KindEndpoints, nil)
}

// GetEndpoints reads the endpoints of one service.
func (c *Client) GetEndpoints(ctx context.Context, name string) (*api.Endpoints, error) {
	return get[api.Endpoints](ctx, c, api.KindEndpoints, name)
}

// ListEvents lists events; with object ("pods/web-x2f") only that object's.
func (c *Client) ListEvents(ctx context.Context, object string) (List[api.Event], error) {
	var q url.Values
	if object != "" {
		q = url.Values{"object": {object}}
	}
	l, err := list[api.Event](ctx, c, api.KindEvent, q)
	if err != nil {
		return l, err
	}
	if object != "" {
		keep := l.Items[:0]
		for _, e := range l.Items {
			if e.Object == object {
				keep = append(keep, e)
			}
		}
		l.Items = keep
	}
	return l, nil
}

// Apply actions, one per object of an apply.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
)

// ApplyRequest is the body of POST /v1/apply: a manifest and an optional
// dry run that validates and reports without writing.
type ApplyRequest struct {
	configs.Manifest
	DryRun bool `json:"dry_run,omitempty"`
}

// ApplyResult is the answer of POST /v1/apply: what happened to each
// object, and the store revision of the write (the current one when nothing
// changed or on a dry run).
type ApplyResult struct {
	Revision int64           `json:"revision"`
	DryRun   bool            `json:"dry_run,omitempty"`
	Results  []AppliedObject `json:"results"`
}

// AppliedObject says what an apply did to one object.
type AppliedObject struct {
	Kind   string `json:"kind"` // api.KindApp or api.KindService
	Name   string `json:"name"`
	Action string `json:"action"` // one of the Action* constants
}

// Apply sends a manifest to POST /v1/apply (with dryRun to only validate
// and say what would change). The server applies it whole or not at all.
func (c *Client) Apply(ctx context.Context, m *configs.Manifest, dryRun bool) (ApplyResult, error) {
	var res ApplyResult
	req := ApplyRequest{DryRun: dryRun}
	if m != nil {
		req.Manifest = *m
	}
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/apply", body: req}, &res)
	return res, err
}

// Ready asks the server's /readyz; nil means it serves.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, request{method: http.MethodGet, path: "/readyz"}, nil)
}
