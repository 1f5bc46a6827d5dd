package apiserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Authentication. The unix socket is the local admin's: Server.ServeHTTP
// serves it as is, and a request without an Identity in its context is
// the local admin's. The TLS listener serves TCPHandler, which gives every
// request an Identity or answers 401: a node's client certificate (CN
// node:<name>, signed by the CA, not expired, not revoked), a bearer token
// made by `skiff token create` (<id>.<secret>, not expired), or the join
// secret (role join). /healthz and /readyz need nothing; /ui/ is the web
// console's, which signs its users in itself (see console.go).

// Identity is who a request comes from.
type Identity struct {
	// Role is one of api.Role*, or "" for an anonymous health check.
	Role string
	// Node is the node of a node certificate.
	Node string
	// Token is the id of a token of `skiff token create`, or "join" for
	// the join secret.
	Token string
	// Local is the unix socket's admin.
	Local bool
}

// localAdmin is the identity of requests that come without one: those of
// the unix socket (root only) and of in-process callers.
var localAdmin = Identity{Role: api.RoleAdmin, Local: true}

// String names the identity in messages: "node:edge-01", "read token
// ab12cd", "the join token".
func (id Identity) String() string {
	switch {
	case id.Local:
		return "the local socket"
	case id.Role == api.RoleNode:
		return pki.NodeCN(id.Node)
	case id.Role == api.RoleServer && id.Node != "":
		return pki.ServerCNPrefix + id.Node
	case id.Token == joinTokenID:
		return "the join token"
	case id.Role == "":
		return "an anonymous client"
	}
	return id.Role + " token " + id.Token
}

// joinTokenID is Identity.Token of the join secret.
const joinTokenID = "join"

type identityKey struct{}

// withIdentity returns ctx carrying id.
func withIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// identityOf returns the identity of a request's context: localAdmin when
// it has none (see the top of this file).
func identityOf(ctx context.Context) Identity {
	if id, ok := ctx.Value(identityKey{}).(Identity); ok {
		return id
	}
	return localAdmin
}

// unauthorized is a 401 with code (api.CodeUnauthorized or
// api.CodeRevoked).
func unauthorized(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: code, msg: fmt.Sprintf(format, args...)}
}

// forbidden is a 403 whose message names the rule.
func forbidden(format string, args ...any) *apiError {
	return &apiError{status: http.StatusForbidden, code: api.CodeForbidden, msg: fmt.Sprintf(format, args...)}
}

