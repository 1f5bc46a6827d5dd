package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// identity is a node's certificate as its agent gets it (a join with the
// join token), keeps it (<data_dir>/pki: node.key 0600, node.crt, ca.crt)
// and renews it (with the certificate itself, after two thirds of its
// life). Its holder is what the API client's TLS config presents: a
// renewal swaps it and the next handshake uses the new certificate, with
// no restart.
type identity struct {
	dir    string // <data_dir>/pki
	node   string
	server string
	log    *slog.Logger
	// tok is the join token; nil when none was given (a node that joined
	// before needs none).
	tok *pki.Token
	// caHash pins the server's CA: the token's, else the certificate's.
	caHash string
	holder pki.Holder
	// pending is the identity of this start's join, written to dir once
	// the gossip keyring holds the key (savePending). Only the starting
	// goroutine touches it.
	pending *pki.Identity
}

// loadIdentity reads the node's certificate from <data_dir>/pki and parses
// the join token (token may be empty). A certificate that is unusable, of
// another node name, or of another CA than the token's is set aside: the
// node joins again with the token. Without a usable certificate a token is
// required.
func loadIdentity(cfg configs.NodeConfig, token, server string, log *slog.Logger) (*identity, error) {
	id := &identity{dir: filepath.Join(cfg.DataDir, PKIDir), node: cfg.NodeName, server: server, log: log}
	if token != "" {
		t, err := pki.ParseToken(token)
		if err != nil {
			return nil, err
		}
		id.tok, id.caHash = &t, t.CAHash
	}
	cur, err := pki.LoadIdentity(id.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		log.Warn("the node certificate is unusable; joining again", "err", err)
	case cur.Node() != id.node:
		log.Warn("the node certificate names another node; joining again", "certificate", cur.Node(), "node", id.node)
	case id.tok != nil && cur.CAHash() != id.tok.CAHash:
		log.Warn("the join token pins another CA than the node certificate's; joining the token's cluster",
			"token_ca", id.tok.CAHash[:12], "certificate_ca", cur.CAHash()[:12])
	default:
		id.holder.Set(cur)
		id.caHash = cur.CAHash()
		log.Info("node certificate loaded", "serial", pki.SerialHex(cur.Leaf), "until", cur.Leaf.NotAfter, "renew_at", cur.RenewAt())
	}
	if id.holder.Load() == nil && id.tok == nil {
		return nil, fmt.Errorf("no usable node certificate in %s and no join token: give the join token "+
			"(SKIFF_TOKEN, --token-stdin, --token-file or token_file) to join", id.dir)
	}
	return id, nil
}

// join gets the node's first certificate: a fresh key, a certificate
// request sent with the join token's secret over a connection whose CA
// matched the token. It retries while no server answers and returns nil,
// nil if ctx ends first; a refusal is an error wrapping ErrJoinRefused.
func (id *identity) join(ctx context.Context) (*api.JoinResponse, error) {
	c, err := client.NewWithConfig(client.Config{Addr: "https://" + id.server, Token: id.tok.Secret,
		TLS: pki.ClientTLSConfig(*id.tok), Timeout: joinCheckTimeout})
	if err != nil {
		return nil, err
	}
	defer c.CloseIdleConnections()
	delay := time.Second
	for {
		resp, err := id.joinOnce(ctx, c)
		var apiErr *client.APIError
		switch {
		case err == nil:
			return resp, nil
		case ctx.Err() != nil:
			return nil, nil
		case errors.Is(err, pki.ErrCAMismatch), errors.Is(err, pki.ErrNoCAInChain):
			return nil, fmt.Errorf("%w: %s: %w", ErrJoinRefused, id.server, err)
		case client.IsUnauthorized(err):
			return nil, fmt.Errorf("%w: the server %s refused the join token: is it the one its `skiff token` prints now "+
				"(or a token of role join), not rotated or revoked?", ErrJoinRefused, id.server)
		case errors.As(err, &apiErr) && apiErr.Status/100 == 4:
			return nil, fmt.Errorf("%w: %s: %w", ErrJoinRefused, id.server, err)
		}
		id.log.Warn("join: the server does not answer; retrying", "server", id.server, "in", delay, "err", err)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 15*time.Second)
	}
}

