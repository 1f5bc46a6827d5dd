// Package client is the Go client of skiff's HTTP API. The CLI, the node
// agent and tests use it; it speaks to a server over the local unix socket
// (no credentials) or over TLS with a token.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// DefaultAddr is the API address when none is given: the socket of the
// default run_dir.
const DefaultAddr = "unix://" + configs.DefaultAPISocket

// ErrUnreachable is returned (wrapped) when no connection to the API could
// be opened: the socket is missing, or nothing listens.
var ErrUnreachable = errors.New("cannot reach the skiff API")

// Config configures a Client.
type Config struct {
	// Addr is unix:///PATH, http://HOST:PORT or https://HOST:PORT. Default
	// DefaultAddr.
	Addr string
	// Token is sent as a bearer token; the TCP listener asks for it, the
	// unix socket ignores it.
	Token string
	// TLS configures https addresses. Nil uses the system roots.
	TLS *tls.Config
	// Timeout bounds each request that is not a stream (watch, logs,
	// exec). Default 30s; a negative value means no timeout.
	Timeout time.Duration
	// Servers are other servers of the cluster (HOST:PORT API addresses)
	// an https client fails over to when the one it uses cannot be
	// reached (see SetServers); a follower's not_leader answer is followed
	// to the leader it names (Skiff-Leader) in any case.
	Servers []string
}

// Client talks to one skiff API. It is safe for concurrent use.
type Client struct {
	// mu protects addr and base, which SetAddr changes.
	mu      sync.Mutex
	addr    string
	base    string // scheme://host the requests go to
	token   string
	timeout time.Duration
	hc      *http.Client
	// servers are the known servers' API addresses (HOST:PORT); mu
	// guards them.
	servers []string
}

// New returns a client of the API at addr (see Config.Addr).
func New(addr, token string) (*Client, error) {
	return NewWithConfig(Config{Addr: addr, Token: token})
}

// NewWithConfig returns a client configured by cfg.
func NewWithConfig(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	tr := &http.Transport{
		Proxy:               nil, // the API is never reached through a proxy
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	c := &Client{addr: cfg.Addr, token: cfg.Token, timeout: cfg.Timeout, servers: slices.Clone(cfg.Servers)}
	switch {
	case strings.HasPrefix(cfg.Addr, "unix://"):
		path := strings.TrimPrefix(cfg.Addr, "unix://")
		if path == "" || path[0] != '/' {
			return nil, fmt.Errorf("api address %q: want unix:///ABSOLUTE/PATH", cfg.Addr)
		}
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://skiff"
	case strings.HasPrefix(cfg.Addr, "http://"), strings.HasPrefix(cfg.Addr, "https://"):
		u, err := url.Parse(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("api address %q: %w", cfg.Addr, err)
		}
		if u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("api address %q: want %s://HOST:PORT", cfg.Addr, u.Scheme)
		}
		if u.Scheme == "http" && cfg.Token != "" {
			// Anyone on the path would read it.
			return nil, fmt.Errorf("api address %q: a token is never sent over plain http: use https://%s", cfg.Addr, u.Host)
		}
		tr.TLSClientConfig = cfg.TLS
		c.base = u.Scheme + "://" + u.Host
	default:
		return nil, fmt.Errorf("api address %q: want unix:///PATH or https://HOST:PORT", cfg.Addr)
	}
	c.hc = &http.Client{Transport: tr}
	return c, nil
}

// Addr returns the API address the client talks to.
func (c *Client) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// SetAddr points the client at another server of the same cluster,
// https://HOST:PORT (or http://), with the same scheme, token and TLS
// config: an agent fails over to it when its server stops answering. The
// TLS check verifies the host dialled, so give the address as the server
// announces it. Requests already sent keep their address.
func (c *Client) SetAddr(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.HasPrefix(c.addr, "unix://") {
		return fmt.Errorf("api address %q: a unix socket client cannot change its address", addr)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return fmt.Errorf("api address %q: %w", addr, err)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || !strings.HasPrefix(c.base, u.Scheme+"://") {
		return fmt.Errorf("api address %q: want %s", addr, strings.SplitAfter(c.base, "://")[0]+"HOST:PORT")
	}
	c.addr, c.base = addr, u.Scheme+"://"+u.Host
	return nil
}

// target returns the address and base URL requests go to.
func (c *Client) target() (addr, base string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr, c.base
}

// APIError is an error answer of the API (api.ErrorBody) with its status.
type APIError struct {
	Status  int
	Code    string
	Message string
	Field   string
	Details []api.FieldDetail
	// Leader is the Skiff-Leader header of a not_leader answer: the
	// leader's API address, HOST:PORT.
	Leader string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s (http %d)", e.Code, e.Status)
	}
	return e.Message
}

func isCode(err error, status int, code string) bool {
	var e *APIError
	return errors.As(err, &e) && (e.Code == code || (e.Code == "" && e.Status == status))
}

// IsNotFound reports whether err is the API's not_found (404).
func IsNotFound(err error) bool { return isCode(err, http.StatusNotFound, api.CodeNotFound) }

// IsConflict reports whether err is the API's conflict (409): a stale
// revision or an object that exists.
func IsConflict(err error) bool { return isCode(err, http.StatusConflict, api.CodeConflict) }

// IsGone reports whether err is the API's gone (410): a watch from a
// compacted revision; list again and watch from the list's revision.
func IsGone(err error) bool { return isCode(err, http.StatusGone, api.CodeGone) }

