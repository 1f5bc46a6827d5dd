package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Join sends a node's certificate request with a join token (the client's
// Token) and returns its certificate, the CA, the gossip key and where the
// servers are.
func (c *Client) Join(ctx context.Context, req api.JoinRequest) (api.JoinResponse, error) {
	var out api.JoinResponse
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/join", body: &req}, &out)
	return out, err
}

// Renew sends a certificate request for a new key with the node's current
// certificate (the client's TLS config presents it) and returns the new
// certificate (PEM).
func (c *Client) Renew(ctx context.Context, csrPEM []byte) (string, error) {
	var out api.RenewResponse
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/renew", body: &api.RenewRequest{CSR: string(csrPEM)}}, &out)
	return out.Certificate, err
}

// Whoami returns who the server takes the client for.
func (c *Client) Whoami(ctx context.Context) (api.Whoami, error) {
	var out api.Whoami
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/whoami"}, &out)
	return out, err
}

// DeleteNode deletes a node and revokes its certificates.
func (c *Client) DeleteNode(ctx context.Context, name string) error {
	return c.del(ctx, api.KindNode, name)
}

// CreateToken makes an API token; the answer holds the whole token, shown
// this once.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (api.TokenResponse, error) {
	var out api.TokenResponse
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/tokens", body: &req}, &out)
	return out, err
}

// ListTokens lists the API tokens (never their secrets).
func (c *Client) ListTokens(ctx context.Context) ([]api.TokenInfo, error) {
	var l api.List[api.TokenInfo]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/tokens"}, &l)
	return l.Items, err
}

// RevokeToken deletes the API token id.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/v1/tokens/" + url.PathEscape(id)}, nil)
}

// RotateJoinToken replaces the join secret and returns the new join token.
func (c *Client) RotateJoinToken(ctx context.Context) (string, error) {
	var out api.TokenResponse
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/join/rotate"}, &out)
	return out.Token, err
}

// CloseIdleConnections closes the connections no request uses, so that
// the next requests open new ones: after a node's certificate was renewed,
// their handshakes present the new one.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// IsUnauthorized reports whether err is the API's 401: no credentials, or
// ones it does not accept (unknown, expired or revoked).
func IsUnauthorized(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusUnauthorized
}

// IsRevoked reports whether err is the API's 401 for a node certificate
// revoked by `skiff delete node`.
func IsRevoked(err error) bool { return isCode(err, http.StatusUnauthorized, api.CodeRevoked) }

// IsForbidden reports whether err is the API's 403: the credentials are
// good but their role may not do this.
func IsForbidden(err error) bool { return isCode(err, http.StatusForbidden, api.CodeForbidden) }
