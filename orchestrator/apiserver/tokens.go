package apiserver

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// API tokens: `skiff token create` makes one with a role and maybe an end,
// the server keeps its id, role, end and the SHA-256 of its secret, and
// prints the whole token once: K10<CA hash>::<id>.<secret>. The join token
// (`skiff token`) is the join secret of the PKI, rotated with POST
// /v1/join/rotate.

// Sizes of a token's parts, in random bytes (hex doubles them).
const (
	tokenIDBytes     = 6
	tokenSecretBytes = 16
)

// tokenRoles are the roles a token may have (a node's comes from its
// certificate only).
var tokenRoles = []string{api.RoleAdmin, api.RoleRead, api.RoleJoin, api.RoleServer}

// createToken makes a token with a role and an optional TTL and answers
// with the whole token: the only time its secret is shown.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	jc := s.joinConfig(w)
	if jc == nil {
		return
	}
	var req api.TokenRequest
	if err := s.decode(w, r, &req, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !slices.Contains(tokenRoles, req.Role) {
		s.writeError(w, r, invalid("role", "role %q: want one of %s", req.Role, strings.Join(tokenRoles, ", ")))
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		s.writeError(w, r, invalid("ttl", "%v", err))
		return
	}
	secret := randomHex(tokenSecretBytes)
	var tok api.Token
	_, err = s.st.Update(func(tx *store.Tx) error {
		tok = api.Token{Meta: api.Meta{Name: randomHex(tokenIDBytes)},
			Spec: api.TokenSpec{Role: req.Role, SecretHash: hashSecret(secret), Description: req.Description}}
		if ttl > 0 {
			end := tx.Now().Add(ttl)
			tok.Spec.Expires = &end
		}
		return tx.Create(api.KindToken, &tok)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("token created", "id", tok.Name, "role", tok.Spec.Role, "by", identityOf(r.Context()).String())
	full := pki.Token{CAHash: jc.PKI.CAHash(), Secret: tok.Name + "." + secret}
	info := tokenInfo(&tok)
	writeJSON(w, http.StatusCreated, &api.TokenResponse{Token: full.String(), Info: &info})
}

// listTokens lists the tokens, never their secrets.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	var toks []*api.Token
	rev, err := s.st.List(api.KindToken, &toks)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := api.List[api.TokenInfo]{Revision: rev, Items: []api.TokenInfo{}}
	for _, t := range toks {
		out.Items = append(out.Items, tokenInfo(t))
	}
	writeJSON(w, http.StatusOK, &out)
}

// revokeToken deletes a token: it stops working at the next request.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var tok api.Token
	_, err := s.st.Update(func(tx *store.Tx) error {
		if err := tx.Get(api.KindToken, id, &tok); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return &apiError{status: http.StatusNotFound, code: api.CodeNotFound, msg: fmt.Sprintf("token %s not found", id)}
			}
			return err
		}
		return tx.Delete(api.KindToken, id, 0)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("token revoked", "id", id, "by", identityOf(r.Context()).String())
	writeJSON(w, http.StatusOK, tokenInfo(&tok))
}

// rotateJoinSecret replaces the join secret: the old join token no longer
// joins; nodes that joined keep their certificates.
func (s *Server) rotateJoinSecret(w http.ResponseWriter, r *http.Request) {
	jc := s.joinConfig(w)
	if jc == nil {
		return
	}
	// The store first (replicated: every server follows it, see
	// joinSecretOK), then this server's file.
	secret := pki.NewJoinSecret()
	if _, err := s.st.Update(func(tx *store.Tx) error {
		return tx.Put(api.KindJoinSecret, &api.JoinSecret{Meta: api.Meta{Name: api.JoinSecretName}, Spec: api.JoinSecretSpec{Secret: secret}})
	}); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := jc.PKI.SetSecret(secret); err != nil {
		s.writeError(w, r, err)
		return
	}
	tok := jc.PKI.Token()
	s.log.Info("join token rotated", "by", identityOf(r.Context()).String())
	writeJSON(w, http.StatusOK, &api.TokenResponse{Token: tok.String()})
}

func tokenInfo(t *api.Token) api.TokenInfo {
	return api.TokenInfo{ID: t.Name, Role: t.Spec.Role, Created: t.Created, Expires: t.Spec.Expires, Description: t.Spec.Description}
}

// parseTTL reads a Go duration ("90m", "12h") or a number of days ("30d");
// empty or zero means no end.
func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("ttl %q: want a duration such as 12h, 90m or 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("ttl %q: want a duration such as 12h, 90m or 30d", s)
	}
	return v, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return hex.EncodeToString(b)
}
