package pki

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ErrBadToken is wrapped by every error of ParseToken.
var ErrBadToken = errors.New("bad join token")

// tokenPrefix starts every token, as in k3s's "secure" token format.
const tokenPrefix = "K10"

// minSecretLen is the shortest secret ParseToken accepts.
const minSecretLen = 16

// Token is a parsed token: K10<CA hash>::<secret>. The join token's secret
// is the join secret (hex); a token made by `skiff token create` has
// <id>.<secret> there, and the server looks its role up by id.
type Token struct {
	// CAHash is the lower-case hex SHA-256 of the cluster CA certificate's
	// DER bytes (not its PEM: PEM may differ in line breaks and headers for
	// the same certificate).
	CAHash string
	// Secret proves to a server that the client holds the token. It is
	// sent (as a bearer token) only over a TLS connection whose CA matched
	// CAHash.
	Secret string
}

// String formats the token as K10<hash>::<secret>.
func (t Token) String() string {
	return tokenPrefix + t.CAHash + "::" + t.Secret
}

// MatchSecret reports, in constant time, whether presented is the token's
// secret.
func (t Token) MatchSecret(presented string) bool {
	return subtle.ConstantTimeCompare([]byte(t.Secret), []byte(presented)) == 1
}

// ParseToken parses K10<64 hex digits>::<secret>. Surrounding white space
// (a token file's newline) is ignored. Errors wrap ErrBadToken and never
// echo the secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	bad := func(format string, args ...any) (Token, error) {
		return Token{}, fmt.Errorf("%w: "+format+" (want K10<sha256 of the CA>::<secret>, as `skiff token` prints)", append([]any{ErrBadToken}, args...)...)
	}
	if s == "" {
		return bad("empty")
	}
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return bad("it does not start with K10")
	}
	hash, secret, ok := strings.Cut(rest, "::")
	if !ok {
		return bad("no \"::\" between the CA hash and the secret")
	}
	if len(hash) != 2*sha256.Size {
		return bad("the CA hash has %d characters, want %d", len(hash), 2*sha256.Size)
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return bad("the CA hash is not hexadecimal")
	}
	if len(secret) < minSecretLen {
		return bad("the secret has %d characters, want at least %d", len(secret), minSecretLen)
	}
	for _, r := range secret {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII {
			return bad("the secret has a space, control or non-ASCII character")
		}
	}
	return Token{CAHash: strings.ToLower(hash), Secret: secret}, nil
}

// CAHash returns the hex SHA-256 of a certificate's DER bytes, as a token
// carries it.
func CAHash(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