// joinOnce sends one join and makes the node's identity of its answer.
func (id *identity) joinOnce(ctx context.Context, c *client.Client) (*api.JoinResponse, error) {
	key, err := pki.NewNodeKey()
	if err != nil {
		return nil, err
	}
	csr, err := pki.NewNodeCSR(key, id.node)
	if err != nil {
		return nil, err
	}
	resp, err := c.Join(ctx, api.JoinRequest{Node: id.node, CSR: string(csr)})
	if err != nil {
		return nil, err
	}
	got, err := pki.NewIdentity(key, []byte(resp.Certificate), []byte(resp.CA))
	if err != nil {
		return nil, fmt.Errorf("join answer: %w", err)
	}
	if got.CAHash() != id.tok.CAHash {
		return nil, fmt.Errorf("%w: the join answer's CA is not the one the token pins", pki.ErrCAMismatch)
	}
	id.holder.Set(got)
	id.pending = got
	id.log.Info("joined: node certificate issued", "node", id.node, "serial", pki.SerialHex(got.Leaf),
		"until", got.Leaf.NotAfter, "renew_at", got.RenewAt())
	return &resp, nil
}

// rejoin answers a server's refusal (cause, a 401) of the node's
// certificate: a revoked certificate, or one refused with no join token,
// is an error wrapping ErrJoinRefused; otherwise (expired, unknown to this
// server) the node joins again with its token.
func (id *identity) rejoin(ctx context.Context, cause error) (*api.JoinResponse, error) {
	if client.IsRevoked(cause) {
		return nil, fmt.Errorf("%w: %w", ErrJoinRefused, cause)
	}
	if id.tok == nil {
		return nil, fmt.Errorf("%w: the server refuses this node's certificate (%w) and there is no join token to join again", ErrJoinRefused, cause)
	}
	id.log.Warn("the server refuses this node's certificate; joining again with the join token", "err", cause)
	return id.join(ctx)
}

// savePending writes the identity of this start's join, if any.
func (id *identity) savePending() error {
	if id.pending == nil {
		return nil
	}
	if err := id.pending.Save(id.dir); err != nil {
		return fmt.Errorf("save the node certificate: %w", err)
	}
	id.pending = nil
	return nil
}

// renewLoop renews the certificate at its RenewAt, over c (which presents
// the current one), until ctx ends. A failed renewal is retried (every
// tenth of the time left, 1 s to 1 min) while the certificate lasts; a
// server that refuses it (401: revoked, expired) ends the loop with an
// error wrapping ErrJoinRefused.
func (id *identity) renewLoop(ctx context.Context, c *client.Client) error {
	cur := id.holder.Load()
	if cur == nil {
		return nil
	}
	next := cur.RenewAt()
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		err := id.renew(ctx, c)
		switch {
		case err == nil:
			next = id.holder.Load().RenewAt()
			continue
		case ctx.Err() != nil:
			return nil
		case client.IsUnauthorized(err):
			return fmt.Errorf("%w: renew the node certificate: %w", ErrJoinRefused, err)
		}
		left := time.Until(id.holder.Load().Leaf.NotAfter)
		retry := min(max(left/10, time.Second), time.Minute)
		id.log.Warn("renew the node certificate; retrying", "in", retry, "left", left.Round(time.Second), "err", err)
		next = time.Now().Add(retry)
	}
}

// renew gets a certificate for a fresh key, keeps it and swaps it in; idle
// connections close so that the next requests present it.
func (id *identity) renew(ctx context.Context, c *client.Client) error {
	cur := id.holder.Load()
	key, err := pki.NewNodeKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewNodeCSR(key, id.node)
	if err != nil {
		return err
	}
	certPEM, err := c.Renew(ctx, csr)
	if err != nil {
		return err
	}
	got, err := pki.NewIdentity(key, []byte(certPEM), pki.CertPEM(cur.CA.Raw))
	if err != nil {
		return fmt.Errorf("renewal answer: %w", err)
	}
	if err := got.Save(id.dir); err != nil {
		// The new certificate works in memory; the next start finds the
		// old one and renews or joins again.
		id.log.Warn("keep the renewed node certificate", "err", err)
	}
	id.holder.Set(got)
	c.CloseIdleConnections()
	id.log.Info("node certificate renewed", "serial", pki.SerialHex(got.Leaf), "until", got.Leaf.NotAfter, "renew_at", got.RenewAt())
	return nil
}
