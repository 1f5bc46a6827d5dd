package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// list GETs a list of kind with optional query parameters.
func list[T any](ctx context.Context, c *Client, kind string, q url.Values) (api.List[T], error) {
	var l api.List[T]
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

// call sends r and returns its answer decoded into a new T, or nil and
// the error.
func call[T any](ctx context.Context, c *Client, r request) (*T, error) {
	out := new(T)
	if err := c.do(ctx, r, out); err != nil {
		return nil, err
	}
	return out, nil
}

func get[T any](ctx context.Context, c *Client, kind, name string) (*T, error) {
	return call[T](ctx, c, request{method: http.MethodGet, path: objPath(kind, name)})
}

func put[T any](ctx context.Context, c *Client, kind, name string, obj *T) (*T, error) {
	return call[T](ctx, c, request{method: http.MethodPut, path: objPath(kind, name), body: obj})
}

func (c *Client) del(ctx context.Context, kind, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: objPath(kind, name)}, nil)
}

// ListNodes lists the nodes.
func (c *Client) ListNodes(ctx context.Context) (api.List[api.Node], error) {
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
func (c *Client) ListApps(ctx context.Context) (api.List[api.App], error) {
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

// Scale sets an app's replicas.
func (c *Client) Scale(ctx context.Context, app string, replicas int) (*api.App, error) {
	return call[api.App](ctx, c, request{method: http.MethodPost, path: objPath(api.KindApp, app) + "/scale",
		body: api.ScaleRequest{Replicas: &replicas}})
}

// Restart replaces every pod of an app through its rolling update: a new
// revision of its pod template that differs only by a restart stamp (see
// api.RestartRequest).
func (c *Client) Restart(ctx context.Context, app string) (*api.App, error) {
	return call[api.App](ctx, c, request{method: http.MethodPost, path: objPath(api.KindApp, app) + "/restart",
		body: api.RestartRequest{}})
}

// Rollback returns an app to an earlier pod template (see api.RollbackRequest).
func (c *Client) Rollback(ctx context.Context, app, templateHash string) (*api.App, error) {
	return call[api.App](ctx, c, request{method: http.MethodPost, path: objPath(api.KindApp, app) + "/rollback",
		body: api.RollbackRequest{TemplateHash: templateHash}})
}

// ListPods lists pods, of one app and/or one node when those are not empty.
func (c *Client) ListPods(ctx context.Context, app, node string) (api.List[api.Pod], error) {
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
	return call[api.Pod](ctx, c, request{method: http.MethodPut, path: objPath(api.KindPod, p.Name) + "/status", body: p})
}

// DeletePod deletes a pod: the server marks it deleting and its node's agent
// stops it and removes it.
func (c *Client) DeletePod(ctx context.Context, name string) error {
	return c.del(ctx, api.KindPod, name)
}

// ListServices lists the services.
func (c *Client) ListServices(ctx context.Context) (api.List[api.Service], error) {
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
func (c *Client) ListEndpoints(ctx context.Context) (api.List[api.Endpoints], error) {
	return list[api.Endpoints](ctx, c, api.KindEndpoints, nil)
}

// GetEndpoints reads the endpoints of one service.
func (c *Client) GetEndpoints(ctx context.Context, name string) (*api.Endpoints, error) {
	return get[api.Endpoints](ctx, c, api.KindEndpoints, name)
}

// ListEvents lists events; with object ("pods/web-x2f") only that object's.
func (c *Client) ListEvents(ctx context.Context, object string) (api.List[api.Event], error) {
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

// Apply sends a manifest to POST /v1/apply (with dryRun to only validate
// and say what would change). The server applies it whole or not at all.
func (c *Client) Apply(ctx context.Context, m *configs.Manifest, dryRun bool) (api.ApplyResponse, error) {
	var res api.ApplyResponse
	req := api.ApplyRequest{DryRun: dryRun}
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

// PutServiceHolder reports that node holder announces address, the LAN
// address of service name (agents call it when they take an address over).
func (c *Client) PutServiceHolder(ctx context.Context, name, address, holder string) (*api.Service, error) {
	body := api.ServiceHolder{Address: address, Holder: holder}
	return call[api.Service](ctx, c, request{method: http.MethodPut, path: objPath(api.KindService, name) + "/holder", body: body})
}
