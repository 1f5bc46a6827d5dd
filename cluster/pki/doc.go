// Package pki is the trust behind joining a skiff cluster: the server's CA,
// the serving certificate of its TLS API, the join secret, and the join
// token that carries them.
//
// On first start a server calls Load(dataDir+"/pki", addrs): it creates a CA
// (ECDSA P-256, 10 years), a join secret and a serving certificate signed by
// the CA (SANs: addrs, 127.0.0.1, ::1, localhost, the hostname; issued again
// when they change or it nears its end). Later starts load the same files.
//
// The token, printed by `skiff token` (ReadToken), is
//
//	K10<hex sha256 of the CA certificate's DER bytes>::<secret>
//
// as in k3s. It carries the gossip key too: Token.GossipKey derives it from
// the secret with HKDF-SHA256, so the token format stays k3s's and nothing
// more has to travel; the server seeds its serf keyring with PKI.GossipKey.
//
// An agent parses the token (ParseToken) and dials the API with
// ClientTLSConfig(token): during the handshake, before any byte of a
// request, the CA the server sends is hashed and compared with the token
// (a *CAMismatchError otherwise), and the server's certificate is verified
// against it. Only then does the agent send the secret (as a bearer token),
// which the server checks with PKI.CheckSecret.
package pki