// TCPHandler is the handler of the TLS listener: it authenticates every
// request (401 when it cannot) and serves it with its Identity. The
// listener's TLS config must ask for and verify client certificates
// against the cluster CA (pki.PKI.ServerTLSConfig does).
func (s *Server) TCPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id Identity // anonymous: health checks only (see authz.go)
		// The console (/ui/) signs its users in with a session of its own.
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && !isConsolePath(r.URL.Path) {
			var err *apiError
			if id, err = s.authenticate(r); err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="skiff"`)
				s.writeError(w, r, err)
				return
			}
		}
		s.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id)))
	})
}

// authenticate finds who sent r. A client certificate the TLS handshake
// verified wins over a bearer token.
func (s *Server) authenticate(r *http.Request) (Identity, *apiError) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return s.authCert(r.TLS.VerifiedChains[0][0])
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || bearer == "" {
		return Identity{}, unauthorized(api.CodeUnauthorized, "missing or wrong bearer token: send a token or a node certificate")
	}
	if id, secret, ok := strings.Cut(bearer, "."); ok {
		return s.authToken(id, secret)
	}
	if jc := s.joinCfg.Load(); jc != nil && s.joinSecretOK(jc, bearer) {
		return Identity{Role: api.RoleJoin, Token: joinTokenID}, nil
	}
	return Identity{}, unauthorized(api.CodeUnauthorized, "missing or wrong bearer token")
}

// authCert checks a node certificate the handshake verified against the CA:
// it names a node, it has not expired (a connection may outlive it) and the
// store has not revoked it.
func (s *Server) authCert(leaf *x509.Certificate) (Identity, *apiError) {
	if name, ok := pki.ServerName(leaf); ok {
		// Another server of the cluster (only servers hold the CA key
		// that issues these; see cluster/pki/server.go).
		return serverIdentity(name), nil
	}
	node, ok := pki.NodeName(leaf)
	if !ok {
		return Identity{}, unauthorized(api.CodeUnauthorized, "client certificate %q is not a node certificate (CN node:<name>, O %s)", leaf.Subject.CommonName, pki.NodeOrg)
	}
	now := time.Now()
	if !now.Before(leaf.NotAfter) {
		return Identity{}, unauthorized(api.CodeUnauthorized, "the certificate of %s expired at %s: the node must join again with a join token",
			pki.NodeCN(node), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	var rec api.NodeCert
	switch err := s.st.Get(api.KindNodeCert, node, &rec); {
	case errors.Is(err, store.ErrNotFound):
		// Issued by another server of the cluster (the stores are not
		// shared yet), or before certificates were recorded.
	case err != nil:
		return Identity{}, toAPIError(err)
	default:
		serial := pki.SerialHex(leaf)
		if slices.ContainsFunc(rec.Revoked, func(c api.CertSerial) bool { return c.Serial == serial }) {
			at := ""
			if rec.RevokedAt != nil {
				at = " at " + rec.RevokedAt.UTC().Format(time.RFC3339)
			}
			return Identity{}, unauthorized(api.CodeRevoked, "%s was deleted%s (skiff delete node): its certificate is revoked; "+
				"to join it again, remove <data_dir>/pki/%s on it and start it with a join token", pki.NodeCN(node), at, pki.NodeCertFile)
		}
	}
	return Identity{Role: api.RoleNode, Node: node}, nil
}

// authToken checks a token of `skiff token create`: a known id, the right
// secret (its hash compared in constant time), not expired.
func (s *Server) authToken(id, secret string) (Identity, *apiError) {
	var tok api.Token
	err := s.st.Get(api.KindToken, id, &tok)
	if errors.Is(err, store.ErrNotFound) && s.st.Replicated() && !s.st.IsLeader() {
		// A token made a moment ago may not have reached this follower
		// yet: the leader, which the client follows, decides.
		if lid, addr := s.st.Leader(); addr != "" {
			ae, _, _ := haError(&store.NotLeaderError{LeaderID: lid, LeaderAddr: addr})
			ae.leader = addr
			return Identity{}, ae
		}
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && !secretMatches(tok.Spec.SecretHash, secret)) {
		return Identity{}, unauthorized(api.CodeUnauthorized, "unknown token or wrong secret (revoked? see skiff token list)")
	}
	if err != nil {
		return Identity{}, toAPIError(err)
	}
	if tok.Spec.Expires != nil && !time.Now().Before(*tok.Spec.Expires) {
		return Identity{}, unauthorized(api.CodeUnauthorized, "token %s expired at %s", id, tok.Spec.Expires.UTC().Format(time.RFC3339))
	}
	return Identity{Role: tok.Spec.Role, Token: id}, nil
}

// hashSecret is the hex SHA-256 the store keeps of a token's secret.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func secretMatches(hash, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(hash), []byte(hashSecret(secret))) == 1
}

// joinSecretOK checks the join secret: the store's record of the last
// rotation when there is one (replicated to every server; this server's
// PKI follows it), else the PKI's own (a cluster never rotated).
func (s *Server) joinSecretOK(jc *JoinConfig, presented string) bool {
	var rec api.JoinSecret
	if err := s.st.Get(api.KindJoinSecret, api.JoinSecretName, &rec); err == nil && rec.Spec.Secret != "" {
		if rec.Spec.Secret != jc.PKI.JoinSecret() {
			if err := jc.PKI.SetSecret(rec.Spec.Secret); err != nil {
				s.log.Warn("follow the join secret's rotation", "err", err)
			}
		}
		return subtle.ConstantTimeCompare([]byte(rec.Spec.Secret), []byte(presented)) == 1
	}
	return jc.PKI.CheckSecret(presented)
}

// SyncJoinSecret makes the PKI's join secret the store's (after a
// rotation on another server), so that `skiff token` prints the current
// one; the server calls it now and then.
func (s *Server) SyncJoinSecret() error {
	jc := s.joinCfg.Load()
	if jc == nil {
		return nil
	}
	var rec api.JoinSecret
	if err := s.st.Get(api.KindJoinSecret, api.JoinSecretName, &rec); err != nil || rec.Spec.Secret == "" {
		return nil
	}
	return jc.PKI.SetSecret(rec.Spec.Secret)
}
