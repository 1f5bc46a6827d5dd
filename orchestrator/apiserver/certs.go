package apiserver

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// JoinConfig lets the API issue node certificates (cluster mode).
type JoinConfig struct {
	// PKI is the cluster CA; it also checks the join secret.
	PKI *pki.PKI
	// GossipKey returns the cluster's current gossip key, which a join
	// answers with.
	GossipKey func() []byte
	// CertValidity is the lifetime of node certificates. Default
	// pki.DefaultNodeCertValidity.
	CertValidity time.Duration
	// LocalNode is the node of the server's own agent, which reaches the
	// API over the unix socket: no join may claim its name.
	LocalNode string
}

// maxSerials bounds the certificates kept per node: renewals add one each,
// and a node renews long before the previous ones expire only when its
// renewals are retried.
const maxSerials = 4

// EnableJoin lets the API serve joins, renewals and tokens with cfg's CA.
// Until it is called those answer 503. Call it before serving TCP.
func (s *Server) EnableJoin(cfg JoinConfig) {
	if cfg.CertValidity <= 0 {
		cfg.CertValidity = pki.DefaultNodeCertValidity
	}
	s.joinCfg.Store(&cfg)
}

// joinConfig returns the JoinConfig, or answers 503 and returns nil.
func (s *Server) joinConfig(w http.ResponseWriter) *JoinConfig {
	if jc := s.joinCfg.Load(); jc != nil {
		return jc
	}
	writeJSON(w, http.StatusServiceUnavailable, errBody(api.CodeUnavailable,
		"this server has no cluster CA: start it with --listen-tcp (cluster mode)"))
	return nil
}

// authRoutes registers the routes of joining, certificates and tokens.
func (s *Server) authRoutes() {
	type hs = map[string]http.HandlerFunc
	s.route("/v1/join", hs{"POST": s.join})
	s.route("/v1/join/rotate", hs{"POST": s.rotateJoinSecret})
	s.route("/v1/renew", hs{"POST": s.renew})
	s.route("/v1/whoami", hs{"GET": s.whoami})
	s.route("/v1/tokens", hs{"GET": s.listTokens, "POST": s.createToken})
	s.route("/v1/tokens/{id}", hs{"DELETE": s.revokeToken})
}