// UnreachableError says that no connection to the API at Addr could be
// opened. It matches ErrUnreachable with errors.Is.
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the skiff API at %s: %v", e.Addr, e.Err)
}

// Unwrap returns the dial error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// IsUnreachable reports whether err means the API could not be reached.
func IsUnreachable(err error) bool { return errors.Is(err, ErrUnreachable) }

// request is one API call.
type request struct {
	method string
	path   string
	query  url.Values
	body   any       // JSON-encoded when not nil
	raw    io.Reader // sent as is when body is nil
	stream bool      // no timeout: the caller reads the body as it comes
}

// send performs r and returns the response of a 2xx answer; the caller
// closes its body. Other answers become *APIError.
//
// With several servers (docs/ha.md) it follows a follower's not_leader
// answer to the leader named in Skiff-Leader, once per request, and an
// unreachable server to the next known one (Config.Servers: a dial that
// failed sent nothing, so the retry cannot apply a write twice); the
// client then stays on the server that answered. A request whose body is
// a stream (raw) is not sent again.
func (c *Client) send(ctx context.Context, r request) (*http.Response, context.CancelFunc, error) {
	addr, base := c.target()
	resp, cancel, err := c.sendTo(ctx, r, addr, base)
	if err == nil || r.raw != nil || strings.HasPrefix(addr, "unix://") || ctx.Err() != nil {
		return resp, cancel, err
	}
	scheme := strings.SplitAfter(base, "://")[0]
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Code == api.CodeNotLeader && ae.Leader != "":
		next := scheme + ae.Leader
		if next == base {
			return resp, cancel, err
		}
		resp, cancel, err2 := c.sendTo(ctx, r, next, next)
		if err2 == nil {
			c.moveTo(addr, next)
		}
		return resp, cancel, err2
	case IsUnreachable(err):
		for _, s := range c.knownServers() {
			next := scheme + s
			if next == base {
				continue
			}
			resp, cancel, err2 := c.sendTo(ctx, r, next, next)
			if IsUnreachable(err2) {
				continue
			}
			if err2 == nil || !isNotLeaderWithLeader(err2) {
				if err2 == nil {
					c.moveTo(addr, next)
				}
				return resp, cancel, err2
			}
			// A follower answered: follow it to its leader.
			errors.As(err2, &ae)
			lead := scheme + ae.Leader
			resp, cancel, err2 = c.sendTo(ctx, r, lead, lead)
			if err2 == nil {
				c.moveTo(addr, lead)
			}
			return resp, cancel, err2
		}
	}
	return resp, cancel, err
}

func isNotLeaderWithLeader(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == api.CodeNotLeader && ae.Leader != ""
}

// SetServers replaces the servers the client fails over to (HOST:PORT API
// addresses; an agent adds the gossip's role=server members).
func (c *Client) SetServers(servers []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servers = slices.Clone(servers)
}

func (c *Client) knownServers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.servers)
}

// moveTo points the client at next (scheme://HOST:PORT) unless another
// request moved it from from already.
func (c *Client) moveTo(from, next string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addr == from {
		c.addr, c.base = next, next
	}
}

// IsNotLeader reports whether err is a follower's not_leader (503).
func IsNotLeader(err error) bool { return isCode(err, 0, api.CodeNotLeader) }

// IsNoQuorum reports whether err is no_quorum (503): no leader reachable.
func IsNoQuorum(err error) bool { return isCode(err, 0, api.CodeNoQuorum) }

// sendTo performs r against base.
func (c *Client) sendTo(ctx context.Context, r request, addr, base string) (*http.Response, context.CancelFunc, error) {
	cancel := context.CancelFunc(func() {})
	if !r.stream && c.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	u := base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	body := r.raw
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		dial := ctx.Err() == nil && errors.As(err, &op) && op.Op == "dial"
		cancel()
		if dial {
			return nil, nil, &UnreachableError{Addr: addr, Err: err}
		}
		return nil, nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer cancel()
		defer resp.Body.Close()
		return nil, nil, decodeError(resp)
	}
	return resp, cancel, nil
}

// decodeError turns a non-2xx answer into an *APIError.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb api.ErrorBody
	if err := json.Unmarshal(b, &eb); err == nil && (eb.Error.Code != "" || eb.Error.Message != "") {
		return &APIError{
			Status:  resp.StatusCode,
			Code:    eb.Error.Code,
			Message: eb.Error.Message,
			Field:   eb.Error.Field,
			Details: eb.Error.Details,
			Leader:  resp.Header.Get(api.LeaderHeader),
		}
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{Status: resp.StatusCode, Code: codeOf(resp.StatusCode), Message: msg}
}

// codeOf maps a status to the API's error code, for answers without a body
// (a proxy, a plain http.Error).
func codeOf(status int) string {
	switch status {
	case http.StatusBadRequest:
		return api.CodeInvalid
	case http.StatusUnauthorized:
		return api.CodeUnauthorized
	case http.StatusForbidden:
		return api.CodeForbidden
	case http.StatusNotFound:
		return api.CodeNotFound
	case http.StatusConflict:
		return api.CodeConflict
	case http.StatusGone:
		return api.CodeGone
	case http.StatusServiceUnavailable:
		return api.CodeUnavailable
	}
	return api.CodeInternal
}

// do performs r and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, r request, out any) error {
	resp, cancel, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", r.method, r.path, err)
	}
	return nil
}
