package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// ListConfigs lists the configs.
func (c *Client) ListConfigs(ctx context.Context) (api.List[api.Config], error) {
	return list[api.Config](ctx, c, api.KindConfig, nil)
}

// GetConfig reads one config, with its files.
func (c *Client) GetConfig(ctx context.Context, name string) (*api.Config, error) {
	return get[api.Config](ctx, c, api.KindConfig, name)
}

// PutConfig creates or replaces a config.
func (c *Client) PutConfig(ctx context.Context, cfg *api.Config) (*api.Config, error) {
	return put(ctx, c, api.KindConfig, cfg.Name, cfg)
}

// DeleteConfig deletes a config no app uses.
func (c *Client) DeleteConfig(ctx context.Context, name string) error {
	return c.del(ctx, api.KindConfig, name)
}

// ListSecrets lists the secrets: names and sizes, never their files.
func (c *Client) ListSecrets(ctx context.Context) (api.List[api.Secret], error) {
	return list[api.Secret](ctx, c, api.KindSecret, nil)
}

// GetSecret reads one secret: names and sizes, never its files.
func (c *Client) GetSecret(ctx context.Context, name string) (*api.Secret, error) {
	return get[api.Secret](ctx, c, api.KindSecret, name)
}

// PutSecret creates or replaces a secret (its files in sec.Spec).
func (c *Client) PutSecret(ctx context.Context, sec *api.Secret) (*api.Secret, error) {
	return put(ctx, c, api.KindSecret, sec.Name, sec)
}

// DeleteSecret deletes a secret no app uses.
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	return c.del(ctx, api.KindSecret, name)
}

// NodeSecret fetches, for node, the files of a secret that one of its pods
// uses (an agent calls it with its node's credentials).
func (c *Client) NodeSecret(ctx context.Context, node, name string) (*api.Secret, error) {
	p := "/v1/nodes/" + url.PathEscape(node) + "/secrets/" + url.PathEscape(name)
	return call[api.Secret](ctx, c, request{method: http.MethodGet, path: p})
}
