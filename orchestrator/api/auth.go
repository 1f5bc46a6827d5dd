package api

import "time"

// Who may use the API over TCP (see docs/security.md). The unix socket is
// the local admin's and carries no credentials.

// Kinds of the store's records of credentials. The API serves no generic
// routes for them: tokens through /v1/tokens (never their secret), node
// certificates not at all.
const (
	// KindToken: one API token made by `skiff token create`, keyed by its id.
	KindToken = "tokens"
	// KindNodeCert: the certificates issued to one node, keyed by node name.
	KindNodeCert = "nodecerts"
)

// Roles of API credentials.
const (
	// RoleAdmin may do everything.
	RoleAdmin = "admin"
	// RoleRead may GET everything but tokens: lists, objects, watches,
	// events, members, metrics and pod logs. No exec, no writes.
	RoleRead = "read"
	// RoleJoin may only join: POST /v1/join with a certificate request.
	RoleJoin = "join"
	// RoleNode is a node's certificate: the node may register and update
	// its own Node, read what its agent needs, and write the status of and
	// events about its own pods. See docs/security.md.
	RoleNode = "node"
)

// Token is an API token's record: the server keeps only the SHA-256 of
// its secret. Its name is the token's id.
type Token struct {
	Meta
	Spec TokenSpec `json:"spec"`
}

// TokenSpec is what a token allows and until when.
type TokenSpec struct {
	Role string `json:"role"`
	// SecretHash is the hex SHA-256 of the token's secret.
	SecretHash string `json:"secret_hash,omitempty"`
	// Expires is when the token stops working; nil means never.
	Expires     *time.Time `json:"expires,omitempty"`
	Description string     `json:"description,omitempty"`
}

// NodeCert records the certificates the server issued to one node (its
// name is the node's), so that deleting the node revokes them at once.
type NodeCert struct {
	Meta
	// Serials are the certificates issued and not yet expired (a renewal
	// adds one; the previous stays valid until it ends).
	Serials []CertSerial `json:"serials,omitempty"`
	// Revoked are the certificates refused since the node was deleted,
	// kept until they would have expired.
	Revoked []CertSerial `json:"revoked,omitempty"`
	// RevokedAt is when the node was last deleted.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// CertSerial is one issued certificate.
type CertSerial struct {
	// Serial is the certificate's serial number, lower-case hex.
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

var (
	_ Object = (*Token)(nil)
	_ Object = (*NodeCert)(nil)
)

// JoinRequest is the body of POST /v1/join, sent with a join token: the
// node's name and its certificate request (PEM), made with a key that
// never leaves the node.
type JoinRequest struct {
	Node string `json:"node"`
	CSR  string `json:"csr"`
}

// JoinResponse answers a join: the node's certificate and the CA (PEM),
// the cluster's gossip key, and where the servers' gossip and API are.
type JoinResponse struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
	// GossipKey is the serf key (32 bytes; base64 in JSON).
	GossipKey []byte `json:"gossip_key"`
	ClusterInfo
}

// RenewRequest is the body of POST /v1/renew, sent with the node's current
// certificate: a certificate request for a new key.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// RenewResponse answers a renewal with the new certificate (PEM).
type RenewResponse struct {
	Certificate string `json:"certificate"`
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Role string `json:"role"`
	// TTL is how long the token works; empty or "0s" means no end.
	TTL         string `json:"ttl,omitempty"`
	Description string `json:"description,omitempty"`
}

// TokenResponse answers POST /v1/tokens and POST /v1/join/rotate: the
// whole token, shown this once (K10<CA hash>::<id>.<secret>, or the join
// token), and its record.
type TokenResponse struct {
	Token string `json:"token"`
	// Info is the record, without the secret's hash (empty for the join
	// token).
	Info *TokenInfo `json:"info,omitempty"`
}

// TokenInfo is a token as GET /v1/tokens lists it: never its secret.
type TokenInfo struct {
	ID          string     `json:"id"`
	Role        string     `json:"role"`
	Created     time.Time  `json:"created"`
	Expires     *time.Time `json:"expires,omitempty"`
	Description string     `json:"description,omitempty"`
}

// Whoami answers GET /v1/whoami: who the server takes the caller for.
type Whoami struct {
	// Role is one of the Role* constants.
	Role string `json:"role"`
	// Node is the node of a node certificate.
	Node string `json:"node,omitempty"`
	// Token is the id of a token made by `skiff token create`, or "join"
	// for the join token.
	Token string `json:"token,omitempty"`
	// Local is true on the unix socket.
	Local bool `json:"local,omitempty"`
}

// Error codes of authentication and authorization.
const (
	// CodeForbidden (403): the caller is known but may not do this; the
	// message names the rule.
	CodeForbidden = "forbidden"
	// CodeRevoked (401): a node certificate revoked by `skiff delete
	// node`.
	CodeRevoked = "revoked"
)