// join issues a node's first certificate from its certificate request
// (its key stays on the node) and answers with what the node needs to
// join: the CA, the gossip key and where the servers are. A name whose
// certificate is still current (its node has not been deleted and its
// certificates have not expired) is refused: a join token must not let
// anyone take over a running node.
func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	jc := s.joinConfig(w)
	if jc == nil {
		return
	}
	var req api.JoinRequest
	if err := s.decode(w, r, &req, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !configs.ValidName(req.Node) {
		s.writeError(w, r, invalid("node", "%q is not a valid node name (lower-case letters, digits and '-', at most 63)", req.Node))
		return
	}
	if req.Node == jc.LocalNode {
		s.writeError(w, r, conflict("node %s is this server's own node: join under another name", req.Node))
		return
	}
	csr, err := pki.ParseNodeCSR([]byte(req.CSR), req.Node)
	if err != nil {
		s.writeError(w, r, invalid("csr", "%v", err))
		return
	}
	var cert *x509.Certificate
	_, err = s.st.Update(func(tx *store.Tx) error {
		rec, err := nodeCert(tx, req.Node)
		if err != nil {
			return err
		}
		if len(rec.Serials) > 0 {
			cur := rec.Serials[len(rec.Serials)-1]
			return conflict("node %s already has a current certificate (serial %s, until %s): delete the node first (skiff delete node %s) or join under another name",
				req.Node, cur.Serial, cur.NotAfter.UTC().Format(time.RFC3339), req.Node)
		}
		if cert, err = s.issue(tx, jc, rec, csr); err != nil {
			return err
		}
		return tx.RecordEvent(api.KindNode+"/"+req.Node, api.EventNormal, "Joined",
			fmt.Sprintf("certificate %s issued to %s until %s", pki.SerialHex(cert), identityOf(r.Context()), cert.NotAfter.UTC().Format(time.RFC3339)), eventSource)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := api.JoinResponse{Certificate: string(pki.CertPEM(cert.Raw)), CA: string(jc.PKI.CACertPEM())}
	if jc.GossipKey != nil {
		resp.GossipKey = jc.GossipKey()
	}
	if m := s.members.Load(); m != nil {
		resp.ClusterInfo = (*m).ClusterInfo()
	}
	writeJSON(w, http.StatusOK, &resp)
}

// renew issues a new certificate to the node that calls with its current
// one, for the key of its certificate request. The previous certificate
// stays valid until it ends (requests in flight use it).
func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	jc := s.joinConfig(w)
	if jc == nil {
		return
	}
	id := identityOf(r.Context())
	if id.Role != api.RoleNode {
		s.writeError(w, r, forbidden("%s may not renew: only a node renews its own certificate", id))
		return
	}
	var req api.RenewRequest
	if err := s.decode(w, r, &req, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	csr, err := pki.ParseNodeCSR([]byte(req.CSR), id.Node)
	if err != nil {
		s.writeError(w, r, invalid("csr", "%v", err))
		return
	}
	var cert *x509.Certificate
	_, err = s.st.Update(func(tx *store.Tx) error {
		rec, err := nodeCert(tx, id.Node)
		if err != nil {
			return err
		}
		cert, err = s.issue(tx, jc, rec, csr)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, &api.RenewResponse{Certificate: string(pki.CertPEM(cert.Raw))})
}

// nodeCert reads node's certificate record in tx (a new one if it has
// none) with the expired certificates dropped.
func nodeCert(tx *store.Tx, node string) (*api.NodeCert, error) {
	var rec api.NodeCert
	if err := tx.Get(api.KindNodeCert, node, &rec); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		rec = api.NodeCert{Meta: api.Meta{Name: node}}
	}
	now := tx.Now()
	expired := func(c api.CertSerial) bool { return !now.Before(c.NotAfter) }
	rec.Serials = slices.DeleteFunc(rec.Serials, expired)
	rec.Revoked = slices.DeleteFunc(rec.Revoked, expired)
	return &rec, nil
}

// issue signs csr for rec's node and records the serial in tx.
func (s *Server) issue(tx *store.Tx, jc *JoinConfig, rec *api.NodeCert, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	cert, err := jc.PKI.SignNode(csr, rec.Name, jc.CertValidity)
	if err != nil {
		return nil, err
	}
	rec.Serials = append(rec.Serials, api.CertSerial{Serial: pki.SerialHex(cert), NotAfter: cert.NotAfter})
	if n := len(rec.Serials); n > maxSerials {
		rec.Serials = slices.Clone(rec.Serials[n-maxSerials:])
	}
	return cert, tx.Put(api.KindNodeCert, rec)
}

// deleteNode removes a node: its Node object goes (its pod CIDR with it;
// the node controller deletes the pods bound to a node that no longer
// exists, and the app controller replaces them elsewhere) and every
// certificate the server issued to it is revoked at once, in the same
// transaction. The answer carries the Node as it was last written.
func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) {
	rev, err := revisionParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	var resp api.DeleteResponse
	_, err = s.st.Update(func(tx *store.Tx) error {
		var node api.Node
		err := tx.Get(api.KindNode, name, &node)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		exists := err == nil
		rec, rerr := nodeCert(tx, name)
		if rerr != nil {
			return rerr
		}
		if !exists && len(rec.Serials) == 0 {
			return err // not found: no node and nothing to revoke
		}
		if exists {
			if err := tx.Delete(api.KindNode, name, rev); err != nil {
				return err
			}
			if resp.Object, err = json.Marshal(&node); err != nil {
				return err
			}
		}
		revoked := len(rec.Serials)
		now := tx.Now()
		rec.Revoked = append(rec.Revoked, rec.Serials...)
		rec.Serials = nil
		rec.RevokedAt = &now
		if err := tx.Put(api.KindNodeCert, rec); err != nil {
			return err
		}
		return tx.RecordEvent(api.KindNode+"/"+name, api.EventWarning, "NodeDeleted",
			fmt.Sprintf("deleted by %s; %d certificates revoked", identityOf(r.Context()), revoked), eventSource)
	})
	s.answer(w, r, err, http.StatusOK, &resp)
}

// whoami answers who the server takes the caller for.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r.Context())
	writeJSON(w, http.StatusOK, api.Whoami{Role: id.Role, Node: id.Node, Token: id.Token, Local: id.Local})
}
