// Package pki is the trust behind a skiff cluster: the server's CA, the
// serving certificate of its TLS API, the join secret and the join token
// that carries it, the gossip key, and the client certificates that name
// each node.
//
// On first start a server calls Load(dataDir+"/pki", addrs): it creates a CA
// (ECDSA P-256, 10 years), a join secret, a random gossip key and a serving
// certificate signed by the CA (SANs: addrs, 127.0.0.1, ::1, localhost, the
// hostname; issued again when they change or it nears its end). Later
// starts load the same files.
//
// The join token, printed by `skiff token` (ReadToken), is
//
//	K10<hex sha256 of the CA certificate's DER bytes>::<secret>
//
// as in k3s. Tokens made by `skiff token create` have the same shape with
// <id>.<secret> as the secret. The gossip key is not derived from any
// token: a joining node gets it in the answer to its join, over the TLS
// connection whose CA it pinned.
//
// A client parses the token (ParseToken) and dials the API with
// ClientTLSConfig(token): during the handshake, before any byte of a
// request, the CA the server sends is hashed and compared with the token
// (a *CAMismatchError otherwise), and the server's certificate is verified
// against it. Only then does it send the secret as a bearer token.
//
// A node uses the join secret once: it makes its own key (NewNodeKey),
// sends a certificate request (NewNodeCSR) with the secret, and the server
// (ParseNodeCSR, PKI.SignNode) returns a client certificate for
// "node:<name>" (O skiff:nodes). The node keeps it in its own
// <data_dir>/pki (Identity.Save, LoadIdentity), presents it from then on
// (NodeTLSConfig over a Holder, which renewals swap without a restart), and
// renews it after two thirds of its life (Identity.RenewAt).
package pki
